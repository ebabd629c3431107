"""Start, stop, shutdown and reboot of a VM (qemu-server API2/Qemu.pm vm_start, vm_stop, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..tasks import TaskContext, TaskError
from .common import GUEST_SHUTDOWN_SECS, ApiFail, Caller, is_drive_key, param_fail
from .core import BackendCore


class PowerMixin(BackendCore):
    def vm_start(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        # qemu-server API2/Qemu.pm::vm_start; QemuServer.pm::vm_start (row 3, C3)
        self.require_quorum()
        for opt in ("skiplock", "stateuri", "migratedfrom", "migration_type", "migration_network",
                    "targetstorage", "force-cpu", "with-conntrack-state", "nets-host-mtu"):
            if opt in params and not caller.is_root:
                raise param_fail({opt: "Only root may use this option."})

        def worker(ctx: TaskContext) -> None:
            with self.mu:
                vm = self._worker_config(node, vmid)
                if vm.is_template:
                    raise TaskError("you can't start a vm if it's a template")
            with ctx.config_lock(vmid, timeout=10):
                with self.mu:
                    vm = self._worker_config(node, vmid)
                    if vm.config.get("lock") == "backup" and vm.status == "running":
                        return      # QemuServer.pm::vm_start: a backup runs, the guest is just resumed
                    if vm.config.get("lock") and vm.config["lock"] != "suspended":
                        raise TaskError(f"VM is locked ({vm.config['lock']})")
                    if vm.status == "running":
                        raise TaskError(f"VM {vmid} already running")
                    has_ci = any("cloudinit" in str(v) for k, v in vm.config.items() if is_drive_key(k))
                if has_ci:
                    ctx.log("generating cloud-init ISO")
                ctx.sleep(1.2)
                with self.mu:
                    vm = self._worker_config(node, vmid)
                    self._apply_pending(vm)
                    self._set_status(vm, "running")

        return self.engine.start(node, "qmstart", str(vmid), caller.userid, worker)

    def _stop_worker(self, node: str, vmid: int, *, shutdown: bool, timeout: int | None,
                     force: bool) -> Callable[[TaskContext], None]:
        # QemuServer.pm::_do_vm_stop: a stopped VM returns before the lock check (row 3)
        def worker(ctx: TaskContext) -> None:
            with self.mu:
                try:
                    vm = self.check_running_vm(node, vmid)
                except ApiFail as exc:
                    raise TaskError(exc.message) from None
                if vm.status != "running":
                    return
            with ctx.config_lock(vmid, timeout=10):
                with self.mu:
                    current = self.check_running_vm(node, vmid) if vmid in self.state.vms else None
                    if current is None or current.status != "running":
                        return
                    if current.config.get("lock"):
                        raise TaskError(f"VM is locked ({current.config['lock']})")
                if shutdown:
                    limit = float(timeout if timeout is not None else 60)
                    if GUEST_SHUTDOWN_SECS > limit:
                        ctx.sleep(limit)
                        if not force:
                            raise TaskError("VM quit/powerdown failed - got timeout")
                        ctx.log("VM still running - terminating now with SIGTERM")
                        ctx.sleep(1)
                    else:
                        ctx.sleep(GUEST_SHUTDOWN_SECS)
                else:
                    ctx.sleep(0.8)
                with self.mu:
                    stopped = self.state.vms.get(vmid)
                    if stopped is not None and stopped.status == "running":
                        self._set_status(stopped, "stopped")
        return worker

    def vm_stop(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        self.require_quorum()
        for opt in ("skiplock", "keepActive", "migratedfrom"):
            if opt in params and not caller.is_root:
                raise param_fail({opt: "Only root may use this option."})
        worker = self._stop_worker(node, vmid, shutdown=False, timeout=params.get("timeout"), force=True)
        return self.engine.start(node, "qmstop", str(vmid), caller.userid, worker)

    def vm_shutdown(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        self.require_quorum()
        for opt in ("skiplock", "keepActive"):
            if opt in params and not caller.is_root:
                raise param_fail({opt: "Only root may use this option."})
        vm = self.state.vms.get(vmid)
        if vm is not None and vm.node == node and vm.status == "running" and vm.qmpstatus == "paused" \
                and not params.get("forceStop"):
            raise ApiFail("VM is paused - cannot shutdown")
        worker = self._stop_worker(node, vmid, shutdown=True, timeout=params.get("timeout"),
                                   force=bool(params.get("forceStop")))
        return self.engine.start(node, "qmshutdown", str(vmid), caller.userid, worker)

    def vm_reboot(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        # API2/Qemu.pm::vm_reboot: paused and not-running checks are SYNC (row 3)
        self.require_quorum()
        vm = self.check_running_vm(node, vmid)
        if vm.status == "running" and vm.qmpstatus == "paused":
            raise ApiFail("VM is paused - cannot shutdown")
        if vm.status != "running":
            raise ApiFail(f"VM {vmid} not running")

        def worker(ctx: TaskContext) -> None:
            with ctx.config_lock(vmid, timeout=10):
                with self.mu:
                    vm = self._worker_config(node, vmid)
                    if vm.config.get("lock"):
                        raise TaskError(f"VM is locked ({vm.config['lock']})")
                ctx.sleep(6)
                with self.mu:
                    vm = self._worker_config(node, vmid)
                    self._set_status(vm, "stopped")
                    self._apply_pending(vm)     # a reboot applies pending changes (§5.1)
                    self._set_status(vm, "running")

        return self.engine.start(node, "qmreboot", str(vmid), caller.userid, worker)
