"""What a node's root shell would show about the simulated cluster: processes, config-lock holders,
`qm config` / `qm listsnapshot` / `qm unlock`. The control API serves it (`/_sim/nodes/{node}/host`,
`/_sim/nodes/{node}/qm-unlock`, `/_sim/vms/{vmid}/set-lock`, `/_sim/tasks/stall`) so that small shims
behind a real sshd can answer `ps`, `fuser` and `qm` as a Proxmox node does.

Facts it follows:
- a task runs in a forked worker whose process title is `task <UPID>` and whose PID is the UPID's
  (pve-common RESTEnvironment.pm::fork_worker); a running VM is a `kvm -id <vmid>` process
  (qemu-server QemuServer.pm::config_to_command);
- the flock on `/run/lock/qemu-server/lock-<vmid>.conf` is held by the worker that took it
  (pve-common Tools.pm::lock_file_full; qemu-server QemuConfig.pm::config_file_lock);
- `qm unlock` takes that flock (10 s), deletes `lock` and writes the config (qemu-server
  CLI/qm.pm::unlock; pve-semantics §3.5); `qm set --lock <kind>` is root's way to set one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .tasks import LockTimeout

if TYPE_CHECKING:
    from .backend import Backend


class HostView:
    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.stalled: dict[str, tuple[str, str]] = {}      # UPID -> (ps stat, wchan), e.g. ("D", ...)

    def processes(self, node: str) -> list[dict[str, Any]]:
        b = self.b
        now = time.time()
        out: list[dict[str, Any]] = []
        with b.mu:
            b.node(node)
            for task in b.engine.tasks.values():
                if task.node != node or task.done.is_set():
                    continue
                stat, wchan = self.stalled.get(task.upid, ("Ss", "do_select"))
                out.append({"pid": task.pid, "stat": stat, "etime": etime(now - task.starttime), "wchan": wchan,
                            "cmd": f"task {task.upid}"})
            for vm in b.state.vms.values():
                if vm.node == node and vm.status == "running" and vm.pid:
                    name = vm.config.get("name", f"vm{vm.vmid}")
                    out.append({"pid": vm.pid, "stat": "Sl", "etime": etime(now - (vm.started_at or now)),
                                "wchan": "do_sys_poll",
                                "cmd": f"/usr/bin/kvm -id {vm.vmid} -name {name},debug-threads=on -no-shutdown"})
        return sorted(out, key=lambda p: p["pid"])

    def lock_holders(self, node: str) -> dict[str, list[int]]:
        """VMID -> PIDs holding its flock on `node`: the oldest running task of that VM there (the
        engine's flock does not record its owner; the others would be waiting for it)."""
        b = self.b
        out: dict[str, list[int]] = {}
        with b.mu:
            running = [t for t in b.engine.tasks.values() if t.node == node and not t.done.is_set()]
            for vmid in {int(t.id) for t in running if t.id.isdigit()}:
                if b.locks.is_locked(node, vmid):
                    owner = min((t for t in running if t.id == str(vmid)), key=lambda t: (t.starttime, t.pid))
                    out[str(vmid)] = [owner.pid]
        return out

    def configs(self, node: str) -> dict[str, dict[str, Any]]:
        with self.b.mu:
            return {str(vm.vmid): dict(vm.config) for vm in self.b.state.vms.values() if vm.node == node}

    def summary(self, node: str) -> dict[str, Any]:
        return {"node": node, "processes": self.processes(node), "lock_holders": self.lock_holders(node),
                "configs": self.configs(node)}

    def qm_unlock(self, node: str, vmid: int) -> None:
        b = self.b
        try:
            with b.locks.hold(node, vmid, timeout=10):
                with b.mu:
                    vm = b.state.vms.get(vmid)
                    if vm is None or vm.node != node:
                        raise KeyError(f"no such VM {vmid} on {node}: Configuration file "
                                       f"'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
                    vm.config.pop("lock", None)
                    vm.pending.pop("lock", None)
                    b.changed()
        except LockTimeout as exc:
            raise ValueError(str(exc)) from None

    def set_lock(self, vmid: int, kind: str | None) -> None:
        """`qm set VMID --lock KIND` (root only); no task holds anything: a stale lock."""
        b = self.b
        with b.mu:
            vm = b.state.vms.get(vmid)
            if vm is None:
                raise KeyError(f"no such VM {vmid}")
            if kind:
                vm.config["lock"] = kind
            else:
                vm.config.pop("lock", None)
            b.changed()

    def stall(self, upid: str, stat: str = "D", wchan: str = "rpc_wait_bit_killable") -> None:
        """The task's worker sleeps uninterruptibly (a hung NFS or iSCSI storage) until cleared."""
        if self.b.engine.get(upid) is None:
            raise KeyError(f"no such task {upid}")
        if stat:
            self.stalled[upid] = (stat, wchan)
        else:
            self.stalled.pop(upid, None)


def host_view(backend: Backend) -> HostView:
    view = getattr(backend, "_host_view", None)
    if view is None:
        view = HostView(backend)
        backend._host_view = view  # type: ignore[attr-defined]
    return view


def etime(seconds: float) -> str:
    """`ps` etime: [[DD-]hh:]mm:ss."""
    s = max(int(seconds), 0)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}-{h:02d}:{m:02d}:{s:02d}"
    if h:
        return f"{h:02d}:{m:02d}:{s:02d}"
    return f"{m:02d}:{s:02d}"
