"""pvectl.migration as a library, against the simulator over HTTPS.

Each test checks what `migrate`/`check` return and what the simulated cluster holds afterwards
(`sim.backend.state`), and counts requests through a wrapper around `Transport.request`, so "refused
before anything was sent" is a fact. Spec: pve-semantics row 9, §9.1, §9.2, C9, §2.2.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from libharness import Sent, vm, writer
from testkit import move_to_shared

from pvectl.cluster import Cluster
from pvectl.errors import GuardRefused, TaskFailed
from pvectl.migration import MigrationCheck, MigrationResult, check, migrate
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.tasks import Progress, Task
from pvectl.writes import Write, Writer

GIB = 1024**3
WAIT = 60.0


def volumes_of(sim: SimCluster, vmid: int) -> list[str]:
    return sorted(k for k, v in sim.backend.state.volumes.items() if v.vmid == vmid)


def run(pvc: Cluster, ref: str | int, target: str, **kw: Any) -> MigrationResult:
    r = migrate(pvc, ref, target, writer=kw.pop("writer", None) or writer(pvc), deadline=WAIT, **kw)
    assert isinstance(r, MigrationResult)
    return r


def refused(pvc: Cluster, ref: str | int, target: str, **kw: Any) -> GuardRefused:
    sent = Sent(pvc)
    with pytest.raises(GuardRefused) as e:
        migrate(pvc, ref, target, writer=writer(pvc), deadline=WAIT, **kw)
    assert sent.writes == []
    return e.value


# ------------------------------------------------------------------------------------------- offline
def test_offline_migration_of_a_stopped_vm_moves_its_local_disks(sim: SimCluster, pvc: Cluster) -> None:
    assert volumes_of(sim, 103) == ["pve1/local-lvm:vm-103-cloudinit", "pve1/local-lvm:vm-103-disk-0"]
    sent = Sent(pvc)
    r = run(pvc, "cache-01", "pve2")
    assert [(m, p, d) for m, p, d in sent.writes] == [("POST", "/nodes/pve1/qemu/103/migrate",
                                                       {"target": "pve2", "online": 0})]
    assert (r.vmid, r.source, r.target, r.node, r.mode, r.outcome, r.exitstatus, r.status) == \
        (103, "pve1", "pve2", "pve2", "offline", "done", "OK", "stopped")
    assert r.local_disks == ["local-lvm:vm-103-cloudinit", "local-lvm:vm-103-disk-0"]
    assert r.duration is not None and r.duration_seconds is not None and r.downtime_ms is None
    assert r.log[-2].endswith(f"migration finished successfully (duration {r.duration})")
    assert r.upid is not None and r.upid.split(":")[5:7] == ["qmigrate", "103"]
    assert vm(sim, 103).node == "pve2" and vm(sim, 103).status == "stopped"
    assert "lock" not in vm(sim, 103).config
    assert volumes_of(sim, 103) == ["pve2/local-lvm:vm-103-cloudinit", "pve2/local-lvm:vm-103-disk-0"]


def test_online_flag_on_a_stopped_vm_migrates_offline_with_a_warning(sim: SimCluster, pvc: Cluster) -> None:
    sent = Sent(pvc)
    r = run(pvc, 103, "pve3", online=True)
    assert sent.writes[0][2] == {"target": "pve3", "online": 0}
    assert r.mode == "offline" and vm(sim, 103).node == "pve3"
    assert r.warnings == ["the VM is stopped: it is migrated offline (Proxmox ignores --online then)"]


def test_offline_requested_for_a_running_vm_is_refused(sim: SimCluster, pvc: Cluster) -> None:
    move_to_shared(sim.backend, 100)
    e = refused(pvc, 100, "pve2", online=False)
    assert e.message == ("cannot migrate VM 100 (web-01) to pve2: the VM is running: an offline migration needs a "
                         "stopped VM (Proxmox: can't migrate running VM without --online)")
    assert e.hint == "shut it down first (pvectl vm shutdown 100), or drop --offline to migrate it live"
    assert vm(sim, 100).node == "pve1"


# ---------------------------------------------------------------------------------------------- live
def test_live_migration_on_shared_storage_keeps_the_vm_running(sim: SimCluster, pvc: Cluster) -> None:
    move_to_shared(sim.backend, 100)
    pid = vm(sim, 100).pid
    seen: list[Progress] = []
    sent = Sent(pvc)
    r = run(pvc, "web-01", "pve3", on_progress=seen.append)
    assert sent.writes == [("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve3", "online": 1})]
    assert (r.node, r.mode, r.status, r.exitstatus, r.downtime_ms, r.local_disks) == \
        ("pve3", "live", "running", "OK", 42, [])
    assert seen and all(p.phase == "migrate" for p in seen)
    assert seen[-1].line.split(" ", 2)[2].startswith("migration active, transferred ")
    assert vm(sim, 100).node == "pve3" and vm(sim, 100).status == "running" and vm(sim, 100).pid != pid


def test_live_with_local_disks_is_refused_before_any_request(sim: SimCluster, pvc: Cluster) -> None:
    before = sim.server.requests.last_seq
    e = refused(pvc, 100, "pve2")
    assert e.message == ("cannot migrate VM 100 (web-01) to pve2: a live migration with local disks needs "
                         "--with-local-disks: local-lvm:vm-100-cloudinit (ide2), local-lvm:vm-100-disk-0 (scsi0)")
    assert e.hint == ("add --with-local-disks (the disks are mirrored while the VM runs), move them to shared "
                      "storage, or shut the VM down (pvectl vm shutdown 100) for an offline migration")
    assert [x for x in sim.requests_log(since=before) if x["method"] != "GET"] == []
    assert vm(sim, 100).node == "pve1" and "lock" not in vm(sim, 100).config


def test_live_with_local_disks_and_the_flag(sim: SimCluster, pvc: Cluster) -> None:
    sent = Sent(pvc)
    r = run(pvc, 100, "pve2", with_local_disks=True, bwlimit="500M")
    assert sent.writes == [("POST", "/nodes/pve1/qemu/100/migrate",
                            {"target": "pve2", "online": 1, "with-local-disks": 1, "bwlimit": 512000})]
    assert (r.node, r.mode, r.status, r.downtime_ms) == ("pve2", "live", "running", 42)
    assert any(line.endswith("migration speed limit: 500.0 MiB/s") for line in r.log)
    assert any(line.endswith("drive-scsi0: mirror-job finished") for line in r.log)
    assert vm(sim, 100).node == "pve2" and vm(sim, 100).status == "running"
    assert volumes_of(sim, 100) == ["pve2/local-lvm:vm-100-cloudinit", "pve2/local-lvm:vm-100-disk-0"]


# ----------------------------------------------------------------------------------------- targets
def test_offline_target_is_refused_by_the_precheck(sim: SimCluster, pvc: Cluster) -> None:
    sim.stop_node("pve3")
    e = refused(pvc, 103, "pve3")
    assert e.message == "cannot migrate VM 103 (cache-01) to pve3: target node pve3 is offline (not in the cluster " \
                        "membership)"
    assert e.hint == "bring pve3 back, or pick an online node: pve2"
    assert vm(sim, 103).node == "pve1"


def test_target_is_its_own_node(sim: SimCluster, pvc: Cluster) -> None:
    e = refused(pvc, 103, "pve1")
    assert e.message == "cannot migrate VM 103 (cache-01) to pve1: the VM is already on pve1 (Proxmox: target is " \
                        "local node.)"
    assert e.hint == "pick another node: pve2, pve3"


def test_unknown_node(sim: SimCluster, pvc: Cluster) -> None:
    e = refused(pvc, 103, "pve9")
    assert e.message == "cannot migrate VM 103 (cache-01) to pve9: no such cluster node 'pve9'"
    assert e.hint == "cluster members: pve1, pve2, pve3"


def test_not_enough_memory_on_the_target(sim: SimCluster, pvc: Cluster) -> None:
    move_to_shared(sim.backend, 100)
    sim.set_node("pve2", mem_total=32 * GIB, mem_used=29 * GIB)
    e = refused(pvc, 100, "pve2")
    assert e.message == ("cannot migrate VM 100 (web-01) to pve2: pve2 has 3.0 GiB free; the VM needs 4.0 GiB plus "
                         "a 1.6 GiB reserve (5.6 GiB)")
    assert e.hint == "free memory on pve2, or pick a node with more free memory (pvectl node list)"
    c = check(pvc, 100, "pve2")
    assert c.memory == {"vm_maxmem": 4 * GIB, "target_total": 32 * GIB, "target_free": 3 * GIB,
                        "reserve": 32 * GIB // 20, "needed": 4 * GIB + 32 * GIB // 20}


def test_not_enough_memory_is_only_a_warning_for_a_stopped_vm(sim: SimCluster, pvc: Cluster) -> None:
    sim.set_node("pve2", mem_total=32 * GIB, mem_used=31 * GIB)
    r = run(pvc, 103, "pve2")
    assert r.warnings == [("pve2 has 1.0 GiB free; the VM needs 1.0 GiB plus a 1.6 GiB reserve (2.6 GiB): not "
                           "enough to start it there")]
    assert vm(sim, 103).node == "pve2"


def test_locked_vm_is_refused(sim: SimCluster, pvc: Cluster) -> None:
    sim.hold_lock(103, kind="backup")
    try:
        sent = Sent(pvc)
        with pytest.raises(GuardRefused) as e:
            migrate(pvc, 103, "pve2", writer=writer(pvc), deadline=WAIT)
        assert e.value.message == "cannot migrate VM 103 (cache-01) to pve2: the VM is locked (backup): a task is " \
                                  "using it"
        # the precondition endpoint refuses a locked VM itself (§9.1): it is not asked
        assert not [c for c in sent.calls if c[1].endswith("/migrate")]
        assert sent.writes == []
    finally:
        sim.release_lock(103)
    assert vm(sim, 103).node == "pve1"


# --------------------------------------------------------------------------------- check and dry-run
def test_check_changes_nothing(sim: SimCluster, pvc: Cluster) -> None:
    sent = Sent(pvc)
    ok = migrate(pvc, 103, "pve2", writer=writer(pvc), check_only=True)
    assert isinstance(ok, MigrationCheck)
    assert (ok.verdict, ok.allowed, ok.mode, ok.running, ok.node) == ("ok", True, "offline", False, "pve1")
    assert [f.check for f in ok.findings] == ["target", "quorum", "lock", "mode", "storage", "local-disks", "memory"]
    no = check(pvc, 100, "pve2")
    assert (no.verdict, no.allowed, no.mode) == ("refused", False, "live")
    assert [f.check for f in no.refusals] == ["local-disks"]
    assert check(pvc, 100, "pve2", with_local_disks=True).allowed
    assert sent.writes == []
    assert ("GET", "/nodes/pve1/qemu/103/migrate", {"target": "pve2"}) in sent.calls
    assert vm(sim, 103).node == "pve1" and vm(sim, 100).node == "pve1"
    d = ok.to_dict()
    assert set(d) == {"vmid", "name", "node", "target", "mode", "running", "verdict", "allowed", "findings",
                      "local_disks", "memory"}
    assert set(d["findings"][0]) == {"check", "level", "reason", "fix"}


def test_dry_run_prints_the_curl_line_after_the_checks(sim: SimCluster, pvc: Cluster) -> None:
    w = writer(pvc, dry_run=True)
    sent = Sent(pvc)
    r = migrate(pvc, 100, "pve2", writer=w, with_local_disks=True, bwlimit=51200)
    assert isinstance(r, MigrationResult) and r.outcome == "planned" and r.upid is None
    assert sent.writes == []
    out = w.out.getvalue()  # type: ignore[attr-defined]
    assert out.splitlines()[0] == ("# migrate VM 100 (web-01) live from pve1 to pve2, local disks: "
                                   "local-lvm:vm-100-cloudinit, local-lvm:vm-100-disk-0")
    curl = out.splitlines()[1]
    assert "-X POST" in curl and "/api2/json/nodes/pve1/qemu/100/migrate" in curl
    for pair in ("target=pve2", "online=1", "with-local-disks=1", "bwlimit=51200"):
        assert f"--data-urlencode {pair}" in curl
    assert sim.token_secret not in out
    assert vm(sim, 100).node == "pve1"


# -------------------------------------------------------------------------------- task end states
class _TargetDiesWriter(Writer):
    """The target leaves the membership between the pre-check and the POST (a race the check cannot
    close): the task fails at Proxmox's ssh check (§9.2, C9)."""

    sim: SimCluster

    def send(self, write: Write) -> Any:
        self.sim.backend.set_node_online("pve3", False)
        return super().send(write)


def test_task_failure_raises_with_the_log_tail(sim: SimCluster, pvc: Cluster) -> None:
    w = _TargetDiesWriter(pvc.config, pvc.transport, command="pvectl test", out=io.StringIO())
    w.sim = sim
    with pytest.raises(TaskFailed) as e:
        migrate(pvc, 103, "pve3", writer=w, deadline=WAIT)
    assert e.value.exitstatus == "migration aborted"
    assert e.value.log_tail[-1].split(" ", 2)[2].startswith("ERROR: migration aborted (duration ")
    assert e.value.log_tail[-1].endswith("): Can't connect to destination address using public key")
    assert vm(sim, 103).node == "pve1" and "lock" not in vm(sim, 103).config


def test_injected_task_failure(sim: SimCluster, pvc: Cluster) -> None:
    sim.fail_task(type="qmigrate", message="migration problems")
    with pytest.raises(TaskFailed) as e:
        run(pvc, 103, "pve2")
    assert e.value.exitstatus == "migration problems"
    assert vm(sim, 103).node == "pve1"


def test_no_wait_returns_the_upid(sim: SimCluster, pvc: Cluster) -> None:
    r = run(pvc, 103, "pve2", wait=False)
    assert r.outcome == "started" and r.upid is not None and r.node == "pve1"
    assert Task(pvc, r.upid).wait(WAIT).exitstatus == "OK"
    assert vm(sim, 103).node == "pve2"


# ------------------------------------------------------------------------ the target goes away afterwards
def test_a_target_unreachable_after_the_move_is_a_warning_not_a_failure(sim: SimCluster, pvc: Cluster) -> None:
    """pveproxy on the target stops while the migration runs; the task still ends OK and the VM is on
    the target. The task's result decides: done, with the UPID, and the failed read as a warning."""
    move_to_shared(sim.backend, 100)
    stopped: list[str] = []

    def stop_target(p: Progress) -> None:
        if not stopped:
            sim.stop_node("pve3")
            stopped.append("pve3")

    try:
        r = run(pvc, "web-01", "pve3", on_progress=stop_target)
    finally:
        sim.start_node("pve3")
    assert stopped and vm(sim, 100).node == "pve3"
    assert (r.outcome, r.exitstatus, r.node, r.status) == ("done", "OK", "pve3", None)
    assert r.upid is not None and r.upid.split(":")[5:7] == ["qmigrate", "100"]
    assert len(r.warnings) == 1 and r.warnings[0].startswith(f"migrated (task {r.upid} OK), but the VM's state "
                                                             "on pve3 could not be read: ")


def test_a_migrate_post_whose_answer_is_lost_finds_its_task(sim: SimCluster, pvc: Cluster) -> None:
    """The migrate POST is carried out but its answer never comes: the migration's task is found in
    the node's task list, waited for and reported; the POST is not sent again."""
    sim.faults.drop_answer_next(1, method="POST", path="/migrate$")
    r = run(pvc, "cache-01", "pve2")
    assert (r.outcome, r.exitstatus, r.node) == ("done", "OK", "pve2")
    assert r.upid is not None and r.upid.split(":")[5:7] == ["qmigrate", "103"]
    assert vm(sim, 103).node == "pve2"
    assert len([e for e in sim.requests_log() if e["method"] == "POST" and e["path"].endswith("/migrate")]) == 1
