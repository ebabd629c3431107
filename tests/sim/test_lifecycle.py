"""`pve.vms` power, delete, resize and set as a library, against the simulator over HTTPS.

Each test checks what the call returns and what the simulated cluster holds afterwards
(`sim.backend.state`), and counts the requests sent through a wrapper around `Transport.request`,
so "refused before anything was sent" is a fact, not an assumption.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from libharness import Sent, vm

from pvectl.cluster import Cluster
from pvectl.errors import (
    ApiError,
    GuardRefused,
    NodeUnreachable,
    PermissionDenied,
    TaskFailed,
    UsageError,
)
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.units import parse_memory, parse_prop

GIB = 1024**3
WAIT = 30.0


def node_tasks(sim: SimCluster, node: str) -> int:
    return sum(1 for r in sim.backend.engine.records() if r.node == node)


# ------------------------------------------------------------------------------------------ power
def test_start_stop_shutdown_reboot(sim: SimCluster, pvc: Cluster) -> None:
    r = pvc.vms.start(103, timeout=WAIT)
    assert (r.vmid, r.name, r.node, r.action, r.outcome, r.exitstatus) == (103, "cache-01", "pve1", "start", "done", "OK")
    assert r.upid and ":qmstart:103:" in r.upid and vm(sim, 103).status == "running"

    r = pvc.vms.reboot("cache-01", timeout=WAIT)       # by name
    assert (r.outcome, r.exitstatus) == ("done", "OK") and ":qmreboot:103:" in (r.upid or "")

    with pytest.raises(GuardRefused) as ei:
        pvc.vms.stop(103, timeout=WAIT)
    assert ei.value.message == "stop is a hard power-off of VM 103 (like pulling the plug): data may be lost"
    assert vm(sim, 103).status == "running"

    r = pvc.vms.stop(103, timeout=WAIT, yes=True)
    assert (r.outcome, r.exitstatus) == ("done", "OK") and vm(sim, 103).status == "stopped"

    r = pvc.vms.shutdown(100, guest_timeout=30, timeout=WAIT)
    assert (r.outcome, r.exitstatus) == ("done", "OK") and vm(sim, 100).status == "stopped"


def test_already_in_the_state_sends_nothing(sim: SimCluster, pvc: Cluster) -> None:
    sent = Sent(pvc)
    before = node_tasks(sim, "pve1")
    r = pvc.vms.start(100, timeout=WAIT)
    assert (r.outcome, r.detail, r.upid) == ("already", "already running (qmpstatus running)", None)
    r = pvc.vms.shutdown(103, timeout=WAIT)
    assert (r.outcome, r.detail) == ("already", "already stopped")
    r = pvc.vms.stop(103, timeout=WAIT)      # nothing to stop: no --yes needed
    assert r.outcome == "already"
    assert sent.writes == [] and node_tasks(sim, "pve1") == before


def test_reboot_of_a_stopped_vm_and_power_on_a_template_are_refused(sim: SimCluster, pvc: Cluster) -> None:
    sent = Sent(pvc)
    with pytest.raises(GuardRefused) as ei:
        pvc.vms.reboot(104)
    assert ei.value.message == "VM 104 (mq-01) is stopped: only a running VM can be rebooted"
    assert ei.value.hint == "start it instead: pvectl vm start 104"
    with pytest.raises(GuardRefused, match=r"^VM 9000 \(ubuntu-24.04-cloud\) is a template: it cannot be started$"):
        pvc.vms.start(9000)
    with pytest.raises(UsageError):
        pvc.vms.power_many("hibernate", [103])
    assert sent.writes == []


def test_no_wait_returns_the_upid_of_a_running_task(sim: SimCluster, pvc: Cluster) -> None:
    upid = sim.backend.hold_lock(103, kind="")       # the flock is taken: the start waits for it
    try:
        task = pvc.vms.start(103, wait=False)
        r = task.preview
        assert r is not None and r.outcome == "started" and r.upid and r.exitstatus is None
        assert str(task.upid) == r.upid and pvc.tasks.get(r.upid).status().running
    finally:
        sim.backend.release_lock(103)
    assert upid


def test_failed_start_raises_and_is_audited(sim: SimCluster, pvc: Cluster, tmp_path: Path) -> None:
    import json

    sim.backend.fail_task(type="qmstart", message="start failed: QEMU exited with code 1")
    with pytest.raises(TaskFailed) as ei:
        pvc.vms.start(106, timeout=WAIT)
    assert ei.value.exitstatus == "start failed: QEMU exited with code 1"
    entries = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["event"], e.get("result")) for e in entries] == [
        ("write", "task started"), ("task", "start failed: QEMU exited with code 1")]
    assert entries[0]["upid"] == entries[1]["upid"] == ei.value.upid


def test_permission_denied_names_privilege_and_path(sim: SimCluster, tmp_path: Path) -> None:
    import yaml

    secret = sim.add_token("limited@pve!ops", privs={"/vms/103": ["VM.Audit"]})
    tf = tmp_path / "token"
    tf.write_text(f"limited@pve!ops\n{secret}\n")
    tf.chmod(0o600)
    doc = yaml.safe_load(sim.config_path.read_text())
    doc["credentials"]["token_file"] = str(tf)
    cfg = tmp_path / "limited.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    with Cluster.from_config(str(cfg)) as limited:
        with pytest.raises(PermissionDenied) as ei:
            limited.vms.start(103)
    e = ei.value
    assert (e.message, e.acl_path, e.privilege, e.status) == (
        "Permission check failed (/vms/103, VM.PowerMgmt)", "/vms/103", "VM.PowerMgmt", 403)
    assert vm(sim, 103).status == "stopped"


# ------------------------------------------------------------------------------------------ delete
def _refused(pvc: Cluster, sim: SimCluster, vmid: int, message: str, **kw: Any) -> None:
    sent = Sent(pvc)
    kw.setdefault("yes", True)
    with pytest.raises(GuardRefused) as ei:
        pvc.vms.delete(vmid, timeout=WAIT, **kw)
    assert ei.value.message == message
    assert ei.value.exit_code == 3
    assert sent.writes == [] and vmid in sim.backend.state.vms


def test_delete_guards(sim: SimCluster, pvc: Cluster) -> None:
    _refused(pvc, sim, 100, "VM 100 (web-01) is running: Proxmox refuses to destroy a running VM")
    # 101 is protected (and running): stop it first, then protection is what refuses
    pvc.vms.stop(101, timeout=WAIT, yes=True)
    _refused(pvc, sim, 101, "VM 101 (db-01) has protection enabled")
    sim.backend.hold_lock(103)
    try:
        _refused(pvc, sim, 103, "VM 103 (cache-01) is locked (backup): a task is using it")
    finally:
        sim.backend.release_lock(103)
    _refused(pvc, sim, 9001, "VM 9001 (debian-12-cloud) is a template")
    _refused(pvc, sim, 104, "deleting VM 104 (mq-01) needs confirmation", yes=False)
    _refused(pvc, sim, 104, "deleting VM 104 (mq-01) needs confirmation", yes=False, confirm=lambda name: False)


def test_delete_outside_the_vmid_ranges(sim: SimCluster, tmp_path: Path) -> None:
    import yaml

    doc = yaml.safe_load(sim.config_path.read_text())
    doc["vmid_ranges"] = {"vms": "200-299", "templates": "9000-9999"}
    cfg = tmp_path / "ranges.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    with Cluster.from_config(str(cfg)) as narrow:
        _refused(narrow, sim, 104, "VM 104 (mq-01) is outside the VMID ranges this config manages "
                                   "(vms 200-299, templates 9000-9999)")


def test_delete_removes_the_vm_and_its_volumes(sim: SimCluster, pvc: Cluster) -> None:
    vols_before = {k for k, v in sim.backend.state.volumes.items() if v.vmid == 104}
    assert vols_before == {"pve2/local-lvm:vm-104-disk-0", "pve2/local-lvm:vm-104-cloudinit"}
    asked: list[str] = []
    r = pvc.vms.delete("mq-01", timeout=WAIT, confirm=lambda name: asked.append(name) or True)
    assert asked == ["mq-01"]
    assert (r.outcome, r.exitstatus) == ("done", "OK") and ":qmdestroy:104:" in (r.upid or "")
    assert r.extra["disks"] == ["local-lvm:vm-104-cloudinit", "local-lvm:vm-104-disk-0"]
    assert r.extra["log"] == ['Logical volume "vm-104-cloudinit" successfully removed.',
                              'Logical volume "vm-104-disk-0" successfully removed.',
                              "purging VM 104 from related configurations.."]
    assert 104 not in sim.backend.state.vms
    assert not any(v.vmid == 104 for v in sim.backend.state.volumes.values())


def test_delete_template_with_allow_template(sim: SimCluster, pvc: Cluster) -> None:
    r = pvc.vms.delete(9001, timeout=WAIT, yes=True, allow_template=True)
    assert r.exitstatus == "OK" and 9001 not in sim.backend.state.vms


def test_delete_dry_run_sends_nothing(sim: SimCluster, pvc: Cluster) -> None:
    sent = Sent(pvc)
    out_file = io.StringIO()
    r = pvc.with_options(dry_run=True, out=out_file).vms.delete(104, yes=True)
    assert r.outcome == "planned" and r.upid is None
    assert [p.method for p in r.planned or []] == ["DELETE"]
    assert sent.writes == [] and 104 in sim.backend.state.vms
    out = out_file.getvalue()
    assert out.startswith("# delete VM 104 (mq-01) on pve2 and its disks: local-lvm:vm-104-cloudinit, "
                          "local-lvm:vm-104-disk-0\ncurl -s --cacert ")
    assert "-X DELETE" in out and "/nodes/pve2/qemu/104?purge=1&destroy-unreferenced-disks=1'" in out
    assert sim.token_secret not in out


# ------------------------------------------------------------------------------------------ resize
def test_resize_disk_grows_and_shrink_is_refused_before_any_request(sim: SimCluster, pvc: Cluster) -> None:
    r = pvc.vms.resize(103, timeout=WAIT, disk="scsi0", size="+2G")
    assert r.extra["disk"] == {"disk": "scsi0", "from": 50 * GIB, "to": 52 * GIB} and r.exitstatus == "OK"
    assert parse_prop(vm(sim, 103).config["scsi0"])[1]["size"] == "52G"
    r = pvc.vms.resize(103, timeout=WAIT, disk="scsi0", size="60G")
    assert parse_prop(vm(sim, 103).config["scsi0"])[1]["size"] == "60G"

    sent = Sent(pvc)
    with pytest.raises(GuardRefused) as ei:
        pvc.vms.resize(103, disk="scsi0", size="10G")
    assert ei.value.message == ("disk scsi0 of VM 103 is 60.0 GiB; 10G would shrink it and Proxmox cannot "
                                "shrink disks")
    with pytest.raises(GuardRefused, match="^VM 103 has no disk 'scsi7'$"):
        pvc.vms.resize(103, disk="scsi7", size="+1G")
    with pytest.raises(GuardRefused, match="^ide2 of VM 103 is a CD-ROM drive; it cannot be resized$"):
        pvc.vms.resize(103, disk="ide2", size="+1G")
    assert sent.writes == []
    assert parse_prop(vm(sim, 103).config["scsi0"])[1]["size"] == "60G"

    # usage errors need no request at all
    n = len(sent.calls)
    for kw in ({}, {"disk": "scsi0"}, {"cores": 0}, {"memory": "8"}):
        with pytest.raises(UsageError):
            pvc.vms.resize(103, **kw)
    assert len(sent.calls) == n


def test_resize_cpu_memory_running_vm(sim: SimCluster, pvc: Cluster) -> None:
    sent = Sent(pvc)
    with pytest.raises(GuardRefused) as ei:
        pvc.vms.resize(105, cores=2, memory="4G")
    assert ei.value.message == ("VM 105 is running: changing cores, memory takes effect only after a restart "
                                "(Proxmox keeps it pending)")
    assert sent.writes == []
    r = pvc.vms.resize(105, cores=2, memory="4G", allow_running=True)
    assert r.extra["applied"] == {"cores": "pending until the next start", "memory": "pending until the next start"}
    assert {k: str(v) for k, v in vm(sim, 105).pending.items()} == {"cores": "2", "memory": "4096"}
    assert str(vm(sim, 105).config["cores"]) == "4"


def test_resize_cpu_memory_stopped_vm_applies(sim: SimCluster, pvc: Cluster) -> None:
    r = pvc.vms.resize(104, cores=6, memory="3072")
    assert r.extra["applied"] == {"cores": "applied", "memory": "applied"}
    assert (str(vm(sim, 104).config["cores"]), str(vm(sim, 104).config["memory"])) == ("6", "3072")
    assert vm(sim, 104).pending == {}


@pytest.mark.parametrize(("text", "mib"), [("4096", 4096), ("4G", 4096), ("4GiB", 4096), ("512M", 512),
                                           ("1.5G", 1536), (2048, 2048), ("1T", 1024 * 1024)])
def test_parse_memory(text: Any, mib: int) -> None:
    assert parse_memory(text) == mib


# ------------------------------------------------------------------------------------------ set
def test_set_applies_valid_keys_and_refuses_invalid_ones_unsent(sim: SimCluster, pvc: Cluster) -> None:
    r = pvc.vms.set(104, {"onboot": "1", "description": "a b=c+d&e", "tags": "prod;db"})
    assert r.extra["applied"] == {"onboot": "applied", "description": "applied", "tags": "applied"}
    conf = vm(sim, 104).config
    assert (str(conf["onboot"]), conf["description"], conf["tags"]) == ("1", "a b=c+d&e", "prod;db")

    sent = Sent(pvc)
    with pytest.raises(UsageError) as ei:
        pvc.vms.set(104, {"cores": "abc", "net0": "bogus"})
    assert ei.value.message.startswith("invalid config for VM 104: cores: type check ('integer') failed - got 'abc'; "
                                       "net0: invalid format")
    assert ei.value.exit_code == 2
    assert sent.writes == []

    r = pvc.vms.set(104, {}, delete=["description"])
    assert "description" not in vm(sim, 104).config and r.extra["applied"] == {"description": "applied"}


def test_set_detects_a_concurrent_edit_by_digest(sim: SimCluster, pvc: Cluster) -> None:
    orig = pvc.transport.request

    def racing(method: str, path: str, params: Any = None, **kw: Any) -> Any:
        if method == "PUT" and path.endswith("/qemu/104/config"):
            # someone else edits the config between our read and our write
            with sim.backend.mu:
                vm(sim, 104).config["description"] = "edited by someone else"
                sim.backend.changed()
        return orig(method, path, params, **kw)

    pvc.transport.request = racing  # type: ignore[method-assign]
    with pytest.raises(ApiError) as ei:
        pvc.vms.set(104, {"onboot": "1"})
    assert (ei.value.status, ei.value.message) == (500, "checksum mismatch (file change by other user?)")
    assert ei.value.exit_code == 1
    conf = vm(sim, 104).config
    assert conf["description"] == "edited by someone else" and "onboot" not in conf


@pytest.mark.parametrize("action", ["start", "delete", "resize"])
def test_a_task_write_whose_answer_is_lost_finds_its_task(sim: SimCluster, pvc: Cluster, action: str) -> None:
    """The write was carried out but its answer never came (uncertain): pvectl re-reads the node's task
    list, finds the task the write started and reports it like any other, never "may or may not"."""
    method, path = {"start": ("POST", "/status/start$"), "delete": ("DELETE", "/qemu/103$"),
                    "resize": ("PUT", "/resize$")}[action]
    sim.faults.drop_answer_next(1, method=method, path=path)
    if action == "start":
        r = pvc.vms.start(103, timeout=WAIT)
        assert vm(sim, 103).status == "running"
    elif action == "resize":
        before = vm(sim, 103).config["scsi0"]
        r = pvc.vms.resize(103, timeout=WAIT, disk="scsi0", size="+1G")
        assert vm(sim, 103).config["scsi0"] != before
    else:
        r = pvc.vms.delete(103, timeout=WAIT, yes=True)
        assert 103 not in sim.backend.state.vms
    kind = {"start": "qmstart", "delete": "qmdestroy", "resize": "resize"}[action]
    assert (r.outcome, r.exitstatus) == ("done", "OK") and f":{kind}:103:" in (r.upid or ""), r.to_dict()
    assert len([e for e in sim.requests_log() if e["method"] == method and e["path"].endswith(path[:-1])]) == 1


@pytest.mark.parametrize("fault", ["answer lost", "request lost"])
def test_a_config_put_whose_answer_is_lost_is_read_again(sim: SimCluster, pvc: Cluster, fault: str) -> None:
    """A config PUT (no task) sent but not answered: the config is read again. Applied: done, no error.
    Not applied (the config still has the digest the PUT carried): the error says nothing changed and to
    run the command again, instead of "may or may not have been applied"."""
    if fault == "answer lost":
        sim.faults.drop_answer_next(1, method="PUT", path="/config$")
        r = pvc.vms.resize(103, timeout=WAIT, cores=3)
        assert r.outcome == "done" and str(vm(sim, 103).config["cores"]) == "3"
        r = pvc.vms.set(103, {"description": "read again"})
        assert r.outcome == "done" and vm(sim, 103).config["description"] == "read again"
    else:
        sim.drop_next(1, method="PUT", path="/config$")
        before = vm(sim, 103).config.get("cores")
        with pytest.raises(NodeUnreachable) as ei:
            pvc.vms.resize(103, timeout=WAIT, cores=3)
        assert "it was not applied, nothing changed" in ei.value.message, ei.value.message
        assert ei.value.hint == "run the command again" and not ei.value.uncertain
        assert vm(sim, 103).config.get("cores") == before
    # never sent again: one PUT per command (the dropped one is in the log too)
    assert len([e for e in sim.requests_log() if e["method"] == "PUT"]) == (2 if fault == "answer lost" else 1)


def test_a_delete_whose_task_log_cannot_be_read_afterwards_is_done_with_a_warning(sim: SimCluster,
                                                                                    pvc: Cluster) -> None:
    """The destroy task ends OK, then its node stops answering log reads: the VM is gone, so the delete
    is done (with its UPID) and the unreadable log a warning; it used to end with exit 5 and no UPID."""
    with sim.backend.mu:
        assert sim.backend.state.vms[104].status == "stopped"
    sim.fail_next(200, status=596, message="Connection timed out", method="GET", path=r"/tasks/[^/]+/log$")
    try:
        res = pvc.vms.delete(104, yes=True, timeout=WAIT)
    finally:
        sim.clear_faults()
    assert res.outcome == "done" and res.upid and ":qmdestroy:104:" in res.upid
    assert any("its task log could not be read" in w and res.upid in w for w in res.warnings), res.warnings
    with sim.backend.mu:
        assert 104 not in sim.backend.state.vms
