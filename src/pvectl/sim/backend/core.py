"""The simulated cluster's operations and their rules.

Every rule cites where it comes from: `spec/pve-semantics.md` (section) or Proxmox's source. Handlers
either return the `data` of the answer, raise `ApiFail` (an immediate, SYNC error: the HTTP call fails)
or start a task whose worker raises `TaskError` (the call returns a UPID, the task ends
`TASK ERROR: ...`). Which errors are which follows pve-semantics §3.2, §4.2, §5, §6, §7.2, §8, §9.2.

`BackendCore` holds the state and what every concern needs (tokens and ACLs, lookups, drives and
volumes, locks); each concern is a mixin in a module of its own that imports only this one (and the
helpers beside it), and `Backend` in the package's `__init__` puts them together.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from ..models import MIB, VM, Node, State, Storage, Token, Volume, volume_key
from ..tasks import TaskContext, TaskEngine, TaskError
from .bandwidth import StorageBandwidth
from .common import (
    ApiFail,
    expand_acl,
    is_drive_key,
    memory_mib,
    parse_prop,
    perm_fail,
    render_bytes,
    render_duration,
    vm_cpus,
)


class BackendCore:
    """The cluster's state and rules. Thread-safe: one lock (`mu`) guards the state; workers sleep without it."""

    def __init__(self, state: State, *, time_scale: float = 1.0, seed: int = 0) -> None:
        self.state = state
        self.time_scale = time_scale
        self.mu = threading.RLock()
        self.rng = random.Random(seed ^ 0x5EED)
        self.engine = TaskEngine(state.nodes, state.tasks, time_scale=time_scale, mu=self.mu)
        self.bandwidth = StorageBandwidth(time_scale)
        self.locks = self.engine.locks
        self.epoch0 = time.time()
        self.offline_since: dict[str, float] = {}
        self.held: dict[int, str] = {}      # vmid -> UPID of a task holding its flock (control API)
        self._release_events: dict[int, threading.Event] = {}
        self.fingerprints: dict[str, str] = {}  # node -> SHA-256 of its certificate, set by whoever serves it
        # newids of clones whose worker has not written the temporary config yet: a second clone to the
        # same newid on the same node then finds "config file already exists"
        self._reserved: set[int] = set()
        self._version = 0                   # bumped on every state change (response caching)
        for node in state.nodes.values():
            if not node.online:
                self.offline_since[node.name] = time.time()

    def scale(self, pve_seconds: float) -> float:
        return self.engine.scale(pve_seconds)

    def changed(self) -> None:
        self._version += 1

    @property
    def version_counter(self) -> int:
        return self._version

    def close(self) -> None:
        self.engine.close()
        self.bandwidth.wake()

    def add_token(self, tokenid: str, secret: str, *, privs: dict[str, list[str]] | None = None) -> None:
        """privs: ACL path -> privileges or role names; None gives Administrator on `/`."""
        with self.mu:
            self.state.tokens[tokenid] = Token(tokenid, secret, expand_acl(privs))

    def authenticate(self, header: str | None) -> Token | None | bool:
        """None: no credentials at all (401 `No ticket`); False: bad token (401
        `Authentication failed!`). pve-manager HTTPServer.pm::auth_handler, AccessControl.pm::verify_token."""
        if not header:
            return None
        scheme, _, rest = header.partition("=") if header.startswith("PVEAPIToken=") else header.partition(" ")
        if scheme != "PVEAPIToken":
            return None if scheme not in {"PVEAuthCookie"} else False
        value = urllib.parse.unquote(rest.split(";", 1)[0].strip())
        tokenid, sep, secret = value.rpartition("=")      # split at the LAST '='
        if not sep:
            return False
        token = self.state.tokens.get(tokenid)
        if token is None or not secret or token.secret != secret:
            return False
        return token

    def privileges(self, token: Token, path: str) -> set[str]:
        # ACLs propagate from a path to everything below it (pve-access-control AccessControl.pm::permission)
        path = path.rstrip("/") or "/"
        out: set[str] = set()
        for acl_path, privs in token.acl.items():
            if acl_path == "/" or path == acl_path or path.startswith(acl_path + "/"):
                out.update(privs)
        return out

    def has(self, token: Token, path: str, *privs: str) -> bool:
        have = self.privileges(token, path)
        return any(p in have for p in privs)

    def check(self, token: Token, path: str, *privs: str) -> None:
        if not self.has(token, path, *privs):
            raise perm_fail(path, privs)

    def node(self, name: str) -> Node:
        node = self.state.nodes.get(name)
        if node is None:
            raise ApiFail(f"no such cluster node '{name}'")
        return node

    def quorate(self) -> bool:
        online = sum(1 for n in self.state.nodes.values() if n.online)
        return online * 2 > len(self.state.nodes)

    def require_quorum(self) -> None:
        if not self.quorate():
            raise ApiFail("cluster not ready - no quorum?")

    def load_config(self, node: str, vmid: int) -> VM:
        """qemu-server QemuConfig.pm::load_config: the config must be on THIS node."""
        vm = self.state.vms.get(vmid)
        if vm is None or vm.node != node:
            raise ApiFail(f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        return vm

    def check_running_vm(self, node: str, vmid: int) -> VM:
        """QemuServer.pm::check_running -> QemuConfig.pm::assert_config_exists_on_node (C3)."""
        vm = self.state.vms.get(vmid)
        if vm is None or vm.node != node:
            raise ApiFail(f"unable to find configuration file for VM {vmid} on node '{node}'")
        return vm

    @staticmethod
    def check_lock(vm: VM) -> None:
        # pve-guest-common AbstractConfig.pm::check_lock
        lock = vm.config.get("lock")
        if lock:
            raise ApiFail(f"VM is locked ({lock})")

    def storage_volume(self, volid: str, node: str) -> tuple[Storage, Volume | None]:
        sid = volid.split(":", 1)[0]
        storage = self.state.storages[sid]
        return storage, self.state.volumes.get(volume_key(storage, node, volid))

    def vm_drives(self, vm: VM, conf: dict[str, Any] | None = None) -> list[tuple[str, str, dict[str, str]]]:
        """(key, volid, options) for every disk-like entry with a volume (CD-ROM `none`/ISO excluded)."""
        out = []
        for key, value in sorted((conf or vm.config).items()):
            if not (is_drive_key(key) or key.startswith("unused")):
                continue
            volid, opts = parse_prop(str(value))
            if volid is None or volid in {"none", "cdrom"} or ":" not in volid:
                continue
            if opts.get("media") == "cdrom" and "cloudinit" not in volid:
                continue
            out.append((key, volid, opts))
        return out

    def next_disk_name(self, storage: Storage, node: str, vmid: int, kind: str = "disk") -> str:
        used = {v.volid for v in self.state.volumes.values() if v.vmid == vmid}
        i = 0
        while f"{storage.sid}:vm-{vmid}-{kind}-{i}" in used:
            i += 1
        return f"{storage.sid}:vm-{vmid}-{kind}-{i}"

    @staticmethod
    def render_config(conf: dict[str, Any], pending: dict[str, Any], pending_delete: list[str]) -> str:
        lines = [f"{k}: {v}" for k, v in sorted(conf.items()) if k != "digest"]
        if pending or pending_delete:
            lines.append("\n[PENDING]")
            if pending_delete:
                lines.append("delete: " + ",".join(pending_delete))
            lines.extend(f"{k}: {v}" for k, v in sorted(pending.items()))
        return "\n".join(lines) + "\n"

    def digest(self, vm: VM) -> str:
        # QemuServer.pm::parse_vm_config: SHA1 of the raw config file (pve-semantics §7.1); write_vm_config
        # puts every snapshot's `[name]` section after the current config and [PENDING]
        raw = self.render_config(vm.config, vm.pending, vm.pending_delete)
        for name in sorted(vm.snapshots):
            raw += f"\n[{name}]\n" + self.render_config(vm.snapshots[name], {}, [])
        return hashlib.sha1(raw.encode()).hexdigest()

    def _rrd_fresh(self, node: str) -> bool:
        # pmxcfs drops RRD data older than 5 minutes (status.c::rrd_entry_is_old)
        since = self.offline_since.get(node)
        return since is None or time.time() - since < self.scale(300)

    def _statd_tick(self, t: float) -> float:
        """The first pvestatd broadcast at or after t: stats go out every 10 s (pve-semantics §10.2)."""
        period = max(self.scale(10), 1e-6)
        k = -(-(t - self.epoch0) // period)
        return self.epoch0 + k * period

    def storage_usage(self) -> dict[tuple[str, str | None], int]:
        """Bytes used per (storage, node) - node None for shared storage - in one pass over the volumes."""
        out: dict[tuple[str, str | None], int] = {}
        shared = {sid for sid, s in self.state.storages.items() if s.shared}
        for v in self.state.volumes.values():
            sid = v.volid.partition(":")[0]
            key = (sid, None if sid in shared else v.node)
            out[key] = out.get(key, 0) + v.size
        return out

    def storage_used(self, storage: Storage, node: str) -> int:
        prefix = storage.sid + ":"
        return sum(v.size for v in self.state.volumes.values()
                   if v.volid.startswith(prefix) and (storage.shared or v.node == node))

    def agent_ready(self, vm: VM) -> bool:
        # A guest needs a few seconds to boot before qemu-guest-agent answers.
        return vm.status == "running" and vm.started_at is not None and \
            time.time() - vm.started_at >= self.scale(8)

    def _set_status(self, vm: VM, status: str) -> None:
        vm.prev_status = vm.status
        vm.status_changed_at = time.time()
        vm.status = status
        if status == "running":
            node = self.state.nodes[vm.node]
            node.next_pid += 3
            vm.pid = node.next_pid
            vm.started_at = time.time()
            vm.qmpstatus = "running"
            vm.cpu_load = round(0.05 + self.rng.random() * 0.2, 4)
            vm.mem_fraction = round(0.25 + self.rng.random() * 0.4, 3)
        else:
            vm.pid = None
            vm.started_at = None
            vm.qmpstatus = "stopped"
        self.changed()

    def _apply_pending(self, vm: VM) -> None:
        for key in vm.pending_delete:
            vm.config.pop(key, None)
        vm.config.update(vm.pending)
        vm.pending.clear()
        vm.pending_delete.clear()

    def _plugintype(self, volid: str) -> str:
        storage = self.state.storages.get(volid.split(":", 1)[0])
        return storage.plugintype if storage else ""

    def _linked_users(self, base_volid: str) -> list[int]:
        # pve-storage Plugin.pm::volume_is_base_and_used: any volume whose parent is this base
        return sorted({v.vmid for v in self.state.volumes.values() if v.base == base_volid})

    def _free_volume(self, ctx: TaskContext, node: str, volid: str) -> None:
        with self.mu:
            storage = self.state.storages.get(volid.split(":", 1)[0])
            if storage is None:
                return
            removed = self.state.volumes.pop(volume_key(storage, node, volid), None)
            self.changed()
        if removed is not None and storage.plugintype == "lvmthin":
            # LVM's own output (pve-semantics §6, storage-specific)
            ctx.log(f'  Logical volume "{volid.split(":", 1)[1].split("/")[-1]}" successfully removed.')

    def _storage_on(self, sid: str, node: str) -> bool:
        st = self.state.storages.get(sid)
        return st is not None and st.enabled and (st.nodes is None or node in st.nodes)

    def _worker_config(self, node: str, vmid: int) -> VM:
        try:
            return self.load_config(node, vmid)
        except ApiFail as exc:
            raise TaskError(exc.message) from None

    def node_usage(self, node: Node) -> dict[str, Any]:
        used = node.mem_host_used
        cpu = node.cpu_base
        for vm in self.state.vms.values():
            if vm.node == node.name and vm.status == "running":
                used += int(memory_mib(vm.config) * MIB * max(vm.mem_fraction, 0.3))
                cpu += vm.cpu_load * vm_cpus(vm.config) / node.maxcpu
        return {"mem": min(used, node.mem_total), "maxmem": node.mem_total, "cpu": round(min(cpu, 1.0), 6),
                "maxcpu": node.maxcpu, "uptime": int(time.time() - node.boot_time),
                "disk": node.rootfs_used, "maxdisk": node.rootfs_total}

    def _copy_progress(self, ctx: TaskContext, drive: str, size: int, running: bool, bwlimit: int | None,
                       storage: Storage, node: str) -> None:
        """qemu-img convert progress for a stopped source, drive-mirror lines for a running one (§2.1).

        The copy shares `storage`'s write throughput with every other copy onto it (StorageBandwidth);
        bwlimit (KiB/s) caps this copy alone. One line per percent, whatever the rate at the time."""
        steps = 100
        if running:
            ctx.log(f"drive mirror is starting for drive-{drive}")
        else:
            ctx.log(f"transferred {render_bytes(0)} of {render_bytes(size)} (0.00%)")

        def step(i: int, elapsed: float) -> None:
            done = size * i // steps
            if running:
                line = (f"drive-{drive}: transferred {render_bytes(done)} of {render_bytes(size)} "
                        f"({100 * i / steps:.2f}%) in {render_duration(elapsed)}")
                ctx.log(line + (", ready" if i == steps else ""))
            else:
                ctx.log(f"transferred {render_bytes(done)} of {render_bytes(size)} ({100 * i / steps:.2f}%)")

        self._disk_copy(ctx, drive, storage, node, size, bwlimit=bwlimit, min_secs=0.5, steps=steps, on_step=step)
        if running:
            ctx.log("all 'mirror' jobs are ready")
            ctx.log(f"drive-{drive}: Completing block job...")
            ctx.log(f"drive-{drive}: Completed successfully.")
            ctx.log(f"drive-{drive}: mirror-job finished")

    def _disk_copy(self, ctx: TaskContext, drive: str, storage: Storage, node: str, size: int, *,
                   bwlimit: int | None, min_secs: float, steps: int,
                   on_step: Callable[[int, float], None] | None = None, link: float = math.inf) -> None:
        """Write `size` bytes onto `storage` (on `node` unless it is shared) in `steps` equal steps,
        sharing its throughput with the other copies in flight (StorageBandwidth). The copy's own cap is
        bwlimit (KiB/s), `link` (bytes per PVE second, e.g. the migration network) and size / min_secs (a
        copy takes at least min_secs: setup and sync). on_step(i, PVE seconds since the start) after each
        step."""
        if size <= 0:
            for i in range(1, steps + 1):
                ctx.sleep(min_secs / steps)
                if on_step is not None:
                    on_step(i, min_secs * i / steps)
            return
        cap = min(link, size / min_secs) if min_secs > 0 else link
        if bwlimit:
            cap = min(cap, int(bwlimit) * 1024)
        key = (storage.sid, None if storage.shared else node)
        throughput = storage.throughput()
        copy = self.bandwidth.begin(f"{ctx.upid} {drive}", key, throughput, size, cap)
        try:
            for i in range(1, steps + 1):
                t = self.bandwidth.wait_for(ctx, copy, size * i // steps)
                if on_step is not None:
                    on_step(i, t - copy.started)
        finally:
            self.bandwidth.end(copy, throughput)
