"""Provisioning workflows (pvectl.provision) against the simulator over HTTPS on 127.0.0.1.

Every test asserts the simulator's state (backend.state), not only what the library says.
Spec: seed "VM Creation from Template (Clone)" + "Post-clone configuration"; pve-semantics §3.3-§3.4
(clone locks), §4 (clone rules), §7.4-§7.5 (cloud-init, sshkeys), §10.3 (nextid), §13 (guest agent).
"""

from __future__ import annotations

import io
import os
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit import move_to_shared

from pvectl.cluster import Cluster
from pvectl.errors import GuardRefused, UsageError
from pvectl.provision import (
    CloneSpec,
    ProvisionEvent,
    ProvisionFailed,
    encode_sshkeys,
    parse_memory,
    provision,
    provision_many,
)
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.sim.models import ALL_PRIVS, VM
from pvectl.tasks import Deadline
from pvectl.writes import Writer

KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5Zm9ycHZlY3RsdGVzdGluZzAxMjM0NTY3 alice@example.com"
KEY2 = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPx3+/k= bob+ci@host:smartcard")
TEMPLATE = "ubuntu-24.04-cloud"      # VMID 9000 on pve1, disks on local-lvm, tags ubuntu;template


@pytest.fixture(autouse=True)
def _audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with SimCluster(nodes=3, vms=12, templates=2, bind="127.0.0.1", port=0, time_scale=0.02) as s:
        yield s


@pytest.fixture
def pve(sim: SimCluster) -> Iterator[Cluster]:
    with Cluster.from_config(str(sim.config_path)) as c:
        yield c


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    p = tmp_path / "keys.pub"
    p.write_text(f"{KEY1}\n\n{KEY2}\n", encoding="utf-8")
    return p


def run(pve: Cluster, spec: CloneSpec, *, deadline: float = 60, events: list[ProvisionEvent] | None = None,
        dry_run: bool = False, out: io.StringIO | None = None) -> Any:
    writer = Writer(pve.config, pve.transport, "test", dry_run=dry_run, out=out or io.StringIO())
    return provision(pve.session, spec, deadline=Deadline(deadline), writer=writer,
                     on_event=events.append if events is not None else None)


def writes(sim: SimCluster, since: int = 0) -> list[tuple[str, str]]:
    return [(e["method"], e["path"]) for e in sim.requests_log(since=since) if e["method"] != "GET"]


def last_seq(sim: SimCluster) -> int:
    log = sim.requests_log()
    return log[-1]["seq"] if log else 0


def by_name(sim: SimCluster, name: str) -> list[VM]:
    return [v for v in sim.backend.state.vms.values() if v.config.get("name") == name]


def token_cluster(sim: SimCluster, tmp_path: Path, privs: dict[str, list[str]]) -> Cluster:
    tokenid = "limited@pve!prov"
    secret = sim.add_token(tokenid, privs=privs)
    tf = tmp_path / "token-limited"
    fd = os.open(tf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{tokenid}\n{secret}\n")
    doc = yaml.safe_load(sim.config_path.read_text())
    doc["credentials"] = {"token_file": str(tf)}
    cfg = tmp_path / "limited.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return Cluster.from_config(str(cfg))


# ------------------------------------------------------------------------------------------ units


def test_memory_and_sshkeys_encoding() -> None:
    assert parse_memory("4G") == parse_memory("4096M") == parse_memory("4096") == parse_memory(4096) == 4096
    assert parse_memory("1.5GiB") == 1536
    with pytest.raises(UsageError):
        parse_memory("4 gallons")
    enc = encode_sshkeys(f"{KEY1}\n{KEY2}\n")
    assert enc == urllib.parse.quote(f"{KEY1}\n{KEY2}", safe="")
    # the sshkeys rule ^[-%a-zA-Z0-9_.!~*'()]*$ (pve-semantics §7.5): no +, /, =, :, @, space, newline
    assert all(c not in enc for c in "+/=:@ \n")
    assert encode_sshkeys(enc) == enc          # pre-encoded input is not encoded twice


# ------------------------------------------------------------------------------------------ end to end


def test_single_clone_end_to_end(sim: SimCluster, pve: Cluster, keys_file: Path) -> None:
    events: list[ProvisionEvent] = []
    spec = CloneSpec(TEMPLATE, "web-1", cores=4, memory="4G", bridge="vmbr1", ip="10.0.0.5/24,gw=10.0.0.1",
                     ssh_keys_file=str(keys_file), disk_size="+10G", start=True, wait_ip=True)
    res = run(pve, spec, events=events)
    assert res.result == "created" and res.changed
    assert res.steps == ["clone", "config", "resize", "start", "ip"]
    vm = sim.backend.state.vms[res.vmid]
    c = vm.config
    assert res.vmid == 112                          # 100..111 exist: the lowest free in 100-899
    assert (vm.node, res.node) == ("pve1", "pve1")  # the template's node
    assert c["name"] == "web-1"
    assert int(c["cores"]) == 4 and str(c["memory"]) == "4096"
    assert c["net0"].startswith("virtio=BC:24:11:") and c["net0"].endswith(",bridge=vmbr1")
    assert c["ipconfig0"] == "ip=10.0.0.5/24,gw=10.0.0.1"
    assert c["ciuser"] == "ubuntu"                  # cloudinit.default_user
    # stored exactly as Proxmox keeps it: percent-encoded once (the form layer encoded it again on the wire)
    assert c["sshkeys"] == urllib.parse.quote(f"{KEY1}\n{KEY2}", safe="")
    assert "template" not in c["tags"].split(";") and c["tags"] == "ubuntu"
    assert "size=42G" in c["scsi0"]                 # 32G template disk + 10G
    assert c["scsi0"].startswith("local-lvm:vm-112-disk-0")
    assert c["description"].startswith("pvectl: cloned from template 9000 (ubuntu-24.04-cloud)")
    assert "lock" not in c and vm.pending == {}
    assert vm.status == "running" and res.state == "running"
    assert res.ip == vm.guest_ip.split("/")[0]
    assert set(res.upids) == {"clone", "resize", "start"}
    # progress went to the callback: copy progress of the full clone, then every step
    fractions = [e.fraction for e in events if e.step == "clone" and e.state == "progress"]
    assert fractions and fractions[-1] == pytest.approx(1.0)
    assert [e.step for e in events if e.state == "done"] == ["plan", "clone", "config", "resize", "start", "ip", "done"]
    # exactly one config PUT, with the digest read after the clone
    puts = [w for w in writes(sim) if w[0] == "PUT" and w[1].endswith("/config")]
    assert len(puts) == 1


def test_linked_clone_and_defaults(sim: SimCluster, pve: Cluster) -> None:
    res = run(pve, CloneSpec(TEMPLATE, "lnk-1", linked=True))
    c = sim.backend.state.vms[res.vmid].config
    assert c["scsi0"].startswith(f"local-lvm:vm-{res.vmid}-disk-0")
    vol = sim.backend.state.volumes[f"pve1/local-lvm:vm-{res.vmid}-disk-0"]
    assert vol.base == "local-lvm:base-9000-disk-0"          # linked to the template's base volume
    assert c["ipconfig0"] == "ip=dhcp"                       # the seed's default
    assert c["net0"].endswith("bridge=vmbr0")                # template's bridge is the default: kept
    assert sim.backend.state.vms[res.vmid].status == "stopped"


def test_linked_with_storage_refused() -> None:
    with pytest.raises(UsageError, match="linked"):
        from pvectl.provision import _check_spec

        _check_spec(CloneSpec(TEMPLATE, "x", linked=True, storage="ceph-vm"))


# ------------------------------------------------------------------------------------------ idempotency


def test_idempotent_rerun_changes_nothing(sim: SimCluster, pve: Cluster) -> None:
    first = run(pve, CloneSpec(TEMPLATE, "app-1", cores=2))
    seq = last_seq(sim)
    before = {k: dict(v.config) for k, v in sim.backend.state.vms.items()}
    again = run(pve, CloneSpec(TEMPLATE, "app-1", cores=2))
    assert (again.result, again.changed, again.vmid, again.node) == ("exists", False, first.vmid, "pve1")
    assert writes(sim, seq) == []
    assert {k: dict(v.config) for k, v in sim.backend.state.vms.items()} == before
    # a different wish is reported, not applied
    third = run(pve, CloneSpec(TEMPLATE, "app-1", cores=8))
    assert third.result == "exists" and any("cores is 2" in w for w in third.warnings)
    assert writes(sim, seq) == []


def test_same_name_other_vm_refused(sim: SimCluster, pve: Cluster) -> None:
    seq = last_seq(sim)
    with pytest.raises(GuardRefused, match="web-01") as ei:
        run(pve, CloneSpec(TEMPLATE, "web-01"))            # VM 100, not made from the template
    assert ei.value.exit_code == 3
    assert writes(sim, seq) == []
    # made from ANOTHER template: refused too
    run(pve, CloneSpec("debian-12-cloud", "deb-1"))
    with pytest.raises(GuardRefused, match="from template 9001"):
        run(pve, CloneSpec(TEMPLATE, "deb-1"))


# ------------------------------------------------------------------------------------------ VMIDs


def test_vmid_skips_taken_ids_and_stays_in_range(sim: SimCluster, pve: Cluster, tmp_path: Path) -> None:
    with sim.backend.mu:
        for vmid, node in ((112, "pve2"), (113, "pve3"), (115, "pve1")):
            sim.backend.state.vms[vmid] = VM(vmid=vmid, node=node, config={"name": f"other-{vmid}"})
    res = run(pve, CloneSpec(TEMPLATE, "gap-1"))
    assert res.vmid == 114
    res = run(pve, CloneSpec(TEMPLATE, "gap-2"))
    assert res.vmid == 116
    with pytest.raises(GuardRefused, match="outside vmid_ranges.vms"):
        run(pve, CloneSpec(TEMPLATE, "far-1", vmid=950))
    # a full range
    doc = yaml.safe_load(sim.config_path.read_text())
    doc["vmid_ranges"]["vms"] = "100-116"
    cfg = tmp_path / "narrow.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    with Cluster.from_config(str(cfg)) as narrow:
        with pytest.raises(GuardRefused, match="no free VMID left in the range 100-116"):
            run(narrow, CloneSpec(TEMPLATE, "full-1"))


@pytest.mark.parametrize("node,why", [("pve1", "config file already exists"), ("pve2", "File exists")])
def test_already_exists_race_takes_next_vmid(sim: SimCluster, pve: Cluster, node: str, why: str) -> None:
    """Another client creates the planned VMID between our read and our clone: on the template's node
    Proxmox answers SYNC 500, on another node the task fails with EEXIST (§4.2). Either way the next
    free VMID is taken, and nothing is created twice."""
    events: list[ProvisionEvent] = []
    taken: list[int] = []

    def on_event(e: ProvisionEvent) -> None:
        events.append(e)
        # right before the clone POST, after pvectl's own last look at the cluster
        if e.step == "clone" and e.state == "start" and not taken:
            taken.append(e.vmid or 0)
            with sim.backend.mu:
                sim.backend.state.vms[e.vmid or 0] = VM(vmid=e.vmid or 0, node=node, config={"name": "intruder"})

    writer = Writer(pve.config, pve.transport, "test", out=io.StringIO())
    res = provision(pve.session, CloneSpec(TEMPLATE, "race-1"), deadline=Deadline(60), writer=writer, on_event=on_event)
    assert res.vmid == taken[0] + 1
    assert sim.backend.state.vms[taken[0]].config["name"] == "intruder"
    assert [v.vmid for v in by_name(sim, "race-1")] == [res.vmid]
    warn = [e.message for e in events if e.state == "warning"]
    assert any(why in m and f"trying VMID {res.vmid}" in m for m in warn), warn


def test_two_clients_at_once_get_distinct_vmids(sim: SimCluster) -> None:
    """Two independent clients (own Cluster, own allocator) both pick the same lowest free VMID; the
    loser of the race gets `already exists` and moves on."""
    results: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def client(name: str) -> None:
        with Cluster.from_config(str(sim.config_path)) as c:
            def on_event(e: ProvisionEvent) -> None:
                if e.step == "plan" and e.state == "done":
                    barrier.wait(10)     # both have planned (the same VMID) before either clones
            results[name] = provision(c.session, CloneSpec(TEMPLATE, name), deadline=Deadline(60),
                                      writer=Writer(c.config, c.transport, "test", out=io.StringIO()), on_event=on_event)

    threads = [threading.Thread(target=client, args=(n,)) for n in ("twin-a", "twin-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    a, b = results["twin-a"], results["twin-b"]
    assert a.result == b.result == "created"
    assert {a.vmid, b.vmid} == {112, 113}
    assert len(by_name(sim, "twin-a")) == len(by_name(sim, "twin-b")) == 1


# ------------------------------------------------------------------------------------------ failures


def test_clone_task_error_leaves_nothing(sim: SimCluster, pve: Cluster) -> None:
    sim.fail_task(type="qmclone", message="clone failed: storage 'local-lvm' is full")
    vols_before = set(sim.backend.state.volumes)
    with pytest.raises(ProvisionFailed) as ei:
        run(pve, CloneSpec(TEMPLATE, "doomed-1"))
    e = ei.value
    assert "storage 'local-lvm' is full" in e.message
    assert "nothing was created (checked" in e.message
    assert e.exit_code == 1 and e.result.state == "absent" and e.upid
    assert by_name(sim, "doomed-1") == [] and 112 not in sim.backend.state.vms
    assert set(sim.backend.state.volumes) == vols_before


def test_clone_lock_timeout_reported(sim: SimCluster, pve: Cluster) -> None:
    """An exclusive hold of the template's flock (a hung task) makes every clone task fail with
    `can't lock file ... got timeout` (§3.3/§3.4); after bounded retries the error is reported."""
    sim.hold_lock(9000, kind="")
    try:
        with pytest.raises(ProvisionFailed) as ei:
            run(pve, CloneSpec(TEMPLATE, "locked-1"), deadline=2.5)
    finally:
        sim.release_lock(9000)
    assert "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout" in ei.value.message
    assert "nothing was created" in ei.value.message
    assert by_name(sim, "locked-1") == []


def test_clone_lock_released_during_retry(sim: SimCluster, pve: Cluster) -> None:
    sim.hold_lock(9000, kind="")
    threading.Timer(0.3, sim.release_lock, args=(9000,)).start()
    events: list[ProvisionEvent] = []
    res = run(pve, CloneSpec(TEMPLATE, "patient-1"), events=events)
    assert res.result == "created" and len(by_name(sim, "patient-1")) == 1
    assert any("can't lock file" in e.message and e.state == "warning" for e in events)


def test_node_down_after_clone_reports_half_made_vm(sim: SimCluster, pve: Cluster) -> None:
    def on_event(e: ProvisionEvent) -> None:
        if e.step == "clone" and e.state == "done":
            sim.stop_node("pve1")

    with pytest.raises(ProvisionFailed) as ei:
        provision(pve.session, CloneSpec(TEMPLATE, "half-1", cores=2, start=True), deadline=Deadline(30),
                  writer=Writer(pve.config, pve.transport, "test", out=io.StringIO()), on_event=on_event)
    e = ei.value
    vmid = e.result.vmid
    assert vmid is not None and sim.backend.state.vms[vmid].config["name"] == "half-1"
    assert e.result.node == "pve1" and e.result.steps == ["clone"]
    assert f"VM {vmid} (half-1) on pve1" in e.message and "unknown" in e.message
    assert f"pvectl vm delete {vmid} --yes" in (e.hint or "")
    assert e.exit_code == 5


def test_permission_denied_on_config_reports_vm(sim: SimCluster, tmp_path: Path) -> None:
    privs = {"/": [p for p in ALL_PRIVS if p != "VM.Config.Cloudinit"]}
    with token_cluster(sim, tmp_path, privs) as c:
        with pytest.raises(ProvisionFailed) as ei:
            run(c, CloneSpec(TEMPLATE, "noci-1", start=True))
    e = ei.value
    vmid = e.result.vmid
    assert "Permission check failed" in e.message and "VM.Config.Cloudinit" in e.message
    assert f"VM {vmid} (noci-1) on pve1" in e.message and "stopped" in e.message
    assert f"pvectl vm delete {vmid} --yes" in (e.hint or "") and "VM.Config.Cloudinit" in (e.hint or "")
    vm = sim.backend.state.vms[vmid]
    assert vm.status == "stopped" and "ciuser" not in vm.config      # the PUT changed nothing


def test_cleanup_on_failure_deletes_the_vm(sim: SimCluster, tmp_path: Path) -> None:
    privs = {"/": [p for p in ALL_PRIVS if p != "VM.Config.Cloudinit"]}
    vols_before = set(sim.backend.state.volumes)
    with token_cluster(sim, tmp_path, privs) as c:
        with pytest.raises(ProvisionFailed) as ei:
            run(c, CloneSpec(TEMPLATE, "tidy-1", cleanup_on_failure=True))
    assert "deleted it (--cleanup-on-failure)" in ei.value.message
    assert ei.value.result.state == "absent" and "cleanup" in ei.value.result.steps
    assert by_name(sim, "tidy-1") == []
    assert set(sim.backend.state.volumes) == vols_before


def test_cleanup_stops_a_started_vm(sim: SimCluster, pve: Cluster) -> None:
    with sim.backend.mu:
        del sim.backend.state.vms[9000].config["agent"]          # no agent: --wait-ip cannot work
    with pytest.raises(ProvisionFailed) as ei:
        run(pve, CloneSpec(TEMPLATE, "noagent-1", wait_ip=True, cleanup_on_failure=True))
    assert "No QEMU guest agent configured" in ei.value.message or "no QEMU guest agent" in ei.value.message
    assert ei.value.result.upids.get("cleanup-stop") and by_name(sim, "noagent-1") == []


# ------------------------------------------------------------------------------------------ placement


def test_target_other_node_with_local_storage_refused_before_any_write(sim: SimCluster, pve: Cluster) -> None:
    seq = last_seq(sim)
    with pytest.raises(GuardRefused) as ei:
        run(pve, CloneSpec(TEMPLATE, "far-1", target="pve2"))
    msg, hint = ei.value.message, ei.value.hint or ""
    assert "local storage" in msg and "scsi0 on local-lvm" in msg and "shared storage" in msg
    assert "pvectl vm migrate" in hint
    assert writes(sim, seq) == []


def test_target_auto_stays_on_template_node_for_local_disks(sim: SimCluster, pve: Cluster) -> None:
    sim.set_node("pve1", mem_used=120 * 1024**3)                # pve1 is the fullest node
    events: list[ProvisionEvent] = []
    res = run(pve, CloneSpec(TEMPLATE, "auto-1", target="auto"), events=events)
    assert res.node == "pve1" and sim.backend.state.vms[res.vmid].node == "pve1"
    assert any("staying on the template's node pve1" in w for w in res.warnings)


def test_target_auto_moves_with_shared_storage(sim: SimCluster, pve: Cluster) -> None:
    move_to_shared(sim.backend, 9000)
    sim.set_node("pve1", mem_used=120 * 1024**3)
    sim.set_node("pve2", mem_used=100 * 1024**3)
    res = run(pve, CloneSpec(TEMPLATE, "auto-2", target="auto", storage="ceph-vm"))
    assert res.node == "pve3" and sim.backend.state.vms[res.vmid].node == "pve3"
    assert sim.backend.state.vms[res.vmid].config["scsi0"].startswith(f"ceph-vm:vm-{res.vmid}-disk-0")


# ------------------------------------------------------------------------------------------ bulk


def test_count_five(sim: SimCluster, pve: Cluster) -> None:
    from pvectl.provision import specs_for_count

    specs = specs_for_count(CloneSpec(TEMPLATE, "x", cores=2, start=True), "web-{n}", 5)
    events: list[ProvisionEvent] = []
    lock = threading.Lock()

    def on_event(e: ProvisionEvent) -> None:
        with lock:
            events.append(e)

    results = provision_many(pve.session, specs, deadline=Deadline(90), writer=Writer(pve.config, pve.transport, "test", out=io.StringIO()),
                             max_per_node=2, on_event=on_event)
    assert [r.name for r in results] == [f"web-{i}" for i in range(1, 6)]
    assert all(r.result == "created" for r in results), [r.to_dict() for r in results]
    vmids = [r.vmid for r in results]
    assert vmids == list(range(112, 117))                       # allocated up front, in order, no dupes
    for r in results:
        vm = sim.backend.state.vms[r.vmid]
        assert vm.config["name"] == r.name and vm.status == "running" and int(vm.config["cores"]) == 2
    # pveproxy has 3 workers per node: never more than 3 requests in flight on one node
    assert all(n["max_active"] <= 3 for n in sim.summary()["nodes"].values())
    # at most 2 clone tasks of the template at once
    assert _max_overlap([e for e in events if e.step == "clone" and e.state in ("start", "done")]) <= 2


def _max_overlap(events: list[ProvisionEvent]) -> int:
    live = peak = 0
    for e in events:
        live += 1 if e.state == "start" else -1
        peak = max(peak, live)
    return peak


def test_count_with_one_failure_reports_all(sim: SimCluster, pve: Cluster) -> None:
    from pvectl.provision import specs_for_count

    sim.fail_task(type="qmclone", message="clone failed: injected")
    specs = specs_for_count(CloneSpec(TEMPLATE, "x"), "db-{n}", 3)
    results = provision_many(pve.session, specs, deadline=Deadline(60), writer=Writer(pve.config, pve.transport, "test", out=io.StringIO()),
                             max_per_node=1)
    assert [r.result for r in results].count("failed") == 1
    assert [r.result for r in results].count("created") == 2
    failed = next(r for r in results if not r.ok)
    assert failed.error is not None and "injected" in failed.error.message
    assert by_name(sim, failed.name) == []


# ------------------------------------------------------------------------------------------ dry-run


def test_library_dry_run_with_wait_ip_plans_without_printing(sim: SimCluster, pve: Cluster) -> None:
    """A library writer prints nothing (no `out`): a dry run that would wait for the guest's address
    still returns its plan, and the planned writes are the result."""
    seq = last_seq(sim)
    writer = Writer(pve.config, pve.transport, "test", dry_run=True)
    res = provision(pve.session, CloneSpec(TEMPLATE, "dry-ip-1", wait_ip=True), deadline=Deadline(60), writer=writer)
    assert res.result == "planned"
    assert writes(sim, seq) == []
    assert [(w.method, w.path.rsplit("/", 1)[-1]) for w in writer.planned_writes()] == [
        ("POST", "clone"), ("PUT", "config"), ("POST", "start")]


def test_dry_run_changes_nothing_and_prints_encoded_curl(sim: SimCluster, pve: Cluster, keys_file: Path) -> None:
    before = {k: (v.node, dict(v.config), v.status) for k, v in sim.backend.state.vms.items()}
    vols = set(sim.backend.state.volumes)
    seq = last_seq(sim)
    out = io.StringIO()
    res = run(pve, CloneSpec(TEMPLATE, "dry-1", cores=4, memory="4G", bridge="vmbr1", ssh_keys_file=str(keys_file),
                             disk_size="+10G", start=True), dry_run=True, out=out)
    text = out.getvalue()
    assert res.result == "planned" and res.vmid == 112
    assert writes(sim, seq) == []
    assert {k: (v.node, dict(v.config), v.status) for k, v in sim.backend.state.vms.items()} == before
    assert set(sim.backend.state.volumes) == vols
    assert sim.token_secret not in text
    assert "--data-urlencode newid=112" in text and "--data-urlencode full=1" in text
    assert "/nodes/pve1/qemu/9000/clone" in text
    # every value goes through --data-urlencode, so `=` and `+` inside values arrive intact (seed-errata §1)
    assert "--data-urlencode ipconfig0=ip=dhcp " in text
    assert "--data-urlencode net0=virtio,bridge=vmbr1 " in text
    assert " -d " not in text
    enc = urllib.parse.quote(f"{KEY1}\n{KEY2}", safe="")
    assert f"--data-urlencode sshkeys={enc}" in text
    assert "--data-urlencode size=+10G " in text and "/qemu/112/resize" in text
    assert "/qemu/112/status/start" in text
    assert "--data-urlencode tags=ubuntu" in text
