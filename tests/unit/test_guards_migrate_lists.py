"""Migration refusals that name several nodes or drives: every one is listed, in a form a user can
copy (nodes comma-separated, one `DRIVE=none,media=cdrom` per CD-ROM, each on its own drive)."""

from __future__ import annotations

from typing import Any

from pvectl.guards import migration_findings

G = 1024**3


def findings(**kw: Any) -> dict[str, dict[str, Any]]:
    args: dict[str, Any] = {"vmid": 100, "source": "pve1", "target": "pve2",
                            "members": {"pve1": True, "pve2": True, "pve3": True, "pve4": True}, "quorate": True,
                            "running": True, "online": None, "lock": None,
                            "precondition": {"running": 1, "allowed_nodes": ["pve2", "pve3", "pve4"],
                                             "not_allowed_nodes": {}, "local_disks": [], "local_resources": []},
                            "with_local_disks": False, "vm_maxmem": 4 * G, "target_mem": 16 * G,
                            "target_maxmem": 64 * G}
    args.update(kw)
    return {f["check"]: f for f in migration_findings(**args)}


def test_an_offline_target_lists_every_online_node_to_pick() -> None:
    fs = findings(members={"pve1": True, "pve2": False, "pve3": True, "pve4": True}, target_mem=None,
                  target_maxmem=None)
    assert fs["target"]["level"] == "refuse"
    assert fs["target"]["fix"] == "bring pve2 back, or pick an online node: pve3, pve4"


def test_a_storage_missing_on_the_target_lists_every_node_that_has_it() -> None:
    pre = {"running": 1, "allowed_nodes": ["pve3", "pve4"], "local_disks": [], "local_resources": [],
           "not_allowed_nodes": {"pve2": {"unavailable_storages": ["local-zfs"]}}}
    fs = findings(precondition=pre)
    assert fs["storage"]["level"] == "refuse"
    assert fs["storage"]["fix"] == "move the disks to a storage pve2 has, or pick a node that has them: pve3, pve4"


def test_each_local_cdrom_is_ejected_on_its_own_drive() -> None:
    """The eject command names the drive the image is on (Proxmox's `local_disks` entry carries it as
    `drivename`), not a fixed ide2."""
    isos = [{"volid": "local:iso/a.iso", "drivename": "sata1", "cdrom": 1, "is_cloudinit": 0},
            {"volid": "local:iso/b.iso", "drivename": "ide0", "cdrom": 1, "is_cloudinit": 0}]
    pre = {"running": 1, "allowed_nodes": ["pve2"], "not_allowed_nodes": {}, "local_resources": [],
           "local_disks": isos}
    fs = findings(precondition=pre)
    assert fs["cdrom"]["level"] == "refuse"
    assert fs["cdrom"]["reason"] == "a local CD-ROM image cannot be migrated: local:iso/a.iso (sata1), local:iso/b.iso (ide0)"
    assert fs["cdrom"]["fix"] == "eject it first: pvectl vm set 100 sata1=none,media=cdrom ide0=none,media=cdrom"
