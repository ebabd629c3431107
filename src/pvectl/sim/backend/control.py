"""What the test control API does to the cluster: nodes on and off, held locks, failing tasks."""

from __future__ import annotations

import threading
import time

from ..tasks import TaskContext, TaskError
from .common import ApiFail
from .core import BackendCore


class ControlMixin(BackendCore):
    def set_node_online(self, node: str, online: bool) -> None:
        with self.mu:
            n = self.node(node)
            n.online = online
            if online:
                self.offline_since.pop(node, None)
            else:
                self.offline_since.setdefault(node, time.time())
            self.changed()

    def set_node_resources(self, node: str, *, mem_total: int | None = None, mem_used: int | None = None,
                           cpu: float | None = None, maxcpu: int | None = None) -> None:
        with self.mu:
            n = self.node(node)
            if mem_total is not None:
                n.mem_total = mem_total
            if mem_used is not None:
                running = self.node_usage(n)["mem"] - n.mem_host_used
                n.mem_host_used = max(0, mem_used - running)
            if cpu is not None:
                n.cpu_base = cpu
            if maxcpu is not None:
                n.maxcpu = maxcpu
            self.changed()

    def hold_lock(self, vmid: int, *, seconds: float | None = None, kind: str = "backup") -> str:
        """A hung task (a `vzdump` task that runs until released or stopped). With a `kind`, it sets
        the config lock as vzdump does (AbstractConfig.pm::set_lock: flock, check_lock, write `lock:
        <kind>`, flock released), so other operations fail at their check_lock with `VM is locked
        (<kind>)`; at the end it removes the lock again under the flock (remove_lock). With `kind=""`
        it holds the VM's flock itself for the whole time: other operations wait for it and fail
        with `can't lock file ... - got timeout` after their timeout (10 s for most).
        Returns once the lock is set or the flock is held (or the task ended without either)."""
        with self.mu:
            vm = self.state.vms.get(vmid)
            if vm is None:
                raise ApiFail(f"VM {vmid} does not exist")
            node = vm.node
        release = threading.Event()
        acquired = threading.Event()

        def hang(ctx: TaskContext) -> None:
            ctx.log(f"INFO: starting new backup job: vzdump {vmid} --mode snapshot --storage local")
            ctx.log(f"INFO: Starting Backup of VM {vmid} (qemu)")
            deadline = None if seconds is None else time.monotonic() + self.scale(seconds)
            while not release.is_set():
                ctx.check_interrupt()
                if deadline is not None and time.monotonic() >= deadline:
                    break
                release.wait(0.02)

        def worker(ctx: TaskContext) -> None:
            if not kind:
                with ctx.config_lock(vmid, timeout=10):
                    acquired.set()
                    hang(ctx)
                ctx.log(f"INFO: Finished Backup of VM {vmid}")
                return
            with ctx.config_lock(vmid, timeout=10), self.mu:
                vm = self._worker_config(node, vmid)
                if vm.config.get("lock"):
                    raise TaskError(f"VM is locked ({vm.config['lock']})")
                vm.config["lock"] = kind
                self.changed()
            acquired.set()
            try:
                hang(ctx)
            finally:
                with ctx.config_lock(vmid, timeout=10), self.mu:
                    v = self.state.vms.get(vmid)
                    if v is not None and v.config.get("lock") == kind:
                        v.config.pop("lock")
                        self.changed()
            ctx.log(f"INFO: Finished Backup of VM {vmid}")

        upid = self.engine.start(node, "vzdump", str(vmid), "root@pam", worker)
        self.held[vmid] = upid
        self._release_events[vmid] = release
        task = self.engine.get(upid)
        while task is not None and not acquired.wait(0.005) and not task.done.is_set():
            pass
        return upid

    def release_lock(self, vmid: int) -> None:
        ev = self._release_events.pop(vmid, None)
        if ev is not None:
            ev.set()
        upid = self.held.pop(vmid, None)
        if upid:
            task = self.engine.get(upid)
            if task is not None:
                task.done.wait(5)

    def fail_task(self, *, type: str, message: str, times: int = 1) -> None:  # noqa: A002
        with self.mu:
            self.engine.failures.setdefault(type, []).extend([message] * times)
