"""Resizing a VM's disk (qemu-server API2/Qemu.pm::resize_vm)."""

from __future__ import annotations

from typing import Any

from ..models import GIB, MIB, format_size
from ..tasks import TaskContext, TaskError
from .common import Caller, param_fail, parse_prop, parse_size
from .core import BackendCore


class StorageMixin(BackendCore):
    def vm_resize(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        # qemu-server API2/Qemu.pm::resize_vm: every check inside the task since 8.0.2 (row 8)
        if params.get("skiplock") and not caller.is_root:
            raise param_fail({"skiplock": "Only root may use this option."})
        self.check(caller.token, f"/vms/{vmid}", "VM.Config.Disk")
        disk, size_text, digest = params["disk"], str(params["size"]), params.get("digest")

        def worker(ctx: TaskContext) -> None:
            with ctx.config_lock(vmid, timeout=10):
                with self.mu:
                    vm = self._worker_config(node, vmid)
                    if digest and digest != self.digest(vm):
                        raise TaskError("checksum mismatch (file change by other user?)")
                    if vm.config.get("lock") and not params.get("skiplock"):
                        raise TaskError(f"VM is locked ({vm.config['lock']})")
                    if disk not in vm.config:
                        raise TaskError(f"disk '{disk}' does not exist")
                    volid, opts = parse_prop(str(vm.config[disk]))
                    if opts.get("media") == "cdrom":
                        raise TaskError("you can't resize a cdrom")
                    if not volid or ":" not in volid:
                        raise TaskError(f"disk '{disk}' has no associated volume")
                    storage, vol = self.storage_volume(volid, node)
                    if not self.has(caller.token, f"/storage/{storage.sid}", "Datastore.AllocateSpace"):
                        raise TaskError(f"Permission check failed (/storage/{storage.sid}, Datastore.AllocateSpace)")
                    size = vol.size if vol else parse_size(opts.get("size", "0"))
                    ext = size_text.startswith("+")
                    newsize = parse_size(size_text.lstrip("+")) + (size if ext else 0)
                    if newsize < size:
                        raise TaskError("shrinking disks is not supported")
                    if newsize == size:
                        return
                    running = vm.status == "running"
                ctx.sleep(1)
                if not running and storage.plugintype == "lvmthin":
                    lv = volid.split(":", 1)[1]
                    ctx.log(f"  Size of logical volume pve/{lv} changed from {size / GIB:.2f} GiB "
                            f"({size // (4 * MIB)} extents) to {newsize / GIB:.2f} GiB ({newsize // (4 * MIB)} extents).")
                    ctx.log(f"  Logical volume pve/{lv} successfully resized.")
                with self.mu:
                    vm = self._worker_config(node, vmid)
                    opts["size"] = format_size(newsize)
                    vm.config[disk] = ",".join([volid] + [f"{k}={v}" for k, v in opts.items()])
                    if vol is not None:
                        vol.size = newsize
                    self.changed()

        return self.engine.start(node, "resize", str(vmid), caller.userid, worker)
