"""Snapshots of QEMU VMs: create (with or without RAM), list, config, rollback and delete.

Ported from qemu-server `src/PVE/API2/Qemu.pm` (snapshot_list, snapshot, snapshot_cmd_idx,
update_snapshot_config, get_snapshot_config, rollback, delsnapshot), `src/PVE/QemuConfig.pm`
(`__snapshot_*` hooks, has_feature, find_vmstate_storage) and pve-guest-common
`src/PVE/AbstractConfig.pm` (snapshot_create, snapshot_delete, snapshot_rollback, check_lock,
lock_config). Storage features follow pve-storage's `volume_has_feature` tables.

The snapshots live in `VM.snapshots` (name -> config section, as `[name]` sections of the real config
file); the current config's `parent` names the snapshot it descends from.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .backend import ApiFail, Caller, memory_mib, parse_size, render_bytes, render_duration
from .backend.common import _uuid4
from .backend.snapdisks import has_snapshot_feature, snapshot_drives
from .models import MIB, VM, Volume, volume_key
from .tasks import LockTimeout, TaskContext, TaskError

if TYPE_CHECKING:
    from .backend import Backend

# AbstractConfig.pm::__snapshot_copy_config: keys a snapshot section never takes from the config
_NOT_COPIED = {"snapshots", "snapstate", "snaptime", "vmstate", "lock", "digest", "description"}
# What QemuConfig.pm::__snapshot_save_vmstate adds to the snapshot of a running VM saved with RAM
_RUNNING_KEYS = ("runningmachine", "runningcpu", "running-nets-host-mtu")
_FILE_BASED = {"dir", "nfs", "cifs", "btrfs"}
_SAVEVM_RATE = 800 * MIB          # bytes of guest RAM `savevm-start` writes per second


def _copy_config(source: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if k not in _NOT_COPIED and not k.startswith("unused")}


def _locked(vm: VM) -> None:
    # AbstractConfig.pm::check_lock: `die $class->guest_type() . " is locked ($conf->{lock})\n"`
    if vm.config.get("lock"):
        raise TaskError(f"VM is locked ({vm.config['lock']})")


def _section_under_lock(vm: VM, snapname: str, lock: str, wrong_lock: str) -> dict[str, Any]:
    # the second lock_config pass of create/delete: the lock this task set must still be there
    if vm.config.get("lock") != lock:
        raise TaskError(wrong_lock)
    snap = vm.snapshots.get(snapname)
    if snap is None:
        raise TaskError(f"snapshot '{snapname}' does not exist")
    return snap


def _vmstate_storage(b: Backend, conf: dict[str, Any]) -> str:
    # QemuConfig.pm::find_vmstate_storage: `vmstatestorage`, else a shared storage the VM's disks use,
    # else a local one (file-based storages preferred), else 'local'
    if conf.get("vmstatestorage"):
        return str(conf["vmstatestorage"])
    shared = local = None
    for _, volid, _ in snapshot_drives(conf):
        sid = volid.split(":", 1)[0]
        st = b.state.storages.get(sid)
        if st is None:
            continue
        if st.shared:
            if shared is None or st.plugintype in _FILE_BASED:
                shared = sid
        elif local is None or st.plugintype in _FILE_BASED:
            local = sid
    return shared or local or "local"


def _running_cpu(conf: dict[str, Any]) -> str:
    # CPUConfig.pm::get_cpu_from_running_vm: the `-cpu` argument of the running QEMU process
    model = str(conf.get("cpu", "x86-64-v2-AES")).split(",", 1)[0]
    if model == "x86-64-v2-AES":
        return "qemu64,+aes,enforce,+kvm_pv_eoi,+kvm_pv_unhalt,+pni,+popcnt,+sse4.1,+sse4.2,+ssse3"
    return f"{model},enforce,+kvm_pv_eoi,+kvm_pv_unhalt"


class Snapshots:
    """The snapshot operations of one backend; stateless apart from the backend's state."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend

    # ------------------------------------------------------------------ reads
    def listing(self, node: str, vmid: int) -> list[dict[str, Any]]:
        # API2/Qemu.pm::snapshot_list: one item per snapshot plus `current` ("You are here!")
        b = self.b
        vm = b.load_config(node, vmid)
        out: list[dict[str, Any]] = []
        for name, snap in vm.snapshots.items():
            item: dict[str, Any] = {"name": name, "snaptime": int(snap.get("snaptime") or 0),
                                    "vmstate": 1 if snap.get("vmstate") else 0,
                                    "description": snap.get("description") or ""}
            if snap.get("parent"):
                item["parent"] = snap["parent"]
            if snap.get("snapstate"):
                item["snapstate"] = snap["snapstate"]
            out.append(item)
        current: dict[str, Any] = {"name": "current", "digest": b.digest(vm),
                                   "running": 1 if vm.status == "running" else 0, "description": "You are here!"}
        if vm.config.get("parent"):
            current["parent"] = vm.config["parent"]
        out.append(current)
        return out

    def section(self, node: str, vmid: int, snapname: str, *, with_digest: bool) -> dict[str, Any]:
        """AbstractConfig.pm::load_snapshot_config (GET config?snapshot= adds the file's digest);
        get_snapshot_config returns the section as it is."""
        vm = self.b.load_config(node, vmid)
        snap = vm.snapshots.get(snapname)
        if snap is None:
            raise ApiFail(f"snapshot '{snapname}' does not exist")
        out = dict(snap)
        if with_digest:
            out["digest"] = self.b.digest(vm)
        return out

    def update_description(self, node: str, vmid: int, snapname: str, description: str | None) -> None:
        # API2/Qemu.pm::update_snapshot_config: under lock_config, check_lock, then the description
        b = self.b
        if description is None:
            return
        try:
            with b.locks.hold(node, vmid, timeout=10), b.mu:
                vm = b.load_config(node, vmid)
                if vm.config.get("lock"):
                    raise ApiFail(f"VM is locked ({vm.config['lock']})")
                snap = vm.snapshots.get(snapname)
                if snap is None:
                    raise ApiFail(f"snapshot '{snapname}' does not exist")
                snap["description"] = description
                b.changed()
        except LockTimeout as exc:
            raise ApiFail(str(exc)) from None

    # ------------------------------------------------------------------ create
    def create(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        b = self.b
        snapname = str(params["snapname"])
        # API2/Qemu.pm::snapshot: reserved names and load_config run before the fork
        if snapname == "current":
            raise ApiFail("unable to use snapshot name 'current' (reserved name)")
        if snapname.lower() == "pending":
            raise ApiFail("unable to use snapshot name 'pending' (reserved name)")
        b.load_config(node, vmid)
        save_vmstate = bool(params.get("vmstate"))
        comment = params.get("description")

        def worker(ctx: TaskContext) -> None:
            snap = self._prepare(ctx, node, vmid, snapname, save_vmstate, comment)
            with b.mu:
                vm = b._worker_config(node, vmid)
                running = vm.status == "running"
                agent = str(vm.config.get("agent", "0")).split(",", 1)[0] in ("1", "enabled=1")
                agent_up = b.agent_ready(vm)
            if running and snap.get("vmstate"):
                self._save_ram(ctx, vm, str(snap["vmstate"]))
            elif running and agent and not agent_up:
                # QemuServer/Agent.pm::guest_fs_freeze_applicable
                ctx.log("skipping guest filesystem freeze - agent configured but not running?")
            for key, volid, _ in snapshot_drives(snap):
                # QemuConfig.pm::__snapshot_create_vol_snapshot; LvmThinPlugin.pm `lvcreate -n snap_...`
                ctx.log(f"snapshotting 'drive-{key}' ({volid})")
                ctx.sleep(0.5)
                if self.b._plugintype(volid) == "lvmthin":
                    ctx.log(f'  Logical volume "snap_{volid.split(":", 1)[1]}_{snapname}" created.')
            # AbstractConfig.pm::__snapshot_commit
            with ctx.config_lock(vmid, timeout=10), b.mu:
                vm = b._worker_config(node, vmid)
                snap = _section_under_lock(vm, snapname, "snapshot", "missing snapshot lock")
                if snap.get("snapstate") != "prepare":
                    raise TaskError("wrong snapshot state")
                del snap["snapstate"]
                del vm.config["lock"]
                vm.config["parent"] = snapname
                b.changed()

        return b.engine.start(node, "qmsnapshot", str(vmid), caller.userid, worker)

    def _prepare(self, ctx: TaskContext, node: str, vmid: int, snapname: str, save_vmstate: bool,
                 comment: str | None) -> dict[str, Any]:
        # AbstractConfig.pm::__snapshot_prepare, in this order, under lock_config
        b = self.b
        with ctx.config_lock(vmid, timeout=10), b.mu:
            vm = b._worker_config(node, vmid)
            if vm.is_template:
                raise TaskError("you can't take a snapshot if it's a template")
            _locked(vm)
            if snapname in vm.snapshots:
                raise TaskError(f"snapshot name '{snapname}' already used")
            if not has_snapshot_feature(b, vm.config):
                raise TaskError("snapshot feature is not available")
            for name, other in sorted(vm.snapshots.items()):
                if other.get("parent") == snapname:
                    ctx.log(f"deleting parent '{snapname}' reference from '{name}' to avoid bogus snapshot cycle.")
                    del other["parent"]
            vm.config["lock"] = "snapshot"
            snap: dict[str, Any] = {}
            if save_vmstate and vm.status == "running":
                snap["vmstate"] = self._alloc_vmstate(vm, node, snapname)
                snap["runningmachine"] = "pc-i440fx-9.2+pve0" if "machine" not in vm.config \
                    else str(vm.config["machine"])
                snap["runningcpu"] = _running_cpu(vm.config)
            snap.update(_copy_config(vm.config))
            snap["snapstate"] = "prepare"
            snap["snaptime"] = int(time.time())
            if comment:
                snap["description"] = comment
            vm.snapshots[snapname] = snap
            b.changed()
            return dict(snap)

    def _alloc_vmstate(self, vm: VM, node: str, snapname: str) -> str:
        # QemuConfig.pm::__snapshot_save_vmstate: `vm-<vmid>-state-<snap>` (+ .raw on file storages),
        # sized twice the memory plus 500 MiB of device state
        b = self.b
        sid = _vmstate_storage(b, vm.config)
        storage = b.state.storages[sid]
        name = f"vm-{vm.vmid}-state-{snapname}" + (".raw" if storage.plugintype in _FILE_BASED else "")
        volid = f"{sid}:{name}" if storage.plugintype not in _FILE_BASED else f"{sid}:{vm.vmid}/{name}"
        size = (memory_mib(vm.config) * 2 + 500) * MIB
        b.state.volumes[volume_key(storage, node, volid)] = Volume(volid, size, vm.vmid,
                                                                    None if storage.shared else node)
        return volid

    def _save_ram(self, ctx: TaskContext, vm: VM, vmstate: str) -> None:
        # QemuConfig.pm::__snapshot_create_vol_snapshots_hook 'before': savevm-start, then a line per
        # second from query-savevm until it completes
        ctx.log(f"saving VM state and RAM using storage '{vmstate.split(':', 1)[0]}'")
        total = max(int(memory_mib(vm.config) * MIB * (vm.mem_fraction or 0.3)), 64 * MIB)
        seconds = max(1, int(total / _SAVEVM_RATE))
        for second in range(1, seconds + 1):
            ctx.sleep(1)
            if second < seconds:
                ctx.log(f"{render_bytes(_SAVEVM_RATE * second)} in {render_duration(second)}")
        ctx.log(f"completed saving the VM state in {render_duration(seconds)}, saved {render_bytes(total)}")

    def _free_vmstate(self, ctx: TaskContext, node: str, volid: str) -> None:
        b = self.b
        with b.mu:
            storage = b.state.storages.get(volid.split(":", 1)[0])
            if storage is None:
                return
            b.state.volumes.pop(volume_key(storage, node, volid), None)
            b.changed()
        if storage.plugintype == "lvmthin":
            ctx.log(f'  Logical volume "{volid.split(":", 1)[1]}" successfully removed.')

    # ------------------------------------------------------------------ delete
    def delete(self, node: str, vmid: int, snapname: str, caller: Caller, params: dict[str, Any]) -> str:
        b = self.b

        def worker(ctx: TaskContext) -> None:
            # AbstractConfig.pm::snapshot_delete: existence, then set_lock('snapshot-delete') (which
            # runs check_lock), then snapstate 'delete', vmstate, one volume snapshot after another
            with ctx.config_lock(vmid, timeout=10), b.mu:
                vm = b._worker_config(node, vmid)
                if snapname not in vm.snapshots:
                    raise TaskError(f"snapshot '{snapname}' does not exist")
                _locked(vm)
                if vm.is_template:
                    raise TaskError("you can't delete a snapshot if vm is a template")
                vm.config["lock"] = "snapshot-delete"
                snap = vm.snapshots[snapname]
                snap["snapstate"] = "delete"
                b.changed()
                vmstate = snap.get("vmstate")
                drives = snapshot_drives(snap)
            if vmstate:
                self._free_vmstate(ctx, node, str(vmstate))
                with b.mu:
                    vm.snapshots[snapname].pop("vmstate", None)
                    b.changed()
            for key, volid, _ in drives:
                ctx.sleep(0.5)
                if self.b._plugintype(volid) == "lvmthin":
                    ctx.log(f'  Logical volume "snap_{volid.split(":", 1)[1]}_{snapname}" successfully removed.')
                with b.mu:
                    vm.snapshots[snapname].pop(key, None)
                    b.changed()
            with ctx.config_lock(vmid, timeout=10), b.mu:
                vm = b._worker_config(node, vmid)
                snap = _section_under_lock(vm, snapname, "snapshot-delete",
                                           "encountered invalid lock, expected 'snapshot-delete'")
                # children (and the current config) move up to the deleted snapshot's parent
                for section in [vm.config, *vm.snapshots.values()]:
                    if section.get("parent") == snapname:
                        if snap.get("parent"):
                            section["parent"] = snap["parent"]
                        else:
                            del section["parent"]
                del vm.snapshots[snapname]
                del vm.config["lock"]
                b.changed()

        return b.engine.start(node, "qmdelsnapshot", str(vmid), caller.userid, worker)

    # ------------------------------------------------------------------ rollback
    def rollback(self, node: str, vmid: int, snapname: str, caller: Caller, params: dict[str, Any]) -> str:
        b = self.b
        start_after = bool(params.get("start"))

        def worker(ctx: TaskContext) -> None:
            # AbstractConfig.pm::snapshot_rollback, first pass: checks, hard stop, `lock: rollback`
            with ctx.config_lock(vmid, timeout=10), b.mu:
                vm = b._worker_config(node, vmid)
                if vm.is_template:
                    raise TaskError("you can't rollback if vm is a template")
                snap = vm.snapshots.get(snapname)
                if snap is None:
                    raise TaskError(f"snapshot '{snapname}' does not exist")
                if snap.get("snapstate"):
                    raise TaskError(f"unable to rollback to incomplete snapshot (snapstate = {snap['snapstate']})")
                _locked(vm)
                if vm.status == "running":
                    # QemuConfig.pm::__snapshot_rollback_vm_stop: vm_stop with a 5 s timeout, no shutdown
                    b._set_status(vm, "stopped")
                vm.config["lock"] = "rollback"
                b.changed()
                drives = snapshot_drives(snap)
            for key, volid, _ in drives:
                # LvmThinPlugin.pm::volume_snapshot_rollback: lvremove the volume, lvcreate it from the snapshot
                ctx.sleep(0.5)
                if self.b._plugintype(volid) == "lvmthin":
                    volname = volid.split(":", 1)[1]
                    ctx.log(f'  Logical volume "{volname}" successfully removed.')
                    ctx.log(f'  Logical volume "{volname}" created.')
            # second pass: the snapshot's config becomes the current one
            with ctx.config_lock(vmid, timeout=10), b.mu:
                vm = b._worker_config(node, vmid)
                if vm.config.get("lock") != "rollback":
                    raise TaskError("got wrong lock")
                snap = vm.snapshots[snapname]
                self._apply(vm, snap, snapname, node)
                if snap.get("vmstate"):
                    # __snapshot_rollback_vm_start: the VM resumes from the saved RAM
                    b._set_status(vm, "running")
                elif start_after:
                    # API2/Qemu.pm::rollback: vm_start when `start` is set and the VM is not running
                    b._set_status(vm, "running")
                b.changed()

        if start_after:
            # the start runs inside the worker, so VM.PowerMgmt is checked up front
            b.check(caller.token, f"/vms/{vmid}", "VM.PowerMgmt")
        return b.engine.start(node, "qmrollback", str(vmid), caller.userid, worker)

    def _apply(self, vm: VM, snap: dict[str, Any], snapname: str, node: str) -> None:
        # AbstractConfig.pm::__snapshot_rollback_get_unused / __snapshot_apply_config and
        # QemuConfig.pm::__snapshot_rollback_hook
        b = self.b
        old = vm.config
        kept_volids = {volid for _, volid, _ in snapshot_drives(snap)}
        conf: dict[str, Any] = {k: v for k, v in old.items() if k.startswith("unused") or k == "description"}
        for _, volid, _ in snapshot_drives(old):
            if volid not in kept_volids and volid not in conf.values():
                i = 0
                while f"unused{i}" in conf:
                    i += 1
                conf[f"unused{i}"] = volid
        conf.update(_copy_config(snap))
        for key in _RUNNING_KEYS:
            conf.pop(key, None)
        if conf.get("vmgenid"):
            conf["vmgenid"] = _uuid4(b.rng)
        conf["parent"] = snapname
        vm.config = conf
        vm.pending.clear()
        vm.pending_delete.clear()
        # the volumes come back at the size they had when the snapshot was taken
        for _, volid, opts in snapshot_drives(snap):
            if "size" in opts:
                _, vol = b.storage_volume(volid, node)
                if vol is not None:
                    vol.size = parse_size(opts["size"])


class SnapshotRoutes:
    """The snapshot endpoints, mixed into `routes.Api` (permissions as API2/Qemu.pm declares them)."""

    backend: Backend
    ROUTES: dict[tuple[str, str], str] = {
        ("GET", "/nodes/{node}/qemu/{vmid}/snapshot"): "snapshot_list",
        ("POST", "/nodes/{node}/qemu/{vmid}/snapshot"): "snapshot_create",
        ("GET", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}"): "snapshot_cmd_idx",
        ("DELETE", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}"): "snapshot_delete",
        ("GET", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config"): "snapshot_config",
        ("PUT", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config"): "snapshot_config_put",
        ("POST", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback"): "snapshot_rollback",
    }

    def snapshot_list(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.Audit")
        with self.backend.mu:
            return Snapshots(self.backend).listing(p["node"], int(p["vmid"]))

    def snapshot_create(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.Snapshot")
        with self.backend.mu:
            return Snapshots(self.backend).create(p["node"], int(p["vmid"]), caller, p)

    def snapshot_cmd_idx(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        # snapshot_cmd_idx: `user => 'all'`, no lookup of the VM or the snapshot
        return [{"cmd": "rollback"}, {"cmd": "config"}]

    def snapshot_delete(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.Snapshot")
        with self.backend.mu:
            return Snapshots(self.backend).delete(p["node"], int(p["vmid"]), str(p["snapname"]), caller, p)

    def snapshot_config(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.Snapshot", "VM.Snapshot.Rollback", "VM.Audit")
        with self.backend.mu:
            return Snapshots(self.backend).section(p["node"], int(p["vmid"]), str(p["snapname"]), with_digest=False)

    def snapshot_config_put(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.Snapshot")
        # waits for the flock without holding the state lock, like PUT /config
        Snapshots(self.backend).update_description(p["node"], int(p["vmid"]), str(p["snapname"]),
                                                   p.get("description"))
        return None

    def snapshot_rollback(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.Snapshot", "VM.Snapshot.Rollback")
        with self.backend.mu:
            return Snapshots(self.backend).rollback(p["node"], int(p["vmid"]), str(p["snapname"]), caller, p)
