"""The migration rules (guards.migration_findings and friends) and the pure helpers of
pvectl.vms.migrate, as functions of observed state. Texts are asserted exactly: users act on them."""

from __future__ import annotations

from typing import Any

import pytest

from pvectl.errors import GuardRefused, UsageError
from pvectl.guards import (
    check_migrate,
    migration_findings,
    migration_mode,
    migration_reserve,
)
from pvectl.vms.migrate import parse_bwlimit, parse_log, strip_timestamp

G = 1024**3
MEMBERS = {"pve1": True, "pve2": True, "pve3": True}
DISK = {"volid": "local-lvm:vm-100-disk-0", "drivename": "scsi0", "cdrom": 0, "is_cloudinit": 0}
CI = {"volid": "local-lvm:vm-100-cloudinit", "drivename": "ide2", "cdrom": 0, "is_cloudinit": 1}


def pre(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"running": 1, "allowed_nodes": ["pve2", "pve3"],
                         "not_allowed_nodes": {"pve2": {}, "pve3": {}}, "local_disks": [], "local_resources": []}
    d.update(kw)
    return d


def findings(**kw: Any) -> dict[str, dict[str, Any]]:
    args: dict[str, Any] = {"vmid": 100, "source": "pve1", "target": "pve2", "members": MEMBERS, "quorate": True,
                            "running": True, "online": None, "lock": None, "precondition": pre(),
                            "with_local_disks": False, "vm_maxmem": 4 * G, "target_mem": 16 * G,
                            "target_maxmem": 64 * G}
    args.update(kw)
    out = migration_findings(**args)
    assert len({f["check"] for f in out}) == len(out)
    return {f["check"]: f for f in out}


def refused(fs: dict[str, dict[str, Any]]) -> list[str]:
    return [c for c, f in fs.items() if f["level"] == "refuse"]


# ------------------------------------------------------------------------------------- reserve, mode
@pytest.mark.parametrize(("total", "reserve"), [(8 * G, G), (16 * G, G), (20 * G, G), (64 * G, 64 * G // 20),
                                                (512 * G, 512 * G // 20)])
def test_reserve_is_the_larger_of_1gib_and_5_percent(total: int, reserve: int) -> None:
    assert migration_reserve(total) == reserve


@pytest.mark.parametrize(("running", "online", "mode"), [(True, None, "live"), (True, True, "live"),
                                                         (True, False, "offline"), (False, None, "offline"),
                                                         (False, True, "offline"), (False, False, "offline")])
def test_mode(running: bool, online: bool | None, mode: str) -> None:
    assert migration_mode(running=running, online=online) == mode


# ------------------------------------------------------------------------------------------ findings
def test_all_ok() -> None:
    fs = findings()
    assert refused(fs) == []
    assert [f["level"] for f in fs.values()] == ["ok"] * len(fs)
    assert list(fs) == ["target", "quorum", "lock", "mode", "storage", "local-disks", "memory"]
    assert fs["memory"]["reason"] == "pve2 has 48.0 GiB free; the VM needs 4.0 GiB plus a 3.2 GiB reserve (7.2 GiB)"
    assert fs["local-disks"]["reason"] == "no local disks: everything is on shared storage"


def test_target_is_own_node() -> None:
    fs = findings(target="pve1")
    assert refused(fs) == ["target"]
    assert fs["target"]["reason"] == "the VM is already on pve1 (Proxmox: target is local node.)"
    assert fs["target"]["fix"] == "pick another node: pve2, pve3"
    assert "memory" not in fs and "storage" not in fs


def test_unknown_target() -> None:
    fs = findings(target="pve9")
    assert fs["target"] == {"check": "target", "level": "refuse", "reason": "no such cluster node 'pve9'",
                            "fix": "cluster members: pve1, pve2, pve3"}


def test_offline_target() -> None:
    fs = findings(target="pve3", members={**MEMBERS, "pve3": False}, target_mem=None, target_maxmem=None)
    assert refused(fs) == ["target"]
    assert fs["target"]["reason"] == "target node pve3 is offline (not in the cluster membership)"
    assert fs["target"]["fix"] == "bring pve3 back, or pick an online node: pve2"


def test_no_quorum_and_locked() -> None:
    fs = findings(quorate=False, lock="backup", precondition=None)
    assert refused(fs) == ["quorum", "lock"]
    assert fs["quorum"]["reason"] == "the cluster has no quorum (Proxmox: cluster not ready - no quorum?)"
    assert fs["lock"]["reason"] == "the VM is locked (backup): a task is using it"
    assert fs["lock"]["fix"] == ("wait for the task (pvectl task list --vm 100); a stale lock is removed with "
                                 "`qm unlock 100` on its node")


def test_offline_on_running_vm_is_refused() -> None:
    fs = findings(online=False)
    assert refused(fs) == ["mode"]
    assert fs["mode"]["reason"] == ("the VM is running: an offline migration needs a stopped VM "
                                    "(Proxmox: can't migrate running VM without --online)")
    assert fs["mode"]["fix"] == "shut it down first (pvectl vm shutdown 100), or drop --offline to migrate it live"


def test_online_on_stopped_vm_is_a_warning() -> None:
    fs = findings(running=False, online=True, precondition=pre(running=0, local_disks=[DISK]))
    assert refused(fs) == []
    assert fs["mode"]["level"] == "warn"
    assert fs["local-disks"]["reason"] == "local disks are copied to the target: local-lvm:vm-100-disk-0 (scsi0)"


def test_live_with_local_disks_needs_the_flag() -> None:
    fs = findings(precondition=pre(local_disks=[CI, DISK]))
    assert refused(fs) == ["local-disks"]
    assert fs["local-disks"]["reason"] == ("a live migration with local disks needs --with-local-disks: "
                                           "local-lvm:vm-100-cloudinit (ide2), local-lvm:vm-100-disk-0 (scsi0)")
    fs = findings(precondition=pre(local_disks=[CI, DISK]), with_local_disks=True)
    assert refused(fs) == []
    assert fs["local-disks"]["reason"].startswith("local disks are mirrored to the target: ")


def test_local_cdrom_iso_and_local_devices() -> None:
    iso = {"volid": "local:iso/debian.iso", "drivename": "ide2", "cdrom": 1, "is_cloudinit": 0}
    fs = findings(precondition=pre(local_disks=[iso], local_resources=["usb0", "hostpci0"]))
    assert refused(fs) == ["local-resources", "cdrom"]
    assert fs["local-resources"]["reason"] == "the VM uses local devices: usb0, hostpci0"
    assert fs["local-resources"]["fix"] == "remove them from its config first: pvectl vm set 100 --delete usb0,hostpci0"
    assert fs["cdrom"]["reason"] == "a local CD-ROM image cannot be migrated: local:iso/debian.iso (ide2)"
    assert fs["cdrom"]["fix"] == "eject it first: pvectl vm set 100 ide2=none,media=cdrom"


def test_unavailable_storage_on_target() -> None:
    p = pre(allowed_nodes=["pve3"], not_allowed_nodes={"pve2": {"unavailable_storages": ["local-zfs"]}, "pve3": {}})
    fs = findings(precondition=p)
    assert refused(fs) == ["storage"]
    assert fs["storage"]["reason"] == "storage local-zfs of the VM is not available on pve2"
    assert fs["storage"]["fix"] == "move the disks to a storage pve2 has, or pick a node that has them: pve3"


def test_memory_refuses_a_live_migration_and_warns_for_a_stopped_vm() -> None:
    fs = findings(target_mem=29 * G, target_maxmem=32 * G)
    assert refused(fs) == ["memory"]
    assert fs["memory"]["reason"] == "pve2 has 3.0 GiB free; the VM needs 4.0 GiB plus a 1.6 GiB reserve (5.6 GiB)"
    assert fs["memory"]["fix"] == "free memory on pve2, or pick a node with more free memory (pvectl node list)"
    fs = findings(running=False, target_mem=29 * G, target_maxmem=32 * G)
    assert refused(fs) == []
    assert fs["memory"]["level"] == "warn"
    assert fs["memory"]["reason"].endswith("(5.6 GiB): not enough to start it there")
    # exactly enough is enough
    fs = findings(target_mem=32 * G - 4 * G - int(1.6 * G), target_maxmem=32 * G)
    assert fs["memory"]["level"] == "ok"


def test_unknown_memory_is_a_warning() -> None:
    fs = findings(target_mem=None, target_maxmem=None)
    assert fs["memory"] == {"check": "memory", "level": "warn", "fix": None,
                            "reason": "the free memory of pve2 is unknown (no node statistics)"}


def test_check_migrate_names_every_refusal() -> None:
    fs = migration_findings(vmid=100, source="pve1", target="pve3", members={**MEMBERS, "pve3": False},
                            quorate=True, running=True, online=False, lock=None, precondition=None,
                            with_local_disks=False, vm_maxmem=G, target_mem=None, target_maxmem=None)
    with pytest.raises(GuardRefused) as e:
        check_migrate(fs, what="VM 100 (web-01)", target="pve3")
    assert e.value.message == (
        "cannot migrate VM 100 (web-01) to pve3: target node pve3 is offline (not in the cluster membership); "
        "the VM is running: an offline migration needs a stopped VM (Proxmox: can't migrate running VM without "
        "--online)")
    assert e.value.hint == ("bring pve3 back, or pick an online node: pve2; shut it down first (pvectl vm shutdown "
                            "100), or drop --offline to migrate it live")
    assert e.value.exit_code == 3
    check_migrate([f for f in fs if f["level"] != "refuse"], what="VM 100", target="pve3")   # nothing raised


# ---------------------------------------------------------------------------------- migration helpers
@pytest.mark.parametrize(("value", "kib"), [(None, None), (0, 0), (51200, 51200), ("51200", 51200), ("512K", 512),
                                            ("50M", 51200), ("50MiB/s", 51200), ("1G", 1048576), ("2 m", 2048)])
def test_parse_bwlimit(value: Any, kib: int | None) -> None:
    assert parse_bwlimit(value) == kib


@pytest.mark.parametrize("value", ["fast", "1.5M", "-5", "10T", ""])
def test_parse_bwlimit_rejects(value: str) -> None:
    with pytest.raises(UsageError):
        parse_bwlimit(value)


def test_parse_log() -> None:
    lines = ["2025-01-10 12:00:00 starting migration of VM 100 to node 'pve2' (10.0.0.2)",
             "2025-01-10 12:00:20 average migration speed: 102.4 MiB/s - downtime 45 ms",
             "2025-01-10 12:00:20 migration status: completed",
             "2025-01-10 12:00:23 migration finished successfully (duration 01:02:03)", "TASK OK"]
    assert parse_log(lines) == ("01:02:03", 3723, 45)
    assert parse_log(["TASK OK"]) == (None, None, None)
    assert strip_timestamp(lines[0]) == "starting migration of VM 100 to node 'pve2' (10.0.0.2)"
    assert strip_timestamp("TASK OK") == "TASK OK"


# ------------------------------------------------------------------------ every finding, exactly
def test_every_blocker_of_the_precondition_is_reported_with_its_fix() -> None:
    blocked = {"unavailable_storages": ["local-zfs", "tank"], "unavailable-resources": ["gpu0"],
               "blocking-ha-resources": [{"sid": "vm:100"}, "vm:101"]}
    iso = {"volid": "local:iso/a.iso", "drivename": "ide2", "cdrom": 1, "is_cloudinit": 0}
    ci_cdrom = {"volid": "local-lvm:vm-100-cloudinit", "drivename": "ide0", "cdrom": 1, "is_cloudinit": 1}
    unnamed = {"volid": "local-lvm:vm-100-disk-0", "cdrom": 0, "is_cloudinit": 0}
    out = migration_findings(
        vmid=100, source="pve1", target="pve2", members=MEMBERS, quorate=True, running=True, online=None,
        lock=None, with_local_disks=False, vm_maxmem=4 * G, target_mem=16 * G, target_maxmem=64 * G,
        precondition=pre(allowed_nodes=["pve3"], not_allowed_nodes={"pve2": blocked},
                         local_resources=["hostpci0", "usb0"], local_disks=[iso, ci_cdrom, unnamed]))
    assert [(f["check"], f["level"], f["reason"], f["fix"]) for f in out] == [
        ("target", "ok", "pve2 is an online cluster member", None),
        ("quorum", "ok", "the cluster is quorate", None),
        ("lock", "ok", "the VM is not locked", None),
        ("mode", "ok", "live migration: the VM keeps running", None),
        ("storage", "refuse", "storage local-zfs, tank of the VM is not available on pve2",
         "move the disks to a storage pve2 has, or pick a node that has them: pve3"),
        ("mapped-resources", "refuse", "mapped devices missing on pve2: gpu0",
         "add the device mappings for pve2, or pick another node"),
        ("ha", "refuse", "HA resources block pve2: vm:100, vm:101", "check the HA rules (ha-manager status)"),
        ("local-resources", "refuse", "the VM uses local devices: hostpci0, usb0",
         "remove them from its config first: pvectl vm set 100 --delete hostpci0,usb0"),
        # an ISO in a CD-ROM drive blocks; a cloud-init drive (also a CD-ROM) is regenerated on the target
        ("cdrom", "refuse", "a local CD-ROM image cannot be migrated: local:iso/a.iso (ide2)",
         "eject it first: pvectl vm set 100 ide2=none,media=cdrom"),
        ("local-disks", "refuse", "a live migration with local disks needs --with-local-disks: "
         "local-lvm:vm-100-cloudinit (ide0), local-lvm:vm-100-disk-0",
         "add --with-local-disks (the disks are mirrored while the VM runs), move them to shared storage, or "
         "shut the VM down (pvectl vm shutdown 100) for an offline migration"),
        ("memory", "ok", "pve2 has 48.0 GiB free; the VM needs 4.0 GiB plus a 3.2 GiB reserve (7.2 GiB)", None),
    ]


@pytest.mark.parametrize("blocked,check", [({"unavailable_storages": ["tank"]}, "storage"),
                                           ({"unavailable-resources": ["gpu0"]}, "mapped-resources"),
                                           ({"blocking-ha-resources": ["vm:100"]}, "ha")])
def test_one_blocker_alone_refuses_and_no_storage_ok_is_claimed(blocked: dict[str, Any], check: str) -> None:
    fs = findings(precondition=pre(not_allowed_nodes={"pve2": blocked}))
    assert refused(fs) == [check]
    if check != "storage":
        assert "storage" not in fs


def test_nothing_blocked_says_every_storage_is_there() -> None:
    fs = findings(precondition=pre(not_allowed_nodes={}))
    assert fs["storage"] == {"check": "storage", "level": "ok", "fix": None,
                             "reason": "every storage of the VM is available on pve2"}


def test_unknown_target_stopped_vm_no_quorum_and_a_lock_are_all_reported() -> None:
    out = migration_findings(
        vmid=100, source="pve1", target="pve9", members={}, quorate=False, running=False, online=True,
        lock="backup", with_local_disks=False, vm_maxmem=4 * G, target_mem=None, target_maxmem=None,
        precondition=None)
    assert [(f["check"], f["level"], f["reason"], f["fix"]) for f in out] == [
        ("target", "refuse", "no such cluster node 'pve9'", "cluster members: none"),
        ("quorum", "refuse", "the cluster has no quorum (Proxmox: cluster not ready - no quorum?)",
         "restore quorum first (pvectl cluster status)"),
        ("lock", "refuse", "the VM is locked (backup): a task is using it",
         "wait for the task (pvectl task list --vm 100); a stale lock is removed with `qm unlock 100` on its node"),
        ("mode", "warn", "the VM is stopped: it is migrated offline (Proxmox ignores --online then)", None),
    ]


@pytest.mark.parametrize("running,online,reason", [
    (False, None, "offline migration of a stopped VM"),
    (False, False, "offline migration of a stopped VM"),
    (True, True, "live migration: the VM keeps running"),
])
def test_mode_reasons(running: bool, online: bool | None, reason: str) -> None:
    assert findings(running=running, online=online)["mode"] == {"check": "mode", "level": "ok", "reason": reason,
                                                                "fix": None}


def test_local_disks_are_copied_offline_and_mirrored_live() -> None:
    offline = findings(running=False, precondition=pre(running=0, local_disks=[DISK]))
    assert offline["local-disks"]["reason"] == "local disks are copied to the target: local-lvm:vm-100-disk-0 (scsi0)"
    live = findings(with_local_disks=True, precondition=pre(local_disks=[DISK]))
    assert live["local-disks"]["reason"] == "local disks are mirrored to the target: local-lvm:vm-100-disk-0 (scsi0)"
    assert findings()["local-disks"]["reason"] == "no local disks: everything is on shared storage"


def test_nothing_to_pick_and_edge_shapes_of_the_precondition() -> None:
    alone = {"pve1": True, "pve2": False}
    same = findings(target="pve1", members=alone)["target"]
    assert same["fix"] == "pick another node: none is online"
    offline = findings(target="pve2", members=alone)["target"]
    assert offline["fix"] == "bring pve2 back, or pick an online node: none"
    cdroms = [{"volid": "local:iso/a.iso", "drivename": "ide2", "cdrom": 1, "is_cloudinit": 0},
              {"volid": "local:iso/b.iso", "cdrom": 1, "is_cloudinit": 0}]
    fs = findings(precondition=pre(
        allowed_nodes=[], local_disks=cdroms,
        not_allowed_nodes={"pve2": {"unavailable_storages": ["tank"], "unavailable-resources": ["gpu0", "gpu1"],
                                    "blocking-ha-resources": [{"state": "started"}]}}))
    assert fs["storage"]["fix"] == "move the disks to a storage pve2 has, or pick a node that has them: none"
    assert fs["mapped-resources"]["reason"] == "mapped devices missing on pve2: gpu0, gpu1"
    assert fs["ha"]["reason"] == "HA resources block pve2: {'state': 'started'}"
    assert fs["cdrom"]["fix"] == "eject it first: pvectl vm set 100 ide2=none,media=cdrom ide2=none,media=cdrom"
    assert fs["cdrom"]["reason"] == "a local CD-ROM image cannot be migrated: local:iso/a.iso (ide2), local:iso/b.iso"


def test_offline_request_for_a_running_vm_copies_disks_and_unknown_memory_warns() -> None:
    fs = findings(online=False, precondition=pre(local_disks=[DISK]), target_mem=None)
    assert fs["mode"]["level"] == "refuse"
    assert fs["local-disks"] == {"check": "local-disks", "level": "ok", "fix": None,
                                 "reason": "local disks are copied to the target: local-lvm:vm-100-disk-0 (scsi0)"}
    assert fs["memory"] == {"check": "memory", "level": "warn", "fix": None,
                            "reason": "the free memory of pve2 is unknown (no node statistics)"}
