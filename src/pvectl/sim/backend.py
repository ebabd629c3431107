"""The simulated cluster's operations and their rules.

Every rule cites where it comes from: `spec/pve-semantics.md` (section) or Proxmox's source. Handlers
either return the `data` of the answer, raise `ApiFail` (an immediate, SYNC error: the HTTP call fails)
or start a task whose worker raises `TaskError` (the call returns a UPID, the task ends
`TASK ERROR: ...`). Which errors are which follows pve-semantics §3.2, §4.2, §5, §6, §7.2, §8, §9.2.
"""

from __future__ import annotations

import collections
import hashlib
import math
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .models import (
    GIB,
    MIB,
    VM,
    Node,
    State,
    Storage,
    Token,
    Volume,
    format_size,
    random_mac,
    volume_key,
)
from .tasks import (
    Interrupted,
    LockTimeout,
    TaskContext,
    TaskEngine,
    TaskError,
    decode_upid,
)

PVE_VERSION = {"version": "9.1.6", "release": "9.1", "repoid": "71482d1833ded40a"}
PVE_MANAGER = "pve-manager/9.1.6/71482d1833ded40a"
KVERSION = ("Linux", "6.17.2-1-pve", "#1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1 (2025-10-21T11:55Z)", "x86_64")


class ApiFail(Exception):
    """An immediate error: HTTP status + PVE's message (+ per-field errors for 400)."""

    def __init__(self, message: str, status: int = 500, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = errors


def param_fail(errors: dict[str, str]) -> ApiFail:
    # pve-common Exception.pm::raise_param_exc
    return ApiFail("Parameter verification failed.", 400, errors)


def perm_fail(path: str, privs: Iterable[str]) -> ApiFail:
    # pve-access-control RPCEnvironment.pm::check / check_any -> raise_perm_exc("$path, $priv")
    return ApiFail(f"Permission check failed ({path}, {'|'.join(privs)})", 403)


@dataclass
class Caller:
    """Who is asking. API tokens are never `root@pam`, so root-only options are refused for them
    (qemu-server API2/Qemu.pm compares `$authuser eq 'root@pam'`; the token id is the auth user)."""

    token: Token

    @property
    def userid(self) -> str:
        return self.token.tokenid

    @property
    def is_root(self) -> bool:
        return self.token.tokenid == "root@pam"


# qemu-server QemuServer.pm `$fast_plug_option` plus every cloud-init key (pve-semantics §7.4, row 6)
FAST_PLUG = {"description", "hookscript", "lock", "migrate_downtime", "migrate_speed", "name", "onboot",
             "protection", "shares", "startup", "tags", "vmstatestorage",
             "citype", "ciuser", "cipassword", "ciupgrade", "cicustom", "searchdomain", "nameserver", "sshkeys"}
GUEST_SHUTDOWN_SECS = 6.0     # how long a guest takes to power off after ACPI shutdown
LIVE_OPTIONS = {"cpuunits", "cpulimit", "agent"}      # applied live by vmconfig_hotplug_pending
DRIVE_PREFIXES = ("ide", "scsi", "virtio", "sata", "efidisk", "tpmstate")
NET_MODELS = ("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
              "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")
# Keys a clone never copies (qemu-server API2/Qemu.pm::clone_vm; pve-semantics §4.3)
CLONE_SKIP = {"snapshots", "parent", "snaptime", "vmstate", "snapstate", "runningcpu", "runningmachine",
              "running-nets-host-mtu", "pending", "template", "lock"}
# Not config options: parameters of the config endpoints themselves
CONFIG_META = {"node", "vmid", "digest", "delete", "revert", "skiplock", "background_delay", "force",
               "import-working-storage"}


def is_drive_key(key: str) -> bool:
    return key.startswith(DRIVE_PREFIXES) and key.rstrip("0123456789") in DRIVE_PREFIXES + ("unused",)


def is_cloudinit_key(key: str) -> bool:
    return key in {"citype", "ciuser", "cipassword", "ciupgrade", "cicustom", "searchdomain", "nameserver",
                   "sshkeys"} or (key.startswith("ipconfig") and key[8:].isdigit())


def config_privilege(key: str) -> str:
    """The privilege PUT/POST config needs for a key (qemu-server Qemu.pm
    `$check_vm_modify_config_perm`: cpuoptions, memoryoptions, cloudinitoptions, generaloptions, ...)."""
    base = key.rstrip("0123456789")
    if key in {"cpu", "cores", "sockets", "vcpus", "cpulimit", "cpuunits", "numa", "affinity"} or base == "numa":
        return "VM.Config.CPU"
    if key in {"memory", "balloon", "shares"}:
        return "VM.Config.Memory"
    if base == "net":
        return "VM.Config.Network"
    if is_cloudinit_key(key):
        return "VM.Config.Cloudinit"
    if is_drive_key(key) or base == "unused":
        return "VM.Config.Disk"
    if key in {"name", "tags", "description", "onboot", "protection", "startup", "agent", "boot", "ostype",
               "hookscript", "keyboard", "localtime", "migrate_downtime", "migrate_speed", "reboot", "tablet",
               "template", "vmstatestorage", "lock"}:
        return "VM.Config.Options"
    return "VM.Config.HWType"


# qemu-server QemuServer.pm `$confdesc`: the options of type `number`. parse_vm_config's check_type
# returns their text unchanged (integers and booleans become numbers), so they read back as strings.
NUMBER_OPTIONS = frozenset({"cpulimit", "migrate_downtime"})


def config_value(key: str, value: Any) -> Any:
    """A validated parameter as the config file reads it back (QemuServer.pm::check_type)."""
    if key in NUMBER_OPTIONS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return value


def parse_prop(value: str) -> tuple[str | None, dict[str, str]]:
    """Split a property string `a,b=c`: the first bare item is returned apart (default key)."""
    first: str | None = None
    out: dict[str, str] = {}
    for i, part in enumerate(str(value).split(",")):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
        elif i == 0:
            first = part
        else:
            out[part] = "1"
    return first, out


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}
    text = text.strip()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


def render_bytes(value: float) -> str:
    """pve-common Format.pm::render_bytes with precision 1 (clone progress; pve-semantics §2.1): the unit
    is int(log1024(value)) once value > 1023, so 1048575 B is `1024.0 KiB`."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    unit = 0
    if value > 1023:
        unit = min(int(math.log(value) / math.log(1024)), len(units) - 1)
        value /= 1024**unit
    return f"{value:.1f} {units[unit]}"


def render_duration(seconds: float) -> str:
    """pve-common Format.pm::render_duration: rounded, `1w 2d 3h 4m 5s` with zero parts left out."""
    rest = round(seconds)
    if not rest:
        return "0s"
    parts = []
    for unit, length in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        v, rest = divmod(rest, length)
        if v:
            parts.append(f"{v}{unit}")
    return " ".join(parts)


def memory_mib(conf: dict[str, Any]) -> int:
    # In PVE 9 `memory` is a property string `[current=]<MiB>` (qemu-server QemuServer/Memory.pm)
    value = conf.get("memory", "512")
    first, kv = parse_prop(str(value))
    return int(kv.get("current", first or 512))


def vm_cpus(conf: dict[str, Any]) -> int:
    return int(conf.get("vcpus") or int(conf.get("sockets", 1)) * int(conf.get("cores", 1)))


def fair_shares(throughput: float, caps: list[float]) -> list[float]:
    """Max-min fair split of `throughput` among copies with per-copy caps (`bwlimit`, a link, a minimum
    duration): a copy capped below an equal share keeps its cap, the rest is shared equally by the others."""
    out = [0.0] * len(caps)
    left = float(throughput)
    order = sorted(range(len(caps)), key=caps.__getitem__)
    for i, idx in enumerate(order):
        out[idx] = min(caps[idx], left / (len(caps) - i))
        left -= out[idx]
    return out


@dataclass
class Copy:
    """One disk copy in flight (a full clone's drive, a migrated local disk)."""

    id: int
    label: str                       # "<UPID> <drive>"
    key: tuple[str, str | None]      # (storage, node); node None for shared storage
    size: int
    cap: float                       # bytes per PVE second this copy never exceeds (math.inf: none)
    started: float                   # model time (PVE seconds)
    done: float = 0.0                # bytes, as of `updated`
    rate: float = 0.0                # bytes per PVE second since `updated`
    updated: float = 0.0
    since: float = 0.0               # start of the current accounting segment


@dataclass(frozen=True)
class Segment:
    """Accounting: `copy` ran at `rate` (bytes per PVE second) from t0 to t1 (model time) with `sharers`
    copies (itself included) on its storage."""

    copy: int
    label: str
    key: tuple[str, str | None]
    t0: float
    t1: float
    rate: float
    sharers: int
    throughput: float


class StorageBandwidth:
    """Concurrent disk copies onto one storage share its write throughput (`Storage.throughput()`).

    This is a model of the hardware, not a Proxmox API rule. PVE does not arbitrate between concurrent
    `qemu-img convert` / drive-mirror / storage-migrate jobs; it only caps each one with `bwlimit`
    (the API parameter, or datacenter.cfg / storage.cfg). The storage itself is the bottleneck: twenty
    clones onto one node's LVM-thin pool, or into one Ceph pool, each get about a twentieth of its write
    bandwidth, so starting more copies at once does not make the whole batch finish sooner. Without this
    the simulator would let any number of copies run at full speed at once.

    A copy is charged to the storage it writes to: (storage, node) for local storage, (storage, None) for
    shared storage. Rates are a max-min fair split (`fair_shares`) among the copies on that storage,
    each capped by its own `cap`; they are recomputed whenever a copy starts or ends, so a copy speeds
    up as soon as another one finishes, and every copy's bytes are integrated over those piecewise
    constant rates. Time is model time in PVE seconds (wall clock / time scale). Every rate change is
    recorded as a `Segment` (the last 20000), for tests and benchmarks.
    """

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self.cond = threading.Condition()
        self._t0 = time.monotonic()
        self._active: dict[tuple[str, str | None], list[Copy]] = {}
        self._next = 0
        self.segments: collections.deque[Segment] = collections.deque(maxlen=20000)

    def now(self) -> float:
        """Model time in PVE seconds."""
        return (time.monotonic() - self._t0) / self.time_scale if self.time_scale > 0 else 0.0

    def active(self, key: tuple[str, str | None] | None = None) -> list[Copy]:
        with self.cond:
            if key is not None:
                return list(self._active.get(key, ()))
            return [c for cs in self._active.values() for c in cs]

    def wake(self) -> None:
        """Let waiting copies look at their task's stop flag now (a task was stopped)."""
        with self.cond:
            self.cond.notify_all()

    def _advance(self, key: tuple[str, str | None], now: float, throughput: float | None = None) -> None:
        """Bring every copy on `key` to `now`; with `throughput`, also close their accounting segments
        (the set of copies or their rates is about to change)."""
        copies = self._active.get(key, [])
        for c in copies:
            c.done = min(float(c.size), c.done + c.rate * (now - c.updated))
            c.updated = now
            if throughput is not None:
                if now > c.since:
                    self.segments.append(Segment(c.id, c.label, key, c.since, now, c.rate, len(copies),
                                                 throughput))
                c.since = now

    def _reshare(self, key: tuple[str, str | None], throughput: float) -> None:
        copies = self._active.get(key, [])
        for c, r in zip(copies, fair_shares(throughput, [c.cap for c in copies])):
            c.rate = r
        self.cond.notify_all()

    def begin(self, label: str, key: tuple[str, str | None], throughput: float, size: int, cap: float) -> Copy:
        with self.cond:
            now = self.now()
            self._advance(key, now, throughput)
            self._next += 1
            copy = Copy(self._next, label, key, size, cap, now, updated=now, since=now)
            self._active.setdefault(key, []).append(copy)
            self._reshare(key, throughput)
            return copy

    def end(self, copy: Copy, throughput: float) -> None:
        with self.cond:
            now = self.now()
            self._advance(copy.key, now, throughput)
            copies = self._active.get(copy.key, [])
            if copy in copies:
                copies.remove(copy)
            if not copies:
                self._active.pop(copy.key, None)
            self._reshare(copy.key, throughput)

    def wait_for(self, ctx: TaskContext, copy: Copy, target: int) -> float:
        """Block until `copy` has moved `target` bytes; returns the model time then. Raises Interrupted
        when the task is stopped."""
        with self.cond:
            while True:
                ctx.check_interrupt()
                now = self.now()
                self._advance(copy.key, now)
                left = target - copy.done
                if left <= 0.5 or self.time_scale <= 0:
                    return now
                wait = left / copy.rate * self.time_scale if copy.rate > 0 else 0.25
                self.cond.wait(min(max(wait, 0.0005), 0.25))


class Backend:
    """The cluster's rules. Thread-safe: one lock (`mu`) guards the state; workers sleep without it."""

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
        from .access import Access

        self.access = Access(self)          # users, tickets and CSRF tokens (password logins)
        for node in state.nodes.values():
            if not node.online:
                self.offline_since[node.name] = time.time()

    # ------------------------------------------------------------------ infrastructure
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

    # ------------------------------------------------------------------ tokens and ACLs
    def add_token(self, tokenid: str, secret: str, *, privs: dict[str, list[str]] | None = None) -> None:
        """privs: ACL path -> privileges or role names; None gives Administrator on `/`."""
        from .access import expand_acl

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

    # ------------------------------------------------------------------ lookups
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

    # ------------------------------------------------------------------ digests and pending
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

    # ------------------------------------------------------------------ read endpoints
    def version(self) -> dict[str, Any]:
        return dict(PVE_VERSION)

    def cluster_status(self, local: str) -> list[dict[str, Any]]:
        # pve-manager API2/Cluster.pm::get_status; pmxcfs status.c (pve-semantics §10.1)
        out: list[dict[str, Any]] = [{
            "type": "cluster", "id": "cluster", "name": self.state.cluster_name,
            "nodes": len(self.state.nodes), "quorate": int(self.quorate()), "version": self.state.config_version,
        }]
        for n in self.state.nodes.values():
            out.append({"type": "node", "id": f"node/{n.name}", "name": n.name, "nodeid": n.nodeid,
                        "online": int(n.online), "local": int(n.name == local), "ip": n.ip, "level": ""})
        return out

    def _rrd_fresh(self, node: str) -> bool:
        # pmxcfs drops RRD data older than 5 minutes (status.c::rrd_entry_is_old)
        since = self.offline_since.get(node)
        return since is None or time.time() - since < self.scale(300)

    def _statd_tick(self, t: float) -> float:
        """The first pvestatd broadcast at or after t: stats go out every 10 s (pve-semantics §10.2)."""
        period = max(self.scale(10), 1e-6)
        k = -(-(t - self.epoch0) // period)
        return self.epoch0 + k * period

    def resource_status(self, vm: VM, now: float) -> str:
        if not self._rrd_fresh(vm.node):
            return "unknown"
        if self._statd_tick(vm.created_at) > now:
            return "unknown"          # no RRD data yet for a brand-new VM
        current = vm.qmpstatus if vm.status == "running" and vm.qmpstatus not in {"running", ""} else vm.status
        if self._statd_tick(vm.status_changed_at) > now:
            return vm.prev_status
        return current

    def vm_usage(self, vm: VM, now: float) -> dict[str, Any]:
        conf = vm.config
        maxmem = memory_mib(conf) * MIB
        running = vm.status == "running"
        uptime = int(now - vm.started_at) if running and vm.started_at else 0
        jitter = 1 + 0.1 * ((vm.vmid * 7919 + int(now)) % 11 - 5) / 5
        maxdisk = 0
        for key, volid, opts in self.vm_drives(vm):
            if not key.startswith("unused") and "cloudinit" not in volid:
                maxdisk = parse_size(opts.get("size", "0"))
                break
        return {
            "cpu": round(min(1.0, vm.cpu_load * jitter), 6) if running else 0,
            "maxcpu": vm_cpus(conf), "mem": int(maxmem * vm.mem_fraction) if running else 0, "maxmem": maxmem,
            "disk": 0, "maxdisk": maxdisk, "uptime": uptime,
            "netin": uptime * 3100 if running else 0, "netout": uptime * 1200 if running else 0,
            "diskread": uptime * 40960 if running else 0, "diskwrite": uptime * 20480 if running else 0,
        }

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

    def cluster_resources(self, token: Token, rtype: str | None,
                          used: dict[tuple[str, str | None], int] | None = None) -> list[dict[str, Any]]:
        # pve-manager API2/Cluster.pm::resources, API2Tools.pm::extract_*_stats (pve-semantics §10.2)
        now = time.time()
        out: list[dict[str, Any]] = []
        if rtype in (None, "vm"):
            for vm in sorted(self.state.vms.values(), key=lambda v: v.vmid):
                if not self.has(token, f"/vms/{vm.vmid}", "VM.Audit"):
                    continue
                status = self.resource_status(vm, now)
                if status == "unknown":
                    out.append(unknown_guest("qemu", vm.vmid, vm.node, vm.config))
                    continue
                entry: dict[str, Any] = {"id": f"qemu/{vm.vmid}", "type": "qemu", "vmid": vm.vmid,
                                         "node": vm.node, "name": vm.config.get("name", f"VM {vm.vmid}"),
                                         "template": int(vm.is_template), "status": status}
                usage = self.vm_usage(vm, now)
                if status == "stopped":      # pvestatd may not have seen a start yet
                    usage.update(cpu=0, mem=0, uptime=0, netin=0, netout=0, diskread=0, diskwrite=0)
                entry.update(usage)
                entry["memhost"] = entry["mem"]
                for key in ("lock", "tags"):
                    if vm.config.get(key):
                        entry[key] = vm.config[key]
                out.append(entry)
        if rtype in (None, "node"):
            for n in self.state.nodes.values():
                entry = self.node_resource(n, token)
                if n.online and "maxmem" in entry:
                    entry.update(self.node_usage(n))
                    entry["cgroup-mode"] = 2
                out.append(entry)
        if rtype in (None, "storage"):
            used = self.storage_usage() if used is None else used
            for n in self.state.nodes.values():
                for s in self.state.storages.values():
                    if not s.enabled or (s.nodes is not None and n.name not in s.nodes):
                        continue
                    if not self.has(token, f"/storage/{s.sid}", "Datastore.Audit", "Datastore.AllocateSpace"):
                        continue
                    entry = {"id": f"storage/{n.name}/{s.sid}", "type": "storage", "storage": s.sid,
                             "node": n.name, "plugintype": s.plugintype, "shared": int(s.shared),
                             "content": s.content, "status": "available" if n.online else "unknown"}
                    if n.online:
                        entry.update(disk=used.get((s.sid, None if s.shared else n.name), 0), maxdisk=s.total)
                    out.append(entry)
        if rtype in (None, "sdn"):
            for n in self.state.nodes.values():
                if self.has(token, "/sdn/zones/localnetwork", "SDN.Audit"):
                    out.append({"id": f"sdn/{n.name}/localnetwork", "type": "sdn", "sdn": "localnetwork",
                                "node": n.name, "status": "ok" if n.online else "unknown"})
        return out

    def node_resource(self, n: Node, token: Token) -> dict[str, Any]:
        """A node's entry without its live usage (API2Tools.pm::extract_node_stats): `level` and the
        maxima while its RRD entry is fresh (also for a node that just went offline), for a caller with
        Sys.Audit; uptime, cpu, mem and disk come on top for an online member."""
        entry: dict[str, Any] = {"id": f"node/{n.name}", "type": "node", "node": n.name,
                                 "status": "online" if n.online else "offline"}
        if n.online or self._rrd_fresh(n.name):
            entry["level"] = ""
            if self.has(token, f"/nodes/{n.name}", "Sys.Audit"):
                entry.update(maxcpu=n.maxcpu, maxmem=n.mem_total, maxdisk=n.rootfs_total)
        return entry

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

    def nextid(self, vmid: int | None) -> str:
        # pve-manager API2/Cluster.pm::nextid: the value is a JSON string (pve-semantics row 10)
        # the cluster's vmlist holds VMs and containers alike
        used = self.state.vms.keys() | self.state.containers.keys()
        if vmid is not None:
            if vmid in used:
                raise param_fail({"vmid": f"VM {vmid} already exists"})
            return str(vmid)
        for candidate in range(100, 1_000_000):
            if candidate not in used:
                return str(candidate)
        raise ApiFail("unable to get any free VMID in range [100, 1000000]")

    def nodes_list(self, token: Token) -> list[dict[str, Any]]:
        out = []
        for n in self.state.nodes.values():
            entry: dict[str, Any] = {"node": n.name, "status": "online" if n.online else "offline",
                                     "id": f"node/{n.name}", "type": "node", "level": "",
                                     "ssl_fingerprint": self.fingerprints.get(n.name, "")}
            if n.online and self.has(token, f"/nodes/{n.name}", "Sys.Audit"):
                entry.update(self.node_usage(n))
            out.append(entry)
        return out

    def node_status(self, name: str) -> dict[str, Any]:
        # pve-manager API2/Nodes.pm::status (pve-semantics §11)
        n = self.node(name)
        usage = self.node_usage(n)
        total, used = n.mem_total, usage["mem"]
        free = total - used
        load = f"{usage['cpu'] * n.maxcpu:.2f}"
        return {
            "uptime": usage["uptime"], "idle": 0, "cpu": usage["cpu"], "wait": 0.0012,
            "loadavg": [load, load, f"{usage['cpu'] * n.maxcpu * 0.9:.2f}"],
            "kversion": f"{KVERSION[0]} {KVERSION[1]} {KVERSION[2]}",
            "current-kernel": {"sysname": KVERSION[0], "release": KVERSION[1], "version": KVERSION[2],
                               "machine": KVERSION[3]},
            "boot-info": {"mode": "efi", "secureboot": 0},
            "cpuinfo": {"user_hz": 100, "vendor": "AuthenticAMD", "family": "25", "model": n.cpu_model,
                        "mhz": "3000.000", "cpus": n.maxcpu, "sockets": 1, "cores": n.maxcpu // 2, "hvm": "1",
                        "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov svm"},
            "memory": {"total": total, "used": used, "free": free, "available": free},
            "swap": {"total": 8 * GIB, "used": 0, "free": 8 * GIB},
            "ksm": {"shared": 0},
            "rootfs": {"total": n.rootfs_total, "used": n.rootfs_used, "avail": n.rootfs_total - n.rootfs_used,
                       "free": n.rootfs_total - n.rootfs_used},
            "pveversion": PVE_MANAGER,
        }

    def qemu_list(self, node: str, token: Token, full: bool) -> list[dict[str, Any]]:
        # qemu-server API2/Qemu.pm::vmlist: only VMs with VM.Audit
        self.node(node)
        now = time.time()
        out = []
        for vm in sorted(self.state.vms.values(), key=lambda v: v.vmid):
            if vm.node != node or not self.has(token, f"/vms/{vm.vmid}", "VM.Audit"):
                continue
            out.append(self.vm_status(vm, now, full=full))
        return out

    def vm_status(self, vm: VM, now: float, *, full: bool) -> dict[str, Any]:
        # QemuServer.pm::vmstatus (pve-semantics §5.3); the QMP and cgroup detail: readers/qemu_status.py
        from .readers.qemu_status import balloon_fields, display_fields, pressure_fields, running_detail

        usage = self.vm_usage(vm, now)
        conf = vm.config
        d: dict[str, Any] = {"vmid": vm.vmid, "status": vm.status, "name": conf.get("name", f"VM {vm.vmid}"),
                             "cpus": min(vm_cpus(conf), self.state.nodes[vm.node].maxcpu),
                             "maxmem": usage["maxmem"], "maxdisk": usage["maxdisk"], "disk": 0,
                             "uptime": usage["uptime"], "cpu": usage["cpu"], "mem": usage["mem"],
                             "memhost": usage["mem"], "netin": usage["netin"], "netout": usage["netout"],
                             "diskread": usage["diskread"], "diskwrite": usage["diskwrite"]}
        if vm.pid:
            d["pid"] = vm.pid
        if vm.status == "running":
            d.update(pressure_fields(vm, usage["uptime"]))
        if vm.is_template:
            d["template"] = 1
        for key in ("lock", "tags"):
            if conf.get(key):
                d[key] = conf[key]
        if any(k.startswith("serial") for k in conf):
            d["serial"] = 1
        if conf.get("balloon"):
            d.update(balloon_fields(conf))
        if full:
            d["qmpstatus"] = vm.qmpstatus if vm.status == "running" else vm.status
            d["ha"] = {"managed": 0}
            d.update(display_fields(conf))
            if parse_prop(str(conf.get("agent", "0")))[0] in {"1", "enabled"} or \
                    parse_prop(str(conf.get("agent", "")))[1].get("enabled") == "1":
                d["agent"] = 1
            if vm.status == "running":
                d.update(running_detail(self, vm, usage))
        return d

    def vm_status_current(self, node: str, vmid: int) -> dict[str, Any]:
        vm = self.load_config(node, vmid)
        return self.vm_status(vm, time.time(), full=True)

    def vm_index(self, node: str, vmid: int) -> list[dict[str, str]]:
        self.load_config(node, vmid)
        return [{"subdir": s} for s in ("config", "pending", "cloudinit", "vncproxy", "termproxy", "unlink",
                                        "status", "sendkey", "rrd", "rrddata", "monitor", "agent", "snapshot",
                                        "spiceproxy", "clone", "migrate", "resize", "move", "feature", "firewall")]

    def vm_config(self, node: str, vmid: int, *, current: bool = False) -> dict[str, Any]:
        # qemu-server API2/Qemu.pm::vm_config (pve-semantics §7.1)
        vm = self.load_config(node, vmid)
        conf = dict(vm.config)
        if not current:
            for key in vm.pending_delete:
                conf.pop(key, None)
            conf.update(vm.pending)
        if "cipassword" in conf:
            conf["cipassword"] = "**********"
        conf["digest"] = self.digest(vm)
        return conf

    def vm_pending(self, node: str, vmid: int) -> list[dict[str, Any]]:
        vm = self.load_config(node, vmid)
        out = []
        for key in sorted(set(vm.config) | set(vm.pending) | set(vm.pending_delete)):
            if key == "digest":
                continue
            item: dict[str, Any] = {"key": key}
            if key in vm.config:
                item["value"] = "**********" if key == "cipassword" else vm.config[key]
            if key in vm.pending:
                item["pending"] = vm.pending[key]
            if key in vm.pending_delete:
                item["delete"] = 1
            out.append(item)
        return out

    def agent_ready(self, vm: VM) -> bool:
        # A guest needs a few seconds to boot before qemu-guest-agent answers.
        return vm.status == "running" and vm.started_at is not None and \
            time.time() - vm.started_at >= self.scale(8)

    def agent_network(self, node: str, vmid: int) -> dict[str, Any]:
        # qemu-server API2/Qemu/Agent.pm, QemuServer/Agent.pm::assert_agent_available (row 16)
        vm = self.load_config(node, vmid)
        if "agent" not in vm.config:
            raise ApiFail("No QEMU guest agent configured")
        if vm.status != "running":
            raise ApiFail(f"VM {vmid} is not running")
        enabled = parse_prop(str(vm.config["agent"]))
        if not (enabled[0] in {"1"} or enabled[1].get("enabled") == "1") or not self.agent_ready(vm):
            raise ApiFail("QEMU guest agent is not running")
        mac = (parse_prop(str(vm.config.get("net0", "")))[1] or {})
        mac_addr = next((v for k, v in mac.items() if k in NET_MODELS), "bc:24:11:00:00:01").lower()
        stats = {"rx-bytes": 182736, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 1093,
                 "tx-bytes": 73621, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 641}
        b = mac_addr.split(":")
        ll = f"fe80::{int(b[0], 16) ^ 2:02x}{b[1]}:{b[2]}ff:fe{b[3]}:{b[4]}{b[5]}"
        return {"result": [
            {"name": "lo", "hardware-address": "00:00:00:00:00:00",
             "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
                              {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}],
             "statistics": dict(stats, **{"rx-bytes": 0, "tx-bytes": 0})},
            {"name": "eth0", "hardware-address": mac_addr,
             "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": vm.guest_ip.split("/")[0],
                               "prefix": int(vm.guest_ip.split("/")[1]) if "/" in vm.guest_ip else 24},
                              {"ip-address-type": "ipv6", "ip-address": ll, "prefix": 64}],
             "statistics": stats},
        ]}

    def storage_list(self, node: str, token: Token, content: str | None, enabled: bool) -> list[dict[str, Any]]:
        # pve-manager API2/Storage/Status.pm::index
        n = self.node(node)
        out = []
        for s in self.state.storages.values():
            if s.nodes is not None and node not in s.nodes:
                continue
            if not self.has(token, f"/storage/{s.sid}", "Datastore.Audit", "Datastore.AllocateSpace"):
                continue
            if content and not set(content.split(",")) & set(s.content.split(",")):
                continue
            if enabled and not s.enabled:
                continue
            used = self.storage_used(s, n.name)
            out.append({"storage": s.sid, "type": s.plugintype, "content": s.content, "shared": int(s.shared),
                        "active": 1, "enabled": int(s.enabled), "total": s.total, "used": used,
                        "avail": s.total - used, "used_fraction": round(used / s.total, 6)})
        return out

    def node_network(self, node: str, itype: str | None) -> list[dict[str, Any]]:
        """GET /nodes/{node}/network (pve-manager API2/Network.pm::index): the node's physical NICs,
        the `vmbr0` Linux bridge every VM's net0 uses, and a VLAN-aware `vmbr1` without an address on a
        second NIC. `type` filters (`any_bridge` = bridges)."""
        n = self.node(node)
        idx = n.nodeid
        ifaces = [
            {"iface": "eno1", "type": "eth", "method": "manual", "method6": "manual", "families": ["inet"],
             "active": 1, "exists": 1, "autostart": 0, "priority": 3},
            {"iface": "vmbr0", "type": "bridge", "method": "static", "method6": "manual", "families": ["inet"],
             "active": 1, "autostart": 1, "bridge_ports": "eno1", "bridge_stp": "off", "bridge_fd": "0",
             "cidr": f"10.0.0.{idx}/24", "address": f"10.0.0.{idx}", "netmask": "24", "gateway": "10.0.0.254",
             "priority": 4},
            {"iface": "eno2", "type": "eth", "method": "manual", "method6": "manual", "families": ["inet"],
             "active": 1, "exists": 1, "autostart": 0, "priority": 5},
            {"iface": "vmbr1", "type": "bridge", "method": "manual", "method6": "manual", "families": ["inet"],
             "active": 1, "autostart": 1, "bridge_ports": "eno2", "bridge_stp": "off", "bridge_fd": "0",
             "bridge_vlan_aware": 1, "bridge_vids": "2-4094", "priority": 6},
        ]
        if itype in ("bridge", "any_bridge"):
            return [i for i in ifaces if i["type"] == "bridge"]
        if itype:
            return [i for i in ifaces if i["type"] == itype]
        return ifaces

    def access_permissions(self, token: Token, path: str | None) -> dict[str, dict[str, int]]:
        # pve-access-control API2/AccessControl.pm::permissions: path -> {priv: propagate(0|1)}
        paths = [path] if path else sorted({"/", "/access", "/nodes", "/storage", "/vms", "/pool", "/sdn",
                                            *token.acl.keys()})
        out: dict[str, dict[str, int]] = {}
        for p in paths:
            privs = self.privileges(token, p)
            if privs or path:
                out[p] = {priv: 1 for priv in sorted(privs)}
        return out

    # ------------------------------------------------------------------ tasks
    def task_visible(self, token: Token, node: str, user: str) -> bool:
        # API2/Tasks.pm: own tasks, or Sys.Audit on /nodes/<node>
        return user == token.tokenid or self.has(token, f"/nodes/{node}", "Sys.Audit")

    def tasks_list(self, node: str, token: Token, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        # pve-manager API2/Tasks.pm::node_tasks (pve-semantics §1.3)
        self.node(node)
        source = params.get("source", "archive")
        vmid = params.get("vmid")
        typefilter = params.get("typefilter")
        userfilter = params.get("userfilter")
        errors_only = params.get("errors")
        statusfilter = set(str(params.get("statusfilter", "")).split(",")) - {""}
        items = []
        for rec in self.engine.records():
            if rec.node != node:
                continue
            running = rec.status == "running"
            if (running and source == "archive") or (not running and source == "active"):
                continue
            u = decode_upid(rec.upid)
            if not self.task_visible(token, node, u.user):
                continue
            if vmid is not None and u.id != str(vmid):
                continue
            if typefilter and typefilter not in u.type:
                continue
            if userfilter and userfilter not in u.user:
                continue
            status = "RUNNING" if running else (rec.exitstatus or "unexpected status")
            kind = "ok" if status == "OK" else "warning" if status.startswith("WARNINGS") else \
                "unknown" if status in {"RUNNING", "unexpected status"} else "error"
            if errors_only and kind in {"ok", "warning"}:
                continue
            if statusfilter and kind not in statusfilter:
                continue
            item = self.task_fields(rec.upid)
            item["status"] = status
            if not running:
                item["endtime"] = rec.endtime
            items.append(item)
        items.sort(key=lambda t: t["starttime"], reverse=True)
        total = len(items)
        start = int(params.get("start", 0))
        limit = int(params.get("limit", 50))
        return items[start:start + limit], total

    @staticmethod
    def task_fields(upid: str) -> dict[str, Any]:
        u = decode_upid(upid)
        d: dict[str, Any] = {"upid": upid, "node": u.node, "pid": u.pid, "pstart": u.pstart,
                             "starttime": u.starttime, "type": u.type, "id": u.id, "user": u.user}
        if "!" in u.user:    # Tasks.pm $convert_token_task
            d["user"], d["tokenid"] = u.user.split("!", 1)
        return d

    def _task_record(self, node: str, upid: str):  # noqa: ANN202
        try:
            u = decode_upid(upid)
        except ValueError:
            raise param_fail({"upid": "unable to parse worker upid"}) from None
        rec = self.engine.record(upid)
        if rec is None or rec.node != node or u.node != node:
            return None, u
        return rec, u

    def task_status(self, node: str, upid: str, token: Token) -> dict[str, Any]:
        rec, u = self._task_record(node, upid)
        if rec is None:
            raise param_fail({"upid": "no such task"})
        if not self.task_visible(token, node, u.user):
            raise perm_fail(f"/nodes/{node}", ["Sys.Audit"])
        d = self.task_fields(upid)
        d["status"] = rec.status
        if rec.status == "stopped":
            d["exitstatus"] = rec.exitstatus
        return d

    def task_log(self, node: str, upid: str, token: Token, start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        # pve-manager Tasks.pm::read_task_log, pve-common Tools.pm::dump_logfile (row 2)
        rec, u = self._task_record(node, upid)
        if rec is None:
            return [{"n": 1, "t": "unable to open file - No such file or directory"}], 1
        if not self.task_visible(token, node, u.user):
            raise perm_fail(f"/nodes/{node}", ["Sys.Audit"])
        with self.mu:
            lines = list(rec.lines)
        if not lines:
            return [{"n": 1, "t": "no content"}], 1
        end = len(lines) if limit == 0 else start + limit
        return [{"n": i + 1, "t": lines[i]} for i in range(start, min(end, len(lines)))], len(lines)

    def task_stop(self, node: str, upid: str, token: Token) -> None:
        rec, u = self._task_record(node, upid)
        if rec is None:
            raise param_fail({"upid": "no such task"})
        if u.user != token.tokenid and not self.has(token, f"/nodes/{node}", "Sys.Modify"):
            raise perm_fail(f"/nodes/{node}", ["Sys.Modify"])
        self.engine.stop(upid)
        self.bandwidth.wake()

    # ------------------------------------------------------------------ state helpers for workers
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

    # ------------------------------------------------------------------ power
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

    def _worker_config(self, node: str, vmid: int) -> VM:
        try:
            return self.load_config(node, vmid)
        except ApiFail as exc:
            raise TaskError(exc.message) from None

    def _stop_worker(self, node: str, vmid: int, *, shutdown: bool, timeout: int | None, force: bool):  # noqa: ANN202
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
                    vm = self.check_running_vm(node, vmid) if vmid in self.state.vms else None
                    if vm is None or vm.status != "running":
                        return
                    if vm.config.get("lock"):
                        raise TaskError(f"VM is locked ({vm.config['lock']})")
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
                    vm = self.state.vms.get(vmid)
                    if vm is not None and vm.status == "running":
                        self._set_status(vm, "stopped")
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

    # ------------------------------------------------------------------ delete
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
        from .snapshots import snapshot_lv_removals, snapshot_volids

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

    # ------------------------------------------------------------------ clone
    def vm_clone(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        # qemu-server API2/Qemu.pm::clone_vm; checks in `$load_and_check` run before the fork (§4.2)
        newid = int(params["newid"])
        self.check(caller.token, f"/vms/{vmid}", "VM.Clone")
        self.check(caller.token, f"/vms/{newid}", "VM.Allocate")
        target = params.get("target")
        if target in (node, "localhost"):
            target = None
        # `my $running = check_running($vmid)` comes first: assert_config_exists_on_node
        self.check_running_vm(node, vmid)
        pool = params.get("pool")
        if pool:
            # $load_and_check: RPCEnvironment::check_pool_exist -> raise_perm_exc
            raise ApiFail(f"Permission check failed (pool '{pool}' does not exist)", 403)
        if target is not None:
            self.node(target)
        self.require_quorum()
        src = self.load_config(node, vmid)
        self.check_lock(src)
        running = src.status == "running"
        from .snapshots import LINKED_FROM_SNAPSHOT, linked_clone_source

        snapname = params.get("snapname")
        src_conf = linked_clone_source(src, snapname)      # `$oldconf`: the snapshot's section with snapname
        full = bool(params["full"]) if "full" in params else not src.is_template
        storage_id = params.get("storage")
        if not full:
            if storage_id:
                raise ApiFail("parameter 'storage' not allowed for linked clones")
            if params.get("format"):
                raise ApiFail("parameter 'format' not allowed for linked clones")
        if storage_id:
            self.check(caller.token, f"/storage/{storage_id}", "Datastore.AllocateSpace")
            st = self.state.storages.get(storage_id)
            if st is None:
                raise ApiFail(f"storage '{storage_id}' does not exist")
            if not st.enabled:
                raise ApiFail(f"storage '{storage_id}' is disabled")
            if st.nodes is not None and node not in st.nodes:
                raise ApiFail(f"storage '{storage_id}' is not available on node '{node}'")
            if "images" not in st.content.split(","):
                raise param_fail({"storage": f"storage '{storage_id}' does not support vm images"})
            if target is not None and not st.shared:
                raise ApiFail(f"can't clone to non-shared storage '{storage_id}'")
        drives = self.vm_drives(src, src_conf)
        if target is not None:
            for key, volid, _ in drives:
                if not self.state.storages[volid.split(":", 1)[0]].shared:
                    raise ApiFail(f"can't clone VM to node '{target}' (VM uses local storage)")
        for key, volid, _ in drives:
            if key.startswith("unused") or full or "cloudinit" in volid:
                continue
            # volume_has_feature('clone'): from a base volume, or from a snapshot on LVM-thin/RBD
            if snapname:
                if self.state.storages[volid.split(":", 1)[0]].plugintype not in LINKED_FROM_SNAPSHOT:
                    raise ApiFail(f"Linked clone feature is not supported for a snapshot of '{volid}' ({key})")
            elif not volid.split(":", 1)[1].startswith("base-"):
                raise ApiFail(f"Linked clone feature is not supported for '{volid}' ({key})")
        existing = self.state.vms.get(newid)
        if (existing is not None and existing.node == node) or newid in self._reserved:
            raise ApiFail(f"unable to create VM {newid}: config file already exists")
        name = params.get("name") or (f"Copy-of-VM-{src.config['name']}" if src.config.get("name") else f"Copy-of-VM-{vmid}")
        description = params.get("description")
        bwlimit = params.get("bwlimit")

        def worker(ctx: TaskContext) -> None:
            # Qemu.pm::clone_vm `$lock_source_vm`: shared flock for a stopped source, exclusive for a
            # running one; `$lock_target_vm`: exclusive on newid; 1 s each, both inside the worker (§3.4)
            try:
                with ctx.config_lock(vmid, shared=not running, timeout=1), ctx.config_lock(newid, timeout=1):
                    self._clone_work(ctx, node, vmid, newid, target, full, storage_id, name, description, bwlimit,
                                     running, snapname)
            finally:
                with self.mu:
                    self._reserved.discard(newid)

        self._reserved.add(newid)
        return self.engine.start(node, "qmclone", str(vmid), caller.userid, worker,
                                 interrupt_message="clone failed: interrupted by signal")

    def _clone_work(self, ctx: TaskContext, node: str, vmid: int, newid: int, target: str | None, full: bool,
                    storage_id: str | None, name: str, description: str | None, bwlimit: int | None,
                    running: bool, snapname: str | None = None) -> None:
        ctx.log(f"creating a clone of VM {vmid} with ID {newid}")
        with self.mu:
            self._reserved.discard(newid)
            if newid in self.state.vms or newid in self.state.containers:
                # pmxcfs refuses the temp config with EEXIST (memdb.c vmlist_different_vm_exists: the
                # vmlist entry has another node or another type, a container included)
                raise TaskError(f"close (rename) atomic file '/etc/pve/nodes/{node}/qemu-server/{newid}.conf' "
                                "failed: File exists")
            src = self.load_config(node, vmid)
            if src.pending:
                ctx.log(f"found pending changes for '{','.join(sorted(src.pending))}', discarding for clone")
            # Qemu.pm::clone_vm writes "# qmclone temporary file\nlock: clone\n" first; parse_vm_config
            # reads `#` lines as the description
            newvm = VM(vmid=newid, node=node, config={"lock": "clone", "description": " qmclone temporary file\n"},
                       created_at=time.time(), status_changed_at=time.time())
            self.state.vms[newid] = newvm
            self.changed()
            from .snapshots import linked_clone_source

            src_conf = dict(linked_clone_source(src, snapname))
            drives = self.vm_drives(src, src_conf)
            # `$newconf`: every other key (new MACs, smbios uuid, vmgenid, name), written with each disk
            newconf = self._clone_config(src_conf, {k for k, _, _ in drives}, name, description)
        allocated: list[tuple[str, str]] = []     # (node, volid) to free on failure
        new_disks: dict[str, str] = {}
        try:
            for key, volid, opts in drives:
                if key.startswith("unused"):
                    continue
                ctx.check_interrupt()
                with self.mu:
                    src_storage, src_vol = self.storage_volume(volid, node)
                    size = src_vol.size if src_vol else parse_size(opts.get("size", "0"))
                    is_ci = "cloudinit" in volid
                    dst_sid = storage_id if (full and storage_id and not is_ci) else src_storage.sid
                    if is_ci and storage_id:
                        dst_sid = storage_id
                    dst_storage = self.state.storages[dst_sid]
                    new_volid = self.next_disk_name(dst_storage, node, newid, "cloudinit" if is_ci else "disk") \
                        if not is_ci else f"{dst_sid}:vm-{newid}-cloudinit"
                    if is_ci and self.state.volumes.get(volume_key(dst_storage, node, new_volid)):
                        new_volid = self.next_disk_name(dst_storage, node, newid)
                    owner_node = None if dst_storage.shared else node
                    linked = not full and not is_ci
                    self.state.volumes[volume_key(dst_storage, node, new_volid)] = Volume(
                        new_volid, size, newid, owner_node, base=volid if linked else None)
                    allocated.append((node, new_volid))
                ctx.log(f"create {'linked' if linked else 'full'} clone of drive {key} ({volid})")
                if full or is_ci:
                    ctx.log(f"allocated target volume '{new_volid}'")
                if dst_storage.plugintype == "lvmthin":
                    ctx.log(f'  Logical volume "{new_volid.split(":", 1)[1]}" created.')
                if linked:
                    ctx.sleep(0.6)
                    new_disks[key] = f"{dst_sid}:{volid.split(':', 1)[1]}/{new_volid.split(':', 1)[1]}" \
                        if dst_storage.plugintype == "dir" else new_volid
                elif is_ci:
                    ctx.sleep(0.2)
                    new_disks[key] = new_volid
                else:
                    # QemuServer.pm::clone_disk: qemu-img reads a snapshot, drive-mirror only the live disk
                    self._copy_progress(ctx, key, size, running and not snapname, bwlimit, dst_storage, node)
                    new_disks[key] = new_volid
                # the new config is rewritten after each disk, still with `lock: clone` (§4.3)
                with self.mu:
                    _, src_opts = parse_prop(str(src_conf[key]))
                    newconf[key] = ",".join([new_disks[key]] + [f"{k}={v}" for k, v in src_opts.items()])
                    self.state.vms[newid].config = {"lock": "clone", **newconf}
                    self.changed()
        except (TaskError, LockTimeout, Interrupted) as exc:
            with self.mu:
                for vnode, v in allocated:
                    st = self.state.storages[v.split(":", 1)[0]]
                    self.state.volumes.pop(volume_key(st, vnode, v), None)
                self.state.vms.pop(newid, None)
                self.changed()
            msg = str(exc)
            raise TaskError(msg if msg.startswith("clone failed") else f"clone failed: {msg}") from None
        with self.mu:
            vm = self.state.vms[newid]
            vm.config = newconf          # `delete $newconf->{lock}`, the final write
            vm.guest_ip = f"10.20.{(newid // 250) % 250}.{newid % 250 + 2}"
            if target is not None:
                vm.node = target      # the config is moved to the target node at the end (§4.3)
                for key_ in [k for k, v in self.state.volumes.items() if v.vmid == newid and v.node == node]:
                    v = self.state.volumes.pop(key_)
                    v.node = target
                    self.state.volumes[f"{target}/{v.volid}"] = v
            self.changed()

    def _clone_config(self, src_conf: dict[str, Any], drive_keys: set[str], name: str,
                      description: str | None) -> dict[str, Any]:
        """Qemu.pm::clone_vm `$newconf` without the disks still to clone: snapshot keys, unused disks
        and `template` dropped, new MACs, a new smbios uuid and vmgenid, the name (§4.3)."""
        conf: dict[str, Any] = {}
        for key, value in src_conf.items():
            if key in CLONE_SKIP or key.startswith("unused") or key in drive_keys:
                continue
            conf[key] = value
        conf["name"] = name
        if description is not None:
            conf["description"] = description
        for key in list(conf):
            if key.startswith("net") and key[3:].isdigit():
                model, opts = parse_prop(str(conf[key]))
                model_name = next((m for m in NET_MODELS if m in opts), model or "virtio")
                opts.pop(model_name, None)
                conf[key] = ",".join([f"{model_name}={random_mac(self.rng)}"] + [f"{k}={v}" for k, v in opts.items()])
        if "smbios1" in conf:
            _, opts = parse_prop(str(conf["smbios1"]))
            opts["uuid"] = _uuid4(self.rng)
            conf["smbios1"] = ",".join(f"{k}={v}" for k, v in opts.items())
        if "vmgenid" in conf:
            conf["vmgenid"] = _uuid4(self.rng)
        return conf

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

    # ------------------------------------------------------------------ config
    def vm_config_update(self, node: str, vmid: int, caller: Caller, params: dict[str, Any], *,
                         sync: bool) -> str | None:
        # qemu-server API2/Qemu.pm `$update_vm_api` (row 6, §7.2–7.5)
        if params.get("skiplock") and not caller.is_root:
            raise param_fail({"skiplock": "Only root may use this option."})
        changes = {k: config_value(k, v) for k, v in params.items() if k not in CONFIG_META}
        deletes = [d for d in str(params.get("delete", "")).replace(" ", ",").split(",") if d]
        deletes = ["ide2" if d == "cdrom" else d for d in deletes]
        reverts = [r for r in str(params.get("revert", "")).replace(" ", ",").split(",") if r]
        if not changes and not deletes and not reverts:
            raise ApiFail("no options specified")
        for opt in deletes:
            if opt in changes:
                raise param_fail({"delete": f"you can't use '-{opt}' and -delete {opt}' at the same time"})
        for opt in reverts:
            if opt in changes:
                raise param_fail({"revert": f"you can't use '-{opt}' and -revert {opt}' at the same time"})
        for key in set(changes) | set(deletes):
            if key == "lock" and not caller.is_root:
                raise ApiFail("only root can set 'lock' config", 403)
            self.check(caller.token, f"/vms/{vmid}", config_privilege(key))
        if "sshkeys" in changes:
            keys = urllib.parse.unquote(str(changes["sshkeys"]))
            if not _valid_ssh_keys(keys):
                raise ApiFail("SSH public key validation error")
        self.require_quorum()

        def load_and_check() -> VM:
            vm = self.load_config(node, vmid)
            digest = params.get("digest")
            if digest and digest != self.digest(vm):
                raise ApiFail("checksum mismatch (file change by other user?)")
            if not params.get("skiplock"):
                self.check_lock(vm)
            return vm

        with self.mu:
            load_and_check()

        def apply(log: list[str] | None) -> None:
            with self.mu:
                vm = load_and_check()
                summary = " ".join(f"-{k} {'<hidden>' if k == 'cipassword' else v}" for k, v in changes.items())
                if deletes:
                    summary += f" -delete {','.join(deletes)}"
                if log is not None:
                    log.append(f"update VM {vmid}: {summary.strip()}")
                self._apply_changes(vm, changes, deletes, reverts)
                self.changed()

        if sync:
            try:
                with self.locks.hold(node, vmid, timeout=10):
                    apply(None)
            except LockTimeout as exc:
                raise ApiFail(str(exc)) from None
            return None

        def worker(ctx: TaskContext) -> None:
            with ctx.config_lock(vmid, timeout=10):
                lines: list[str] = []
                try:
                    apply(lines)
                except ApiFail as exc:
                    raise TaskError(exc.message) from None
                for line in lines:
                    ctx.log(line)

        return self.engine.start(node, "qmconfig", str(vmid), caller.userid, worker)

    def _apply_changes(self, vm: VM, changes: dict[str, Any], deletes: list[str], reverts: list[str]) -> None:
        for key in reverts:
            vm.pending.pop(key, None)
            if key in vm.pending_delete:
                vm.pending_delete.remove(key)
        for key, value in list(changes.items()):
            if key.startswith("net") and key[3:].isdigit():
                changes[key] = self._net_with_mac(str(value))
        running = vm.status == "running"
        hotplug = str(vm.config.get("hotplug", "network,disk,usb"))
        features = {"network", "disk", "usb"} if hotplug == "1" else set(hotplug.split(","))
        for key, value in changes.items():
            if key == "cipassword":
                vm.config[key] = value        # written straight into the main config (§7.5)
                continue
            if not running or self._hotpluggable(key, value, vm, features):
                vm.config[key] = value
                vm.pending.pop(key, None)
            else:
                vm.pending[key] = value
        for key in deletes:
            if key not in vm.config and key not in vm.pending:
                continue      # only a warning: "cannot delete '<opt>' - not set in current configuration!"
            if not running or key in FAST_PLUG or is_cloudinit_key(key):
                vm.config.pop(key, None)
                vm.pending.pop(key, None)
            elif key not in vm.pending_delete:
                vm.pending_delete.append(key)

    @staticmethod
    def _hotpluggable(key: str, value: Any, vm: VM, features: set[str]) -> bool:
        # QemuServer.pm::vmconfig_hotplug_pending (pve-semantics §7.4)
        if key in FAST_PLUG or is_cloudinit_key(key) or key in LIVE_OPTIONS:
            return True
        if key.startswith("net") and key[3:].isdigit():
            return "network" in features
        if key == "memory":
            return "memory" in features
        if key == "vcpus":
            return "cpu" in features
        if key == "balloon":
            return (int(vm.config.get("balloon", 1) or 0) == 0) == (int(value or 0) == 0)
        if is_drive_key(key) and not key.startswith(("efidisk", "tpmstate", "ide", "sata")):
            return "disk" in features
        return False

    def _net_with_mac(self, value: str) -> str:
        # QemuServer.pm add_random_macs; printed model=MAC first, then the other keys
        first, opts = parse_prop(value)
        model = next((m for m in NET_MODELS if m in opts), None)
        if model is None:
            model = first if first in NET_MODELS else opts.pop("model", "virtio")
            mac = opts.pop("macaddr", None) or random_mac(self.rng)
        else:
            mac = opts.pop(model)
        return ",".join([f"{model}={mac.upper()}"] + [f"{k}={v}" for k, v in sorted(opts.items())])

    # ------------------------------------------------------------------ resize
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

    # ------------------------------------------------------------------ migrate
    def migrate_precondition(self, node: str, vmid: int, caller: Caller) -> dict[str, Any]:
        # qemu-server API2/Qemu.pm::migrate_vm_precondition (row 9, §9.1, C9)
        self.check(caller.token, f"/vms/{vmid}", "VM.Migrate")
        self.require_quorum()
        vm = self.load_config(node, vmid)
        self.check_lock(vm)
        not_allowed: dict[str, dict[str, Any]] = {}
        allowed = []
        for n in self.state.nodes:
            if n == node:
                continue
            missing = sorted({volid.split(":", 1)[0] for _, volid, _ in self.vm_drives(vm)
                              if not self._storage_on(volid.split(":", 1)[0], n)})
            if missing:
                not_allowed[n] = {"unavailable_storages": missing}
            else:
                not_allowed[n] = {}
                allowed.append(n)
        local_disks = []
        for key, volid, opts in self.vm_drives(vm):
            storage, vol = self.storage_volume(volid, node)
            if storage.shared:
                continue
            is_ci = "cloudinit" in volid
            local_disks.append({"volid": volid, "size": vol.size if vol else 0, "cdrom": 0,
                                "is_unused": int(key.startswith("unused")), "is_attached": 1, "drivename": key,
                                "replicate": 1, "shared": 0, "is_cloudinit": int(is_ci), "is_vmstate": 0,
                                "is_tpmstate": 0, "referenced_in_config": 1})
        from .devices import local_resources

        from .snapshots import precondition_snapshot_disks

        local_disks = precondition_snapshot_disks(self, vm, node, local_disks)
        return {"running": int(vm.status == "running"), "allowed_nodes": allowed,
                "not_allowed_nodes": not_allowed, "local_disks": local_disks,
                "local_resources": local_resources(vm.config, running=vm.status == "running"),
                "mapped-resources": [], "mapped-resource-info": {}, "has-dbus-vmstate": 1}

    def _storage_on(self, sid: str, node: str) -> bool:
        st = self.state.storages.get(sid)
        return st is not None and st.enabled and (st.nodes is None or node in st.nodes)

    def vm_migrate(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        # qemu-server API2/Qemu.pm::migrate_vm, QemuMigrate.pm (row 9, §9.2)
        target = params["target"]
        if target == node:
            raise param_fail({"target": "target is local node."})
        self.check(caller.token, f"/vms/{vmid}", "VM.Migrate")
        self.require_quorum()
        self.node(target)
        for opt in ("force", "migration_type", "migration_network"):
            if opt in params and not caller.is_root:
                raise param_fail({opt: "Only root may use this option."})
        vm = self.load_config(node, vmid)
        self.check_lock(vm)
        online = bool(params.get("online"))
        if vm.status == "running" and not online:
            raise ApiFail("can't migrate running VM without --online")
        for _, volid, _ in self.vm_drives(vm):
            sid = volid.split(":", 1)[0]
            if not self._storage_on(sid, target) and not params.get("targetstorage"):
                raise ApiFail(f"storage '{sid}' is not available on node '{target}'")
        if vm.status != "running":
            online = False   # "VM isn't running. Doing offline migration instead." goes to the daemon log
        with_local = bool(params.get("with-local-disks"))
        bwlimit = params.get("bwlimit")

        def worker(ctx: TaskContext) -> None:
            self._migrate_work(ctx, node, vmid, target, online, with_local, bwlimit)

        return self.engine.start(node, "qmigrate", str(vmid), caller.userid, worker,
                                 interrupt_message="migration aborted")

    def _migrate_work(self, ctx: TaskContext, node: str, vmid: int, target: str, online: bool, with_local: bool,
                      bwlimit: int | None) -> None:
        started = time.time()

        def log(line: str) -> None:   # AbstractMigrate.pm::log: every line carries a timestamp (§2.2)
            ctx.log(time.strftime("%Y-%m-%d %H:%M:%S ") + line)

        def duration() -> str:
            secs = int((time.time() - started) / (self.time_scale or 1))
            return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"

        def abort(err: str) -> None:
            log(f"ERROR: migration aborted (duration {duration()}): {err}")
            raise TaskError("migration aborted")

        tnode = self.state.nodes[target]
        with ctx.config_lock(vmid, timeout=10):
            ctx.sleep(0.5)
            if not tnode.online:
                # prepare: the ssh check to the target fails (QemuMigrate.pm::prepare, C9)
                ctx.sleep(2.5)
                abort("Can't connect to destination address using public key")
            with self.mu:
                vm = self._worker_config(node, vmid)
                if vm.config.get("lock"):
                    raise TaskError(f"VM is locked ({vm.config['lock']})")
                if online and vm.status != "running":
                    online = False
                from .devices import local_resources

                # QemuMigrate.pm::prepare, before phase1 (`force`, root@pam only, would let a stopped one go)
                blocking = local_resources(vm.config, running=online)
            if blocking:
                abort(f"can't migrate VM which uses local devices: {', '.join(blocking)}")
            with self.mu:
                local = [(k, v, o) for k, v, o in self.vm_drives(vm)
                         if not self.state.storages[v.split(":", 1)[0]].shared]
                from .snapshots import migration_scan

                snapshot_only, scan_errors = migration_scan(self, vm, [v for _, v, _ in local], online)
                mem = memory_mib(vm.config) * MIB
                vm.config["lock"] = "migrate"
                self.changed()
            log(f"starting migration of VM {vmid} to node '{target}' ({tnode.ip})")
            try:
                for key, volid, _ in local:
                    log(f"found local disk '{volid}' ({'attached' if not key.startswith('unused') else 'unused'})")
                for volid in snapshot_only:
                    log(f"found local disk '{volid}' (referenced by snapshot(s))")
                if online and local and not with_local:
                    for key, volid, _ in local:
                        scan_errors[volid] = "can't live migrate attached local disks without with-local-disks option"
                if scan_errors:
                    for volid, err in scan_errors.items():
                        log(f"can't migrate local disk '{volid}': {err}")
                    log("ERROR: Problem found while scanning volumes - can't migrate VM - check log")
                    log("aborting phase 1 - cleanup resources")
                    abort("Problem found while scanning volumes - can't migrate VM - check log")
                link = 1100 * MIB                 # the migration network (10 GbE), per copy
                rate = link if not bwlimit else min(link, bwlimit * 1024)
                if local and not online:
                    log("copying local disk images")
                    for key, volid, opts in local:
                        with self.mu:
                            _, vol = self.storage_volume(volid, node)
                        size = vol.size if vol else parse_size(opts.get("size", "0"))
                        # storage_migrate: the target node's storage shares its throughput with other copies
                        self._disk_copy(ctx, key, self.state.storages[volid.split(":", 1)[0]], target, size,
                                        bwlimit=bwlimit, min_secs=0.3, steps=1, link=link)
                        log(f"volume '{volid}' is '{volid}' on the target")
                if online:
                    log(f"starting VM {vmid} on remote node '{target}'")
                    ctx.sleep(1.5)
                    log("start remote tunnel")
                    log("ssh tunnel ver 1")
                    if local:
                        log("starting storage migration")
                        for key, volid, opts in local:
                            with self.mu:
                                _, vol = self.storage_volume(volid, node)
                            size = vol.size if vol else 0
                            log(f"{key}: start migration to nbd:unix:/run/qemu-server/{vmid}_nbd.migrate:exportname=drive-{key}")
                            log(f"drive mirror is starting for drive-{key}")

                            def step(i: int, elapsed: float, key: str = key, size: int = size) -> None:
                                pct = 25 * i
                                log(f"drive-{key}: transferred {render_bytes(size * pct // 100)} of "
                                    f"{render_bytes(size)} ({pct:.2f}%) in {render_duration(elapsed)}"
                                    + (", ready" if pct == 100 else ""))

                            # drive-mirror over NBD writes into the target node's storage
                            self._disk_copy(ctx, key, self.state.storages[volid.split(":", 1)[0]], target, size,
                                            bwlimit=bwlimit, min_secs=0.0, steps=4, on_step=step, link=link)
                        log("all 'mirror' jobs are ready")
                        log("switching mirror jobs to actively synced mode")
                    log(f"starting online/live migration on unix:/run/qemu-server/{vmid}.migrate")
                    log("set migration capabilities")
                    if bwlimit:
                        log(f"migration speed limit: {render_bytes(bwlimit * 1024)}/s")
                    log("migration downtime limit: 100 ms")
                    log("migration cachesize: 256.0 MiB")
                    log("set migration parameters")
                    log(f"start migrate command to unix:/run/qemu-server/{vmid}.migrate")
                    used = int(mem * 0.6)
                    secs = max(used / rate, 1.0)
                    steps = max(2, min(20, int(secs)))
                    for i in range(1, steps + 1):
                        ctx.sleep(secs / steps)
                        log(f"migration active, transferred {render_bytes(used * i // steps)} of {render_bytes(mem)} "
                            f"VM-state, {render_bytes(rate)}/s")
                    log(f"average migration speed: {render_bytes(rate)}/s - downtime 42 ms")
                    log(f"migration completed, transferred {render_bytes(used)} VM-state")
                    log("migration status: completed")
                    if local:
                        for key, _, _ in local:
                            log(f"drive-{key}: Completing block job...")
                            log(f"drive-{key}: Completed successfully.")
                            log(f"drive-{key}: mirror-job finished")
                        log("stopping NBD storage migration server on target.")
                else:
                    ctx.sleep(0.8)
            except Interrupted:
                with self.mu:
                    vm = self.state.vms.get(vmid)
                    if vm is not None:
                        vm.config.pop("lock", None)
                        self.changed()
                log("ERROR: interrupted by signal")
                abort("interrupted by signal")
            except TaskError:
                with self.mu:
                    vm = self.state.vms.get(vmid)
                    if vm is not None:
                        vm.config.pop("lock", None)   # phase1_cleanup removes the lock again
                        self.changed()
                raise
            with self.mu:
                vm = self.state.vms[vmid]
                # phase3_cleanup: config moved to the target, lock cleared there
                for key_ in [k for k, v in self.state.volumes.items() if v.vmid == vmid and v.node == node]:
                    v = self.state.volumes.pop(key_)
                    v.node = target
                    self.state.volumes[f"{target}/{v.volid}"] = v
                vm.node = target
                vm.config.pop("lock", None)
                if online:
                    tnode.next_pid += 11
                    vm.pid = tnode.next_pid
                self.changed()
            log(f"migration finished successfully (duration {duration()})")

    # ------------------------------------------------------------------ control hooks
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


def unknown_guest(kind: str, vmid: int, node: str, config: dict[str, Any]) -> dict[str, Any]:
    """A guest's entry without RRD data (API2Tools.pm::extract_vm_stats: status `unknown`, no name, no
    stats); Cluster.pm::resources adds `lock` and `tags` read from the config."""
    entry: dict[str, Any] = {"id": f"{kind}/{vmid}", "type": kind, "vmid": vmid, "node": node, "status": "unknown"}
    for key in ("lock", "tags"):
        if config.get(key):
            entry[key] = config[key]
    return entry


def _uuid4(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"


_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


def _valid_ssh_keys(text: str) -> bool:
    """pve-common Tools.pm::validate_ssh_public_keys runs `ssh-keygen -l` on each line; here: the key
    type is known and the blob is base64 that starts with the same type (what ssh-keygen checks first)."""
    import base64
    import binascii
    import struct

    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        idx = next((i for i, p in enumerate(parts) if p in _KEY_TYPES), None)
        if idx is None or idx + 1 >= len(parts):
            return False
        try:
            blob = base64.b64decode(parts[idx + 1], validate=True)
            (n,) = struct.unpack(">I", blob[:4])
            if blob[4:4 + n].decode() != parts[idx]:
                return False
        except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
            return False
    return True
