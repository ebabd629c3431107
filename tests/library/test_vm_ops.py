"""Every VM write of `pve.vms` through the public surface against the simulator: what each returns,
what the cluster holds afterwards (read back through the library), and how many writes the
simulated nodes received — so "refused before anything was sent" is a count, not an assumption."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pvectl
import pvectl.sim

WAIT = 30.0


def writes_received(sim: pvectl.sim.Cluster) -> list[tuple[str, str]]:
    """The writes the simulated nodes received (a request relayed to another node counts once)."""
    return [(e["method"], e["path"]) for e in sim.requests_log() if e["method"] != "GET" and not e.get("forwarded")]


def status(pve: pvectl.Cluster, ref: str | int) -> str:
    return pve.vms.status(ref).status


# ------------------------------------------------------------------------------------------ power
def test_start_reboot_shutdown_stop(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    r = pve.vms.start("cache-01")
    assert isinstance(r, pvectl.OpResult)
    assert (r.vmid, r.name, r.node, r.action, r.outcome, r.exitstatus, r.detail) == (
        103, "cache-01", "pve1", "start", "done", "OK", "running")
    assert r.upid is not None and ":qmstart:103:" in r.upid and status(pve, 103) == "running"

    r = pve.vms.reboot(103)
    assert (r.outcome, r.exitstatus, r.detail) == ("done", "OK", "rebooted") and ":qmreboot:103:" in (r.upid or "")

    r = pve.vms.shutdown(103, timeout=20)
    assert (r.outcome, r.exitstatus, r.detail) == ("done", "OK", "stopped") and status(pve, 103) == "stopped"
    shutdown = [e for e in sim.requests_log() if e["path"].endswith("/qemu/103/status/shutdown")]
    assert len(shutdown) == 1

    pve.vms.start(103)
    r = pve.vms.stop(103, yes=True)
    assert (r.outcome, r.detail) == ("done", "stopped (hard power-off)") and status(pve, 103) == "stopped"
    assert r.to_dict()["outcome"] == "done" and "planned" not in r.to_dict()


def test_already_in_the_state_sends_nothing(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    r = pve.vms.start("web-01")
    assert (r.outcome, r.upid, r.detail) == ("already", None, "already running (qmpstatus running)")
    assert pve.vms.shutdown("cache-01").outcome == "already"
    assert pve.vms.stop("cache-01").outcome == "already"       # nothing to stop: no yes needed
    assert writes_received(sim) == []


def test_power_guards_refuse_before_any_write(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    with pytest.raises(pvectl.GuardRefused) as ei:
        pve.vms.start("ubuntu-24.04-cloud")
    assert ei.value.message == "VM 9000 (ubuntu-24.04-cloud) is a template: it cannot be started"
    assert ei.value.exit_code == 3
    with pytest.raises(pvectl.GuardRefused) as ei:
        pve.vms.stop("web-01")
    assert ei.value.message == "stop is a hard power-off of VM 100 (like pulling the plug): data may be lost"
    assert ei.value.exit_code == 3 and ei.value.to_dict()["error"]["type"] == "GuardRefused"
    with pytest.raises(pvectl.GuardRefused, match=r"^VM 104 \(mq-01\) is stopped: only a running VM can be rebooted$"):
        pve.vms.reboot("mq-01")
    with pytest.raises(pvectl.UsageError) as ue:
        pve.vms.power_many("hibernate", [103])
    assert ue.value.exit_code == 2
    assert writes_received(sim) == [] and status(pve, 100) == "running"


def test_power_many_applies_every_guard_before_the_first_write(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    with pytest.raises(pvectl.GuardRefused):
        pve.vms.power_many("start", ["cache-01", "mq-01", "debian-12-cloud"])      # the last is a template
    with pytest.raises(pvectl.NotFound):
        pve.vms.power_many("start", ["cache-01", "no-such-vm"])
    assert writes_received(sim) == []
    assert (status(pve, 103), status(pve, 104)) == ("stopped", "stopped")

    rs = pve.vms.power_many("start", ["cache-01", "mq-01", "web-01"])
    assert [(r.vmid, r.outcome) for r in rs] == [(103, "done"), (104, "done"), (100, "already")]
    assert (status(pve, 103), status(pve, 104)) == ("running", "running")


def test_power_many_reports_a_failed_task_and_goes_on(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    sim.fail_task(type="qmstart", message="start failed: QEMU exited with code 1")
    rs = pve.vms.power_many("start", [103, 104])
    assert [(r.vmid, r.outcome, r.exitstatus) for r in rs] == [
        (103, "failed", "start failed: QEMU exited with code 1"), (104, "done", "OK")]
    assert (status(pve, 103), status(pve, 104)) == ("stopped", "running")


def test_a_single_failed_task_raises_task_failed(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    sim.fail_task(type="qmstart", message="start failed: QEMU exited with code 1")
    with pytest.raises(pvectl.TaskFailed) as ei:
        pve.vms.start(106)
    assert ei.value.exitstatus == "start failed: QEMU exited with code 1" and ei.value.exit_code == 1
    assert ":qmstart:106:" in str(ei.value.upid)


# ------------------------------------------------------------------------------------ wait=False
def test_wait_false_returns_a_task_whose_wait_returns_the_result(sim: pvectl.sim.Cluster,
                                                                 pve: pvectl.Cluster) -> None:
    task = pve.vms.start("cache-01", wait=False)
    assert isinstance(task, pvectl.Task) and task.upid is not None
    assert task.preview is not None and (task.preview.outcome, task.preview.upid) == ("started", str(task.upid))
    assert pve.tasks.get(str(task.upid)).status().type == "qmstart"
    r = task.wait(timeout=WAIT)
    assert isinstance(r, pvectl.OpResult)
    assert (r.outcome, r.exitstatus, r.upid, r.detail) == ("done", "OK", str(task.upid), "running")
    assert task.wait() is r                                   # waited once; the same result after
    assert status(pve, 103) == "running"

    # nothing to start: a Task without a UPID whose wait() gives the result at once
    same = pve.vms.start("cache-01", wait=False)
    assert same.upid is None and same.wait().outcome == "already"

    task = pve.vms.delete("mq-01", yes=True, wait=False)
    r = task.wait(WAIT)                                       # seconds, positionally, work too
    assert (r.outcome, r.exitstatus) == ("done", "OK") and r.extra["log"]
    assert "mq-01" not in [v.name for v in pve.vms.list()]


def test_blocking_and_task_wait_give_the_same_result(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    blocking = pve.vms.start(103).to_dict()
    pve.vms.stop(103, yes=True)
    waited = pve.vms.start(103, wait=False).wait().to_dict()
    assert blocking.keys() == waited.keys()
    assert {k: v for k, v in blocking.items() if k != "upid"} == {k: v for k, v in waited.items() if k != "upid"}


# ------------------------------------------------------------------------------------- deadlines
@pytest.fixture
def slow_sim() -> Iterator[pvectl.sim.Cluster]:
    """Real time: a start task waits 10 s for a VM's held flock before it fails."""
    with pvectl.sim.Cluster(nodes=3, vms=12, templates=2, bind="127.0.0.1", port=0, time_scale=1.0) as s:
        yield s


def test_a_task_still_running_at_the_deadline_raises_task_timeout(slow_sim: pvectl.sim.Cluster,
                                                                  audit_file: Path) -> None:
    sim = slow_sim
    pve = pvectl.Cluster.from_config(str(sim.config_path), audit=str(audit_file))
    sim.hold_lock(103, kind="")           # the VM's flock is held: the start task waits for it
    try:
        t0 = time.monotonic()
        with pytest.raises(pvectl.TaskTimeout) as ei:
            pve.vms.start(103, timeout=0.5)
        elapsed = time.monotonic() - t0
        assert ":qmstart:103:" in str(ei.value.upid) and ei.value.exit_code == 4
        assert ei.value.hint == f"resume with: pvectl task wait {ei.value.upid}"
        assert elapsed < 0.5 + 3.0

        task = pve.vms.start(103, wait=False)     # the same with Task.wait(timeout=)
        with pytest.raises(pvectl.TaskTimeout) as ei:
            task.wait(timeout=0.3)
        assert str(ei.value.upid) == str(task.upid)
    finally:
        sim.release_lock(103)
        pve.close()


def test_the_cluster_default_timeout_bounds_every_call(slow_sim: pvectl.sim.Cluster, audit_file: Path) -> None:
    sim = slow_sim
    sim.hold_lock(104, kind="")
    try:
        with pvectl.Cluster.from_config(str(sim.config_path), audit=str(audit_file), timeout=0.5) as pve:
            t0 = time.monotonic()
            with pytest.raises(pvectl.TaskTimeout):
                pve.vms.start("mq-01")
            assert time.monotonic() - t0 < 0.5 + 3.0
            t0 = time.monotonic()
            with pytest.raises(pvectl.TaskTimeout):
                pve.vms.start("mq-01", wait=False).wait()        # the task keeps the call's deadline
            assert time.monotonic() - t0 < 0.5 + 3.0
    finally:
        sim.release_lock(104)


# ------------------------------------------------------------------------------------------ delete
def test_delete_guards(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    cases: list[tuple[str | int, dict[str, Any], str]] = [
        ("web-01", {"yes": True}, "VM 100 (web-01) is running: Proxmox refuses to destroy a running VM"),
        ("debian-12-cloud", {"yes": True}, "VM 9001 (debian-12-cloud) is a template"),
        ("mq-01", {}, "deleting VM 104 (mq-01) needs confirmation"),
        ("mq-01", {"confirm": lambda name: name == "not mq-01"}, "deleting VM 104 (mq-01) needs confirmation"),
    ]
    for ref, kw, message in cases:
        with pytest.raises(pvectl.GuardRefused) as ei:
            pve.vms.delete(ref, **kw)
        assert ei.value.message.startswith(message), ei.value.message
    pve.vms.stop("db-01", yes=True)
    with pytest.raises(pvectl.GuardRefused, match=r"^VM 101 \(db-01\) has protection enabled"):
        pve.vms.delete("db-01", yes=True)
    assert [w for w in writes_received(sim) if w[0] == "DELETE"] == []
    assert {"web-01", "debian-12-cloud", "mq-01", "db-01"} <= {v.name for v in pve.vms.list()}


def test_delete_asks_confirm_and_lists_the_disks(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    asked: list[str] = []
    r = pve.vms.delete("mq-01", confirm=lambda name: asked.append(name) is None)
    assert asked == ["mq-01"]
    assert (r.outcome, r.exitstatus) == ("done", "OK") and ":qmdestroy:104:" in (r.upid or "")
    assert r.extra["disks"] == ["local-lvm:vm-104-cloudinit", "local-lvm:vm-104-disk-0"]
    assert "purging VM 104 from related configurations.." in r.extra["log"]
    with pytest.raises(pvectl.NotFound):
        pve.vms.resolve("mq-01")
    r = pve.vms.delete(9001, yes=True, allow_template=True)
    assert r.exitstatus == "OK" and 9001 not in [v.vmid for v in pve.vms.list()]


# ------------------------------------------------------------------------------------ resize, set
def test_resize_grows_and_refuses_a_shrink(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    r = pve.vms.resize("cache-01", disk="scsi0", size="+2G")
    assert r.extra["disk"] == {"disk": "scsi0", "from": 50 * 1024**3, "to": 52 * 1024**3} and r.exitstatus == "OK"
    assert "size=52G" in pve.vms.config(103)["scsi0"]
    before = len(writes_received(sim))
    with pytest.raises(pvectl.GuardRefused) as ei:
        pve.vms.resize("cache-01", disk="scsi0", size="10G")
    assert ei.value.message == ("disk scsi0 of VM 103 is 52.0 GiB; 10G would shrink it and Proxmox cannot "
                                "shrink disks")
    with pytest.raises(pvectl.GuardRefused):
        pve.vms.resize("web-01", cores=2)                      # running: needs allow_running
    with pytest.raises(pvectl.UsageError):
        pve.vms.resize("cache-01")                             # nothing to resize
    assert len(writes_received(sim)) == before

    r = pve.vms.resize("web-01", cores=3, memory="3G", allow_running=True)
    assert set(r.extra["applied"]) == {"cores", "memory"}
    r = pve.vms.resize("cache-01", cores=6, memory=3072)
    assert r.extra["applied"] == {"cores": "applied", "memory": "applied"}
    conf = pve.vms.config(103)
    assert (str(conf["cores"]), str(conf["memory"])) == ("6", "3072")


def test_set_validates_against_the_schema_before_sending(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    r = pve.vms.set("mq-01", {"onboot": "1", "description": "a b=c+d&e"}, delete=["tags"])
    assert (r.action, r.outcome) == ("set", "done")
    assert r.extra["applied"] == {"onboot": "applied", "description": "applied", "tags": "applied"}
    conf = pve.vms.config(104)
    assert (str(conf["onboot"]), conf["description"], "tags" in conf) == ("1", "a b=c+d&e", False)
    before = len(writes_received(sim))
    with pytest.raises(pvectl.UsageError) as ei:
        pve.vms.set("mq-01", {"cores": "abc"})
    assert ei.value.message.startswith("invalid config for VM 104: cores: ") and ei.value.exit_code == 2
    with pytest.raises(pvectl.UsageError):
        pve.vms.set("mq-01", {})
    assert len(writes_received(sim)) == before


# ----------------------------------------------------------------------------------------- dry run
def test_dry_run_plans_every_write_and_sends_none(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    dry = pve.with_options(dry_run=True)
    results = [dry.vms.start("cache-01"), dry.vms.stop("web-01", yes=True), dry.vms.reboot("web-01"),
               dry.vms.shutdown("web-01", timeout=60, force_stop=True), dry.vms.delete("mq-01", yes=True),
               dry.vms.resize("cache-01", cores=2, disk="scsi0", size="+1G"),
               dry.vms.set("cache-01", {"cipassword": "s3cret-pw", "description": "x"}),
               *dry.vms.power_many("start", ["cache-01", "mq-01"])]
    assert writes_received(sim) == []
    assert all(r.outcome == "planned" and r.upid is None for r in results)
    planned = [r.to_dict()["planned"] for r in results]
    assert [[(p["method"], p["path"]) for p in ps] for ps in planned] == [
        [("POST", "/nodes/pve1/qemu/103/status/start")], [("POST", "/nodes/pve1/qemu/100/status/stop")],
        [("POST", "/nodes/pve1/qemu/100/status/reboot")], [("POST", "/nodes/pve1/qemu/100/status/shutdown")],
        [("DELETE", "/nodes/pve2/qemu/104")],
        [("PUT", "/nodes/pve1/qemu/103/config"), ("PUT", "/nodes/pve1/qemu/103/resize")],
        [("PUT", "/nodes/pve1/qemu/103/config")],
        [("POST", "/nodes/pve1/qemu/103/status/start")], [("POST", "/nodes/pve2/qemu/104/status/start")]]
    shutdown = planned[3][0]
    assert shutdown["params"] == {"timeout": 60, "forceStop": 1} and shutdown["node"] == "pve1"
    assert shutdown["summary"] == "shutdown VM 100 (web-01) on pve1"
    assert shutdown["curl"].startswith("curl -s --cacert ") and "-X POST" in shutdown["curl"]
    text = json.dumps(planned)
    assert "s3cret-pw" not in text and sim.token_secret not in text       # secrets hidden
    assert "cipassword=<hidden>" in planned[6][0]["summary"]
    assert (status(pve, 103), status(pve, 100), "mq-01" in [v.name for v in pve.vms.list()]) == (
        "stopped", "running", True)
    # a dry run's Task: no UPID, wait() returns the plan
    task = dry.vms.start("cache-01", wait=False)
    assert task.upid is None and task.wait().outcome == "planned"


# ------------------------------------------------------------------------------------ audit, events
def test_writes_are_audited_as_library_calls(sim: pvectl.sim.Cluster, pve: pvectl.Cluster, audit_file: Path) -> None:
    r = pve.vms.start("cache-01")
    pve.with_options(dry_run=True).vms.stop("cache-01", yes=True)          # a dry run is not audited
    entries = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert [(e["event"], e["via"], e.get("upid"), e.get("result")) for e in entries] == [
        ("write", "library", r.upid, "task started"), ("task", "library", r.upid, "OK")]
    assert entries[0]["method"] == "POST" and entries[0]["path"] == "/nodes/pve1/qemu/103/status/start"

    with pvectl.Cluster.from_config(str(sim.config_path), audit=False) as quiet:
        quiet.vms.stop("cache-01", yes=True)
    assert len(audit_file.read_text().splitlines()) == 2


def test_progress_events_reach_on_event(sim: pvectl.sim.Cluster, audit_file: Path) -> None:
    events: list[dict[str, Any]] = []
    with pvectl.Cluster.from_config(str(sim.config_path), audit=str(audit_file), on_event=events.append) as pve:
        r = pve.vms.start("cache-01")
    started = [e for e in events if e["event"] == "task_started"]
    assert started == [{"event": "task_started", "upid": r.upid, "node": "pve1",
                        "summary": "start VM 103 (cache-01) on pve1"}]
    assert [e["exitstatus"] for e in events if e["event"] == "task_done"] == ["OK"]
