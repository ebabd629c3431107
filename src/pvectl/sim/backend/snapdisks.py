"""What snapshots mean for the other operations: which drives a snapshot covers, which storages offer
which feature (pve-storage `volume_has_feature` tables), the volumes only snapshots reference, and
what they change for clone, delete and migration (qemu-server QemuConfig.pm, QemuMigrate.pm)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..models import VM
from .common import ApiFail, is_drive_key, parse_prop

if TYPE_CHECKING:
    from .core import BackendCore as Backend


# storage type -> image formats whose *current* volume can be snapshotted (pve-storage
# `volume_has_feature`: LvmThinPlugin/RBDPlugin/ZFSPoolPlugin `snapshot => { current => 1 }`,
# Plugin.pm (dir, nfs, cifs) and LVMPlugin.pm `snapshot => { current => { qcow2 => 1 } }`)
_SNAPSHOT_FORMATS: dict[str, set[str] | None] = {
    "lvmthin": None, "rbd": None, "zfspool": None,      # None: every format
    "dir": {"qcow2"}, "nfs": {"qcow2"}, "cifs": {"qcow2"}, "lvm": {"qcow2"}, "btrfs": {"qcow2", "raw"},
}


# storage types that can make a linked clone from a snapshot (`clone => { base => 1, snap => 1 }`)
LINKED_FROM_SNAPSHOT = {"lvmthin", "rbd"}


def snapshot_drives(conf: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(key, volid, options) of every drive `foreach_volume` visits that is not a CD-ROM
    (`drive_is_cdrom`: media=cdrom, cloud-init drives included)."""
    out = []
    for key, value in sorted(conf.items()):
        if not is_drive_key(key):
            continue
        volid, opts = parse_prop(str(value))
        if volid is None or ":" not in volid or opts.get("media") == "cdrom":
            continue
        out.append((key, volid, opts))
    return out


def _volume_format(volname: str) -> str:
    last = volname.rsplit("/", 1)[-1]
    return last.rsplit(".", 1)[1] if "." in last else "raw"


def has_snapshot_feature(b: Backend, conf: dict[str, Any]) -> bool:
    """QemuConfig.pm::has_feature('snapshot', ...): every non-CD-ROM drive's storage must offer it."""
    for _, volid, _ in snapshot_drives(conf):
        storage = b.state.storages.get(volid.split(":", 1)[0])
        if storage is None or storage.plugintype not in _SNAPSHOT_FORMATS:
            return False
        volname = volid.split(":", 1)[1]
        if volname.rsplit("/", 1)[-1].startswith("base-"):
            return False                  # a base volume is `base`, not `current`
        formats = _SNAPSHOT_FORMATS[storage.plugintype]
        if formats is not None and _volume_format(volname) not in formats:
            return False
    return True


# pve-storage *Plugin.pm::volume_has_feature: feature -> volume state (`current`, `base`, `snap`) ->
# the formats that have it (None: every format)
_ANY = None


_FEATURES: dict[str, dict[str, dict[str, set[str] | None]]] = {
    "lvmthin": {"snapshot": {"current": _ANY}, "clone": {"base": _ANY, "snap": _ANY},
                "template": {"current": _ANY}, "copy": {"base": _ANY, "current": _ANY, "snap": _ANY}},
    "rbd": {"snapshot": {"current": _ANY, "snap": _ANY}, "clone": {"base": _ANY, "snap": _ANY},
            "template": {"current": _ANY}, "copy": {"base": _ANY, "current": _ANY, "snap": _ANY}},
    "zfspool": {"snapshot": {"current": _ANY, "snap": _ANY}, "clone": {"base": _ANY},
                "template": {"current": _ANY}, "copy": {"base": _ANY, "current": _ANY}},
    "lvm": {"snapshot": {"current": {"qcow2"}, "snap": {"qcow2"}},
            "copy": {"base": {"qcow2", "raw"}, "current": {"qcow2", "raw"}, "snap": {"qcow2"}}},
    # Plugin.pm's own table: dir, nfs, cifs
    "file": {"snapshot": {"current": {"qcow2"}, "snap": {"qcow2"}}, "clone": {"base": {"qcow2", "raw", "vmdk"}},
             "template": {"current": {"qcow2", "raw", "vmdk", "subvol"}},
             "copy": {"base": {"qcow2", "raw", "vmdk"}, "current": {"qcow2", "raw", "vmdk"}, "snap": {"qcow2"}}},
}


def volume_has_feature(b: Backend, volid: str, feature: str, snapname: str | None) -> bool:
    storage = b.state.storages.get(volid.split(":", 1)[0])
    if storage is None:
        return False
    volname = volid.split(":", 1)[1]
    table = _FEATURES.get("file" if storage.plugintype in ("dir", "nfs", "cifs") else storage.plugintype, {})
    state = "snap" if snapname else "base" if volname.rsplit("/", 1)[-1].startswith("base-") else "current"
    by_state = table.get(feature, {})
    if state not in by_state:
        return False
    formats = by_state[state]
    return formats is None or _volume_format(volname) in formats


def has_feature(b: Backend, conf: dict[str, Any], feature: str, snapname: str | None) -> bool:
    """QemuConfig.pm::has_feature: every drive but CD-ROMs (cloud-init included) must have it."""
    return all(volume_has_feature(b, volid, feature, snapname) for _, volid, _ in snapshot_drives(conf))


def snapshot_volids(vm: VM) -> list[str]:
    """The vmstate volumes the VM's snapshots own (freed with the VM)."""
    return [str(s["vmstate"]) for s in vm.snapshots.values() if s.get("vmstate")]


def snapshot_lv_removals(snapshots: dict[str, dict[str, Any]], volid: str, plugintype: str) -> list[str]:
    """LvmThinPlugin.pm::free_image removes the volume's snapshot LVs (`snap_<volname>_<snap>`) first."""
    if plugintype != "lvmthin":
        return []
    volname = volid.split(":", 1)[1]
    return [f'  Logical volume "snap_{volname}_{name}" successfully removed.'
            for name, section in sorted(snapshots.items())
            if any(v == volid for _, v, _ in snapshot_drives(section))]


def migration_scan(b: Backend, vm: VM, local: list[str], online: bool) -> tuple[list[str], dict[str, str]]:
    """QemuMigrate.pm::scan_local_volumes for snapshots: the local vmstate volumes only snapshots
    reference, and the local disks a snapshot makes unmigratable: a running VM's (no replication here),
    or any not on ZFS nor a qcow2 file (`we cannot migrate snapshots on local storage`)."""
    snapshot_only = []
    for volid in snapshot_volids(vm):
        storage = b.state.storages.get(volid.split(":", 1)[0])
        if storage is not None and not storage.shared and volid not in local:
            snapshot_only.append(volid)
    in_snapshots = {v for section in vm.snapshots.values() for _, v, _ in snapshot_drives(section)}
    errors: dict[str, str] = {}
    for volid in local:
        if volid not in in_snapshots:
            continue
        if online:
            errors[volid] = "online storage migration not possible if non-replicated snapshot exists"
        elif not (b._plugintype(volid) == "zfspool" or _volume_format(volid.split(":", 1)[1]) == "qcow2"):
            errors[volid] = "non-migratable snapshot exists"
    return snapshot_only, errors


def precondition_snapshot_disks(b: Backend, vm: VM, node: str,
                                local_disks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """QemuServer.pm::foreach_volid for the migration precondition: `referenced_in_snapshot` on the
    disks snapshots use, and the local volumes only snapshots reference (their vmstate)."""
    refs: dict[str, dict[str, int]] = {}
    for name, section in vm.snapshots.items():
        for _, volid, _ in snapshot_drives(section):
            refs.setdefault(volid, {})[name] = 1
        if section.get("vmstate"):
            refs.setdefault(str(section["vmstate"]), {})[name] = 1
    out = []
    for disk in local_disks:
        if disk["volid"] in refs:
            disk = {**disk, "referenced_in_snapshot": refs[disk["volid"]]}
        out.append(disk)
    known = {d["volid"] for d in out}
    for volid in snapshot_volids(vm):
        storage, vol = b.storage_volume(volid, node)
        if storage.shared or volid in known:
            continue
        out.append({"volid": volid, "size": vol.size if vol else 0, "cdrom": 0, "is_unused": 0, "is_attached": 0,
                    "replicate": 1, "shared": 0, "is_cloudinit": 0, "is_vmstate": 1, "is_tpmstate": 0,
                    "referenced_in_snapshot": refs.get(volid, {})})
    return out


def linked_clone_source(vm: VM, snapname: str | None) -> dict[str, Any]:
    """The config a clone copies: the snapshot's section when `snapname` is given (Qemu.pm::clone_vm
    `$load_and_check`: `die "snapshot '$snapname' does not exist\\n"`)."""
    if not snapname:
        return vm.config
    snap = vm.snapshots.get(snapname)
    if snap is None:
        raise ApiFail(f"snapshot '{snapname}' does not exist")
    return snap
