"""Destroying a VM and its volumes (qemu-server API2/Qemu.pm::destroy_vm)."""

from __future__ import annotations

from typing import Any

from ..tasks import TaskContext, TaskError
from .common import ApiFail, Caller, is_drive_key, param_fail, parse_prop
from .core import BackendCore
from .snapdisks import snapshot_lv_removals, snapshot_volids


class DeleteMixin(BackendCore):
    def vm_delete(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        # qemu-server API2/Qemu.pm::destroy_vm `$early_checks`, QemuServer.pm::destroy_vm (row 4, §6)
        if params.get("skiplock") and not caller.is_root:
            raise param_fail({"skiplock": "Only root may use this option."})
        self.require_quorum()
        vm = self.load_config(node, vmid)
        if int(vm.config.get("protection", 0) or 0):
            raise ApiFail(f"can't remove VM {vmid} - protection mode enabled")
        if vm.status == "running":
            raise ApiFail(f"VM {vmid} is running - destroy failed")
        skiplock = bool(params.get("skiplock"))

        purge = bool(params.get("purge"))
        unreferenced = bool(params.get("destroy-unreferenced-disks"))

        def worker(ctx: TaskContext) -> None:
            with ctx.config_lock(vmid, timeout=10):
                with self.mu:
                    vm = self._worker_config(node, vmid)
                    if int(vm.config.get("protection", 0) or 0):
                        raise TaskError(f"can't remove VM {vmid} - protection mode enabled")
                    if vm.status == "running":
                        raise TaskError(f"VM {vmid} is running - destroy failed")
                    lock = vm.config.get("lock")
                    if lock and lock != "suspended" and not skiplock:
                        raise TaskError(f"VM is locked ({lock})")
                    if vm.is_template:
                        for key, volid, _ in self.vm_drives(vm):
                            if "base-" in volid and self._linked_users(volid):
                                raise TaskError(f"base volume '{volid}' is still in use by linked cloned")
                    referenced = [volid for _, volid, _ in self.vm_drives(vm)]
                    # QemuServer.pm::destroy_vm: then every snapshot's vmstate volume, then pending disks
                    referenced += [v for v in snapshot_volids(vm) if v not in referenced]
                    snapshots, vm.snapshots = vm.snapshots, {}
                    for key in vm.pending:
                        if is_drive_key(key):
                            pvol = parse_prop(str(vm.pending[key]))[0]
                            if pvol and ":" in pvol:
                                referenced.append(pvol)
                    vm.config = {"lock": "destroyed"}
                    vm.pending.clear()
                    vm.pending_delete.clear()
                    self.changed()
                for volid in referenced:
                    ctx.sleep(0.3)
                    for line in snapshot_lv_removals(snapshots, volid, self._plugintype(volid)):
                        ctx.log(line)
                    self._free_volume(ctx, node, volid)
                if unreferenced:
                    with self.mu:
                        orphans = [v.volid for k, v in self.state.volumes.items()
                                   if v.vmid == vmid and v.volid not in referenced and (v.node in (None, node))]
                    for volid in orphans:
                        self._free_volume(ctx, node, volid)
                if purge:
                    ctx.log(f"purging VM {vmid} from related configurations..")
                with self.mu:
                    self.state.vms.pop(vmid, None)
                    self.changed()

        return self.engine.start(node, "qmdestroy", str(vmid), caller.userid, worker)
