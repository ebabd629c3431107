"""One VM per name (DESIGN §5 "names"): retries, concurrent clients, uncertain clone POSTs, and re-runs
that finish what an earlier run left. Against the simulator over HTTPS on 127.0.0.1.

Spec: pve-semantics §4.3 (a clone in flight is `VM <id>` with `lock: clone` and no name), §1.1/§2.1
(the qmclone UPID's id is the source VMID; the log names the new one), §1.3 (task lists).
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pvectl.cluster import Cluster
from pvectl.provision import CloneSpec, ProvisionEvent, ProvisionFailed, provision, provision_many, specs_for_count
from pvectl.provision.vmids import allocator_for
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.tasks import Deadline
from pvectl.writes import Writer

TEMPLATE = "ubuntu-24.04-cloud"      # VMID 9000 on pve1, tags ubuntu;template


def made(sim: SimCluster, name: str) -> list[int]:
    with sim.backend.mu:
        return sorted(v.vmid for v in sim.backend.state.vms.values() if v.config.get("name") == name)


def clone_posts(sim: SimCluster) -> list[dict[str, Any]]:
    return [e for e in sim.requests_log() if e["method"] == "POST" and e["path"].endswith("/clone")]


def run(c: Cluster, spec: CloneSpec, deadline: float = 60, on_event: Any = None) -> Any:
    return provision(c.session, spec, deadline=Deadline(deadline), writer=Writer(c.config, c.transport, "test", out=io.StringIO()),
                     on_event=on_event)


def wait_idle(sim: SimCluster, timeout: float = 30) -> None:
    """Until no task runs in the simulator (a clone left running by a deadline has ended)."""
    limit = Deadline(timeout)
    while not limit.expired():
        with sim.backend.mu:
            if not any(r.status == "running" for r in sim.backend.engine.records()):
                return
        threading.Event().wait(0.05)
    raise AssertionError("tasks still running")


def test_retry_after_the_deadline_does_not_clone_twice(sim: SimCluster, pvc: Cluster) -> None:
    """`vm clone T retry1 --timeout <short>` exits 4 while the clone runs; the retry must find that clone
    (no name yet: `VM <id>`, `lock: clone`), wait for it and report it, not make a second `retry1`."""
    with pytest.raises(ProvisionFailed) as ei:
        run(pvc, CloneSpec(TEMPLATE, "retry1", cores=2), deadline=0.2)
    assert ei.value.exit_code == 4 and ei.value.upid
    first = ei.value.result.vmid
    with sim.backend.mu:
        assert sim.backend.state.vms[first].config.get("lock") == "clone"      # still in flight
    events: list[ProvisionEvent] = []
    again = run(pvc, CloneSpec(TEMPLATE, "retry1", cores=2), on_event=events.append)
    assert again.result == "exists" and again.vmid == first
    assert made(sim, "retry1") == [first]
    # the name may already be written (qemu-server rewrites the config after each disk) or not yet
    assert any(e.message.startswith("waiting for the clone") for e in events), [e.message for e in events]
    # the retry finished what the first run left: the config PUT (cores, the template tag gone)
    assert "config" in again.steps
    with sim.backend.mu:
        conf = sim.backend.state.vms[first].config
    assert int(conf["cores"]) == 2 and "template" not in str(conf.get("tags", "")).split(";")
    assert len(clone_posts(sim)) == 1


def same_name_at_once(sim: SimCluster, name: str, prepare: Callable[[int, Cluster], None] | None = None
                      ) -> list[Any]:
    """Four independent clients (own Cluster each: no shared process state) make `name` at once. The
    `clone start` event comes after the name check right before the POST: each client waits there until
    all four have checked, so every POST goes out while none of their clones exists yet, however the
    threads are scheduled. `prepare(i, cluster)` runs in client i first. Returns the four results."""
    results: dict[int, Any] = {}
    errors: dict[int, BaseException] = {}
    barrier = threading.Barrier(4)

    def client(i: int) -> None:
        try:
            with Cluster.from_config(str(sim.config_path)) as c:
                if prepare is not None:
                    prepare(i, c)
                held: list[bool] = []

                def on_event(e: ProvisionEvent) -> None:
                    if e.step == "clone" and e.state == "start" and not held:
                        held.append(True)
                        barrier.wait(30)
                results[i] = run(c, CloneSpec(TEMPLATE, name), on_event=on_event)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors[i] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    wait_idle(sim)
    return list(results.values())


def ok_clone_tasks(sim: SimCluster) -> int:
    with sim.backend.mu:
        return len([r for r in sim.backend.engine.records() if ":qmclone:" in r.upid and r.exitstatus == "OK"])


def audited_writes(method: str, path_end: str = "") -> int:
    audit = [json.loads(ln) for ln in Path(os.environ["PVECTL_AUDIT_LOG"]).read_text().splitlines()]
    return len([a for a in audit if a["event"] == "write" and a["method"] == method and a["path"].endswith(path_end)])


def test_four_clients_same_name_make_one_vm(sim: SimCluster) -> None:
    """Four clients make the same name at once: each checks the name right before its clone POST, sees
    no VM and posts, all on the same first free VMID. Exactly one VM keeps the name; the others report
    `exists` (a client that lost the VMID checks the name again and finds the clone in flight)."""
    results = same_name_at_once(sim, "same-name")
    keep = made(sim, "same-name")
    assert len(keep) == 1
    outcomes = sorted(r.result for r in results)
    assert outcomes == ["created", "exists", "exists", "exists"], [r.to_dict() for r in results]
    assert {r.vmid for r in results} == set(keep)
    assert len(clone_posts(sim)) == 4          # the race did happen: every client posted, once
    # every clone that lost the name was removed by its own client, and the audit log says so
    deletes = [e for e in sim.requests_log() if e["method"] == "DELETE"]
    assert len(deletes) == ok_clone_tasks(sim) - 1
    assert audited_writes("DELETE") == len(deletes)
    assert audited_writes("POST", "/clone") == len(clone_posts(sim))


def test_four_clients_same_name_on_four_vmids_leave_it_to_the_lowest(sim: SimCluster) -> None:
    """As above, but each client's next VMID is another one (client i has handed out i ids before:
    nothing on the server reserves an id), so all four clones run to the end. After its clone, each
    client checks the name again: the lowest VMID keeps it, the other three remove their own VM and
    report the one that keeps it (names protocol step 2)."""
    first = 112
    with sim.backend.mu:
        assert not set(range(first, first + 4)) & set(sim.backend.state.vms)

    def prepare(i: int, c: Cluster) -> None:
        for vmid in range(first, first + i):
            assert allocator_for(c.session).claim(vmid)

    results = same_name_at_once(sim, "four-ids", prepare)
    assert made(sim, "four-ids") == [first]
    assert sorted((r.result, r.vmid) for r in results) == [("created", first)] + [("exists", first)] * 3, \
        [r.to_dict() for r in results]
    assert len(clone_posts(sim)) == 4 and ok_clone_tasks(sim) == 4     # four clones, each to the end
    deleted = sorted(int(e["path"].rsplit("/", 1)[1]) for e in sim.requests_log() if e["method"] == "DELETE")
    assert deleted == [first + 1, first + 2, first + 3]
    with sim.backend.mu:
        assert not {first + 1, first + 2, first + 3} & set(sim.backend.state.vms)
    for r in results:
        if r.result == "exists":
            assert any("the lower VMID keeps the name" in w for w in r.warnings), r.to_dict()
    assert audited_writes("DELETE") == 3


def test_two_bulk_runs_same_pattern_make_each_name_once(sim: SimCluster) -> None:
    results: dict[str, list[Any]] = {}
    barrier = threading.Barrier(2)

    def client(tag: str) -> None:
        with Cluster.from_config(str(sim.config_path)) as c:
            seen: list[bool] = []

            def on_event(e: ProvisionEvent) -> None:
                if e.step == "plan" and e.state == "done" and e.name == "bulk-3" and not seen:
                    seen.append(True)
                    barrier.wait(20)
            specs = specs_for_count(CloneSpec(TEMPLATE, "x"), "bulk-{n}", 3)
            results[tag] = provision_many(c.session, specs, deadline=Deadline(90), writer=Writer(c.config, c.transport, "test", out=io.StringIO()),
                                          max_per_node=3, on_event=on_event)

    threads = [threading.Thread(target=client, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    wait_idle(sim)
    for n in ("bulk-1", "bulk-2", "bulk-3"):
        assert len(made(sim, n)) == 1, n
    flat = [r for rs in results.values() for r in rs]
    assert all(r.ok for r in flat), [r.to_dict() for r in flat]
    assert sorted(r.result for r in flat).count("created") == 3


def test_uncertain_clone_post_adopts_its_own_clone(sim: SimCluster) -> None:
    """The clone POST's answer comes later than the read timeout (pve1 slow): the VM was made by this
    request. The run must recognise its own clone (lock: clone, no name yet), wait for it, and report it
    with its UPID, not post again nor say that nothing was created."""
    with Cluster.from_config(str(sim.config_path)) as c:
        c.transport.read_timeout = 1.0

        def on_event(e: ProvisionEvent) -> None:
            if e.step == "clone" and e.state == "start":
                sim.slow_node("pve1", 1.5)
                threading.Timer(1.2, sim.slow_node, args=("pve1", 0)).start()

        res = run(c, CloneSpec(TEMPLATE, "slowpost", cores=2), on_event=on_event)
    assert res.result == "created" and res.steps == ["clone", "config"]
    assert made(sim, "slowpost") == [res.vmid]
    assert res.upids.get("clone", "").startswith("UPID:pve1:") and ":qmclone:9000:" in res.upids["clone"]
    with sim.backend.mu:
        assert int(sim.backend.state.vms[res.vmid].config["cores"]) == 2


def test_rerun_after_config_put_failure_finishes_the_vm(sim: SimCluster, pvc: Cluster) -> None:
    """The config PUT fails once: the VM is left unconfigured and stopped. It must not look like a
    template, and the re-run must configure, start and wait for the IP (not say `nothing changed`)."""
    spec = CloneSpec(TEMPLATE, "half-2", cores=2, memory="2G", start=True, wait_ip=True)
    sim.fail_next(1, status=500, message="got timeout", method="PUT", path=r"/qemu/\d+/config$")
    with pytest.raises(ProvisionFailed) as ei:
        run(pvc, spec)
    vmid = ei.value.result.vmid
    assert ei.value.result.steps == ["clone"]
    assert not any(t.vm.vmid == vmid for t in pvc.templates.list())     # never passes for a template
    again = run(pvc, spec)
    assert again.result == "exists" and again.vmid == vmid and again.changed
    assert again.steps == ["exists", "config", "start", "ip"]
    with sim.backend.mu:
        vm = sim.backend.state.vms[vmid]
        assert int(vm.config["cores"]) == 2 and str(vm.config["memory"]) == "2048"
        assert vm.status == "running"
    assert again.ip and again.state == "running"
    # a third run has nothing left to do
    third = run(pvc, spec)
    assert third.result == "exists" and not third.changed and third.differs == []
    assert made(sim, "half-2") == [vmid]


def test_rerun_reports_what_differs(sim: SimCluster, pvc: Cluster) -> None:
    first = run(pvc, CloneSpec(TEMPLATE, "differ-1", cores=2))
    again = run(pvc, CloneSpec(TEMPLATE, "differ-1", cores=4))
    assert again.result == "exists" and again.vmid == first.vmid and not again.changed
    assert again.differs == ["cores is 2, this run asks for 4"]


def test_a_clone_in_flight_never_passes_for_a_template(sim: SimCluster, pvc: Cluster) -> None:
    """Real Proxmox writes the copied config (the template's tags among it) after the first disk, still
    with `lock: clone` (qemu-server clone_vm; pve-semantics §4.3): such a VM is no template."""
    from pvectl.sim.models import VM

    with sim.backend.mu:
        sim.backend.state.vms[150] = VM(vmid=150, node="pve1", config={"lock": "clone", "name": "cl-1",
                                                                     "tags": "ubuntu;template"})
    assert 150 not in {t.vm.vmid for t in pvc.templates.list()}
    assert {9000, 9001} <= {t.vm.vmid for t in pvc.templates.list()}


@pytest.mark.parametrize("node", ["pve1", "pve2"])
def test_vmid_taken_meanwhile_by_the_same_name_is_not_cloned_again(sim: SimCluster, pvc: Cluster, node: str) -> None:
    """Another client takes the planned VMID with the same name right before our POST (SYNC `already
    exists` on the template's node, `File exists` in the task on another: §4.2). The next attempt must
    check the name again and report that VM, not clone a second one under the next VMID."""
    taken: list[int] = []

    def on_event(e: ProvisionEvent) -> None:
        if e.step == "clone" and e.state == "start" and not taken:
            from pvectl.sim.models import VM

            taken.append(e.vmid or 0)
            with sim.backend.mu:
                sim.backend.state.vms[e.vmid or 0] = VM(vmid=e.vmid or 0, node=node, config={
                    "name": "taken-1", "description": "pvectl: cloned from template 9000 (ubuntu-24.04-cloud)"})

    res = run(pvc, CloneSpec(TEMPLATE, "taken-1"), on_event=on_event)
    assert res.result == "exists" and res.vmid == taken[0]
    assert made(sim, "taken-1") == [taken[0]]


def test_dry_run_rerun_prints_what_is_left_and_writes_nothing(sim: SimCluster, pvc: Cluster) -> None:
    spec = CloneSpec(TEMPLATE, "half-3", cores=2, start=True, wait_ip=True)
    sim.fail_next(1, status=500, message="got timeout", method="PUT", path=r"/qemu/\d+/config$")
    with pytest.raises(ProvisionFailed) as ei:
        run(pvc, spec)
    vmid = ei.value.result.vmid
    seq = sim.requests_log()[-1]["seq"]
    out = io.StringIO()
    res = provision(pvc.session, spec, deadline=Deadline(30), writer=Writer(pvc.config, pvc.transport, "test", dry_run=True, out=out))
    assert res.result == "exists" and res.vmid == vmid and res.steps == ["exists", "config", "start"]
    assert res.state == "stopped"
    text = out.getvalue()
    assert f"/qemu/{vmid}/config" in text and f"/qemu/{vmid}/status/start" in text and "network-get-interfaces" in text
    assert [e for e in sim.requests_log(since=seq) if e["method"] != "GET"] == []
    with sim.backend.mu:
        assert sim.backend.state.vms[vmid].status == "stopped"


def test_a_name_taken_right_before_the_post_is_finished_not_reported_as_is(sim: SimCluster) -> None:
    """Client B plans `race-1`; before its POST, client A makes `race-1` and has not configured it yet.
    B must not exit 0 `exists` with the template's copy (template tag, stopped though `--start` was
    asked): it finishes the VM (a re-run would, too). A, finishing after it, still succeeds."""
    a_cloned, release_a = threading.Event(), threading.Event()
    box: dict[str, Any] = {}
    spec = CloneSpec(TEMPLATE, "race-1", cores=2, start=True)

    def client_a() -> None:
        def on_event(e: ProvisionEvent) -> None:
            if e.step == "clone" and e.state == "done":
                a_cloned.set()
                release_a.wait(60)         # A stops right after its clone, before configuring it
        with Cluster.from_config(str(sim.config_path)) as c:
            try:
                box["a"] = run(c, spec, on_event=on_event)
            except BaseException as exc:  # noqa: BLE001 - asserted below
                box["a"] = exc

    a = threading.Thread(target=client_a)

    def b_event(e: ProvisionEvent) -> None:
        if e.step == "plan" and e.state == "done" and not a.is_alive() and "a" not in box:
            a.start()                      # B has planned (no VM named race-1): now A makes it
            assert a_cloned.wait(60)

    with Cluster.from_config(str(sim.config_path)) as c:
        try:
            b = run(c, spec, on_event=b_event)
        finally:
            release_a.set()
            a.join(60)
    vmid = made(sim, "race-1")
    assert len(vmid) == 1 and len(clone_posts(sim)) == 1
    assert b.result == "exists" and b.vmid == vmid[0] and b.state == "running", b.to_dict()
    with sim.backend.mu:
        vm = sim.backend.state.vms[vmid[0]]
        assert vm.status == "running" and int(vm.config["cores"]) == 2
        assert "template" not in str(vm.config.get("tags", "")).split(";")
    assert not isinstance(box["a"], BaseException), box["a"]
    assert box["a"].result == "created" and box["a"].vmid == vmid[0] and box["a"].state == "running"


def test_a_bulk_rerun_that_cannot_finish_an_existing_vm_does_not_count_it_ok(sim: SimCluster, pvc: Cluster) -> None:
    """`exists` and then a failure while finishing it: that VM is not ok (the CLI exits 1, not 0)."""
    sim.fail_next(1, status=500, message="got timeout", method="PUT", path=r"/qemu/\d+/config$")
    with pytest.raises(ProvisionFailed) as ei:
        run(pvc, CloneSpec(TEMPLATE, "half-b-1"))
    vmid = ei.value.result.vmid
    sim.fail_next(1, status=500, message="got timeout", method="PUT", path=rf"/qemu/{vmid}/config$")
    specs = specs_for_count(CloneSpec(TEMPLATE, "x"), "half-b-{n}", 2)
    results = provision_many(pvc.session, specs, deadline=Deadline(60), writer=Writer(pvc.config, pvc.transport, "test", out=io.StringIO()))
    assert [(r.name, r.result) for r in results] == [("half-b-1", "exists"), ("half-b-2", "created")]
    assert results[0].error is not None and "got timeout" in results[0].error.message
    assert [r.ok for r in results] == [False, True]


@pytest.mark.parametrize("step, path", [("start", r"/status/start$"), ("resize", r"/resize$")])
def test_a_step_whose_answer_was_lost_finds_its_task_and_goes_on(sim: SimCluster, pvc: Cluster, step: str,
                                                                 path: str) -> None:
    """The start POST (or resize PUT) is carried out but its answer is lost: the task it started is
    found in the node's task list and waited for (never sent again), not reported as "may or may not
    have been applied" without the task."""
    def on_event(e: ProvisionEvent) -> None:
        if e.step == step and e.state == "start":
            sim.faults.drop_answer_next(1, path=path)

    res = run(pvc, CloneSpec(TEMPLATE, f"lost-{step}", start=True, disk_size="+1G"), on_event=on_event)
    assert res.result == "created" and step in res.steps and res.state == "running", res.to_dict()
    kind = {"start": ":qmstart:", "resize": ":resize:"}[step]
    assert kind in res.upids.get(step, ""), res.upids
    sent = [e for e in sim.requests_log() if e["method"] != "GET" and e["path"].endswith(path.strip("$").lstrip("/"))]
    assert len(sent) == 1, sent


@pytest.mark.parametrize("step", ["clone", "config"])
def test_the_deadline_after_the_clone_reports_the_vm_it_made_and_how_to_finish_it(sim: SimCluster,
                                                                                   pvc: Cluster, step: str) -> None:
    """The clone ended, then the deadline passed before the name check after it (or before the config
    PUT): exit 4 names the VM the clone made, its task, and the command that finishes it (not "nothing
    was changed")."""
    deadline = Deadline(20)

    def on_event(e: ProvisionEvent) -> None:
        if e.step == step and e.state == ("done" if step == "clone" else "start"):
            deadline.at = time.monotonic()       # the deadline passes right here

    writer = Writer(pvc.config, pvc.transport, "pvectl vm clone 9000 late-1", out=io.StringIO())
    # every request bounded by the deadline, as in the CLI (--timeout)
    with pytest.raises(ProvisionFailed) as ei, pvc.transport.bounded(deadline):
        provision(pvc.session, CloneSpec(TEMPLATE, "late-1"), deadline=deadline, writer=writer, on_event=on_event)
    e = ei.value
    (vmid,) = made(sim, "late-1")
    assert e.exit_code == 4 and e.result.vmid == vmid, e.to_dict()
    assert f"VM {vmid}" in e.message and e.result.upids["clone"] in f"{e.message} {e.to_dict()}", e.message
    assert "nothing was changed" not in f"{e.message} {e.hint}"
    assert (e.hint or "").startswith(f"resume with: pvectl vm clone 9000 late-1 (it finishes VM {vmid}")


def test_a_clone_in_flight_without_a_visible_task_at_the_deadline_says_nothing_changed(sim: SimCluster,
                                                                                        pvc: Cluster) -> None:
    """A VM in `lock: clone` whose task cannot be seen (another user's, without Sys.Audit) may carry the
    name: waited for until the deadline, then exit 4 with no UPID to give, so it says that nothing was sent
    and changed, and to run the command again."""
    from pvectl.sim.models import VM

    with sim.backend.mu:
        sim.backend.state.vms[150] = VM(vmid=150, node="pve1", config={"lock": "clone"})
    from pvectl.errors import TaskTimeout

    with pytest.raises(TaskTimeout) as ei:       # while planning: before any VM of this run exists
        run(pvc, CloneSpec(TEMPLATE, "unseen-1"), deadline=1.0)
    e = ei.value
    assert e.exit_code == 4 and "UPID:" not in f"{e.message} {e.hint}"
    assert "is still running at the deadline; no clone request was sent yet: nothing changed" in e.message
    assert "run the command again" in (e.hint or "")
    assert clone_posts(sim) == []


def test_a_read_failing_between_clone_attempts_names_the_clone_task_that_ran(sim: SimCluster, pvc: Cluster) -> None:
    """The first clone task fails on a lock (retried), then no node answers the name check before the
    next attempt: the error names the clone task this run started, not only the failed read."""
    sim.fail_task(type="qmclone", message="clone failed: can't lock file '/var/lock/qemu-server/lock-9000.conf' "
                                          "- got timeout")

    def on_event(e: ProvisionEvent) -> None:
        if e.step == "clone" and e.state == "warning":
            for node in sim.nodes:
                sim.stop_listener(node)

    try:
        with pytest.raises(ProvisionFailed) as ei:
            run(pvc, CloneSpec(TEMPLATE, "between-1"), deadline=30, on_event=on_event)
    finally:
        for node in sim.nodes:
            sim.start_listener(node)
    e = ei.value
    (post,) = clone_posts(sim)
    upid = e.result.upids.get("clone", "")
    assert ":qmclone:9000:" in upid and upid in json.dumps(e.to_dict()), e.to_dict()
    assert "run the command again" in (e.hint or "") and e.exit_code == 5
