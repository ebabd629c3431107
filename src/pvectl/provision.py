"""Provisioning workflows: allocate a VMID, place, clone from a template, configure, grow, start, wait for IP.

    from pvectl.provision import CloneSpec, provision
    from pvectl.tasks import Deadline
    from pvectl.writes import Writer

    with pvectl.Cluster.from_config() as pve:
        res = provision(pve, CloneSpec("ubuntu-24.04-cloud", "web-1", cores=4, memory="4G", start=True,
                                       wait_ip=True),
                        deadline=Deadline(600), writer=Writer(pve, "provision web-1"))
        print(res.vmid, res.node, res.ip)

One workflow per VM (seed "VM Creation from Template (Clone)" + "Post-clone configuration"):

1. plan (reads only): resolve the template (VMID, name or tag), refuse a name already used by a VM that
   was not cloned from that template, read the template's config, choose node and storage, allocate a
   VMID from `vmid_ranges.vms` using `/cluster/resources` (`/cluster/nextid` reserves nothing:
   pve-semantics §10.3).
2. clone: `POST /nodes/{template node}/qemu/{template}/clone` (`full=1` unless `linked`), with a
   `description` line that marks the VM as made from this template (what makes re-runs idempotent).
   `already exists` (SYNC 500 on the same node, `File exists` in the task for another node: §4.2) takes
   the next free VMID; a lock timeout (`can't lock file ... got timeout`: §3.3/§3.4) is retried with a
   backoff. After an uncertain write the state is re-read, and a resend reuses the same VMID, so a VM is
   never created twice (Proxmox refuses the second with `already exists`).
3. configure: ONE `PUT /config` (cores, memory, net0, ipconfig0, ciuser, sshkeys, tags) with the digest
   read after the clone.
4. grow the boot disk (`PUT /resize`, a task since qemu-server 8.0.2: §8), start, and poll the guest
   agent for an address (§13).

A failure after the VM exists reports it (VMID, node, state, the steps done) with the hint to delete or
finish it; `cleanup_on_failure` deletes it. A failed clone task leaves nothing behind (Proxmox frees the
volumes and unlinks the config: §4.4), which is verified by a re-read.

Every step reports `ProvisionEvent`s to `on_event` (CLI progress, MCP notifications).
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import (
    AlreadyExists,
    ApiError,
    GuardRefused,
    Locked,
    NodeUnreachable,
    NotFound,
    PvectlError,
    TaskFailed,
    TaskTimeout,
    UsageError,
)
from .tasks import Deadline, Progress, Task
from .units import disk_size_param, parse_memory, parse_prop, size_bytes
from .vms import split_tags
from .writes import Write, Writer

if TYPE_CHECKING:
    from .cluster import Cluster
    from .vms import VmSummary

# The description line written by the clone POST; a later run finds the VM by name and this line.
MARKER = "pvectl: cloned from template {vmid} ({name})"
_MARKER_RE = re.compile(r"^pvectl: cloned from template (\d+)\b", re.M)
# pve-common JSONSchema.pm `dns-name` (the clone's `name` format: pve-semantics §4.1)
_DNS_NAME_RE = re.compile(r"^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$")
# pve-common JSONSchema.pm::pve_verify_urlencoded (pve-semantics §7.5)
_URLENCODED_RE = re.compile(r"^[-%a-zA-Z0-9_.!~*'()]*$")
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
_NET_MODELS = ("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
               "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")
_DISK_RE = re.compile(r"^(scsi|virtio|sata|ide|efidisk|tpmstate)\d+$")
_BOOT_DISKS = ("scsi0", "virtio0", "sata0", "ide0")
CLONE_ATTEMPTS = 5           # VMIDs tried after `already exists`
LOCK_ATTEMPTS = 4            # clone attempts after a lock timeout (pain point #2: server-side lock waits)
IP_WAIT_WITHOUT_DEADLINE = 300.0

EventCallback = Callable[["ProvisionEvent"], None]


# ------------------------------------------------------------------------------------------------ types


@dataclass(frozen=True, slots=True)
class CloneSpec:
    """What to make. `memory` takes MiB (`4096`) or a unit (`4G`, `4096M`); `ip` is `dhcp` or
    `CIDR[,gw=IP]` (IPv4 or IPv6); `ssh_keys_file` defaults to `cloudinit.ssh_keys_file`, `ciuser` to
    `cloudinit.default_user`, `bridge` to `defaults.network_bridge`, `storage` (full clones) to
    `defaults.storage`. `target`: a node name, `auto`, or None (the template's node)."""

    template: str | int
    name: str
    vmid: int | None = None
    target: str | None = None
    storage: str | None = None
    linked: bool = False
    cores: int | None = None
    memory: int | str | None = None
    bridge: str | None = None
    ip: str | None = None
    ciuser: str | None = None
    ssh_keys_file: str | None = None
    disk: str | None = None              # the disk to grow; default: the boot disk (scsi0, virtio0, ...)
    disk_size: str | None = None         # `+10G` (grow by) or `50G` (absolute, grow only)
    start: bool = False
    wait_ip: bool = False                # implies start
    cleanup_on_failure: bool = False


@dataclass(frozen=True, slots=True)
class ProvisionEvent:
    name: str
    vmid: int | None
    step: str                 # plan | clone | config | resize | start | ip | cleanup | done
    state: str                # start | progress | done | failed | warning | info
    message: str
    fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vmid": self.vmid, "step": self.step, "state": self.state,
                "message": self.message, "fraction": self.fraction}


@dataclass(slots=True)
class ProvisionResult:
    """The outcome for one VM. `result`: created | exists | planned | failed. `state` is the VM's
    power state as last seen (`absent` when nothing was left)."""

    name: str
    template: int | None = None
    vmid: int | None = None
    node: str | None = None
    result: str = "failed"
    state: str | None = None
    ip: str | None = None
    changed: bool = False
    steps: list[str] = field(default_factory=list)
    upids: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: PvectlError | None = None

    @property
    def ok(self) -> bool:
        return self.result != "failed"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"vmid": self.vmid, "name": self.name, "node": self.node, "template": self.template,
                             "result": self.result, "status": self.state, "ip": self.ip, "changed": self.changed,
                             "steps": list(self.steps), "upids": dict(self.upids), "warnings": list(self.warnings)}
        if self.error is not None:
            d["error"] = {"type": self.error.type, "message": self.error.message, "hint": self.error.hint}
        return d


class ProvisionFailed(PvectlError):
    """A workflow step failed. `result` says what exists now (VMID, node, state, steps done); the exit
    code is the cause's (1 API/task error, 4 deadline, 5 node unreachable)."""

    def __init__(self, result: ProvisionResult, cause: PvectlError, message: str, hint: str | None) -> None:
        super().__init__(message, hint=hint, retryable=cause.retryable)
        self.result = result
        self.cause = cause
        self.exit_code = cause.exit_code  # type: ignore[misc]
        self.upid = getattr(cause, "upid", None)
        self.node = result.node

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["error"]["cause"] = self.cause.type
        d["error"]["vm"] = {k: v for k, v in self.result.to_dict().items() if k != "error"}
        return d


# ------------------------------------------------------------------------------------------------ parsing


def ipconfig_value(ip: str) -> str:
    """`dhcp` -> `ip=dhcp`; `10.0.0.5/24,gw=10.0.0.1` -> `ip=10.0.0.5/24,gw=10.0.0.1`; an IPv6 CIDR goes
    to `ip6`/`gw6` (format `pve-qm-ipconfig`: pve-semantics §7.5). Already-formed values pass through."""
    text = ip.strip()
    if text.lower() == "dhcp":
        return "ip=dhcp"
    if text.startswith(("ip=", "ip6=")):
        return text
    cidr, _, rest = text.partition(",")
    gw = None
    if rest:
        k, _, v = rest.partition("=")
        if k.strip() not in ("gw", "gw6") or not v:
            raise UsageError(f"invalid --ip '{ip}'", hint="use dhcp or CIDR[,gw=IP], e.g. 10.0.0.5/24,gw=10.0.0.1")
        gw = v.strip()
    try:
        iface = ipaddress.ip_interface(cidr.strip())
        if "/" not in cidr:
            raise ValueError("no prefix length")
        if gw is not None and ipaddress.ip_address(gw).version != iface.version:
            raise ValueError("gateway of another address family")
    except ValueError as exc:
        raise UsageError(f"invalid --ip '{ip}': {exc}",
                         hint="use dhcp or CIDR[,gw=IP], e.g. 10.0.0.5/24,gw=10.0.0.1") from None
    if iface.version == 6:
        return f"ip6={iface.with_prefixlen}" + (f",gw6={gw}" if gw else "")
    return f"ip={iface.with_prefixlen}" + (f",gw={gw}" if gw else "")


def encode_sshkeys(text: str) -> str:
    """The `sshkeys` value as Proxmox stores it: the keys (one per line) percent-encoded with nothing
    left unescaped, so it passes `^[-%a-zA-Z0-9_.!~*'()]*$` (pve-semantics §7.5; `quote_plus` output is
    refused: proxmoxer #153). Input that is already encoded that way is decoded first, so it is never
    encoded twice. Blank lines and comments are dropped; lines are joined with a newline."""
    raw = text.strip()
    if raw and "%" in raw and _URLENCODED_RE.match(raw):
        raw = urllib.parse.unquote(raw)
    lines = [ln.strip() for ln in raw.splitlines()]
    return urllib.parse.quote("\n".join(ln for ln in lines if ln and not ln.startswith("#")), safe="")


def read_ssh_keys(path: str) -> str:
    """The public keys in `path`, checked locally (a private key or garbage is refused before any write)."""
    p = os.path.expanduser(path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read the SSH keys file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the SSH keys file {path} is not text") from None
    if "PRIVATE KEY" in text:
        raise UsageError(f"{path} holds a PRIVATE key", hint="give the public key file (e.g. ~/.ssh/id_ed25519.pub)")
    keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not keys:
        raise UsageError(f"the SSH keys file {path} contains no key")
    for ln in keys:
        # pve-common Tools.pm::validate_ssh_public_keys runs `ssh-keygen -l` on every line
        if not any(part in _KEY_TYPES for part in ln.split()):
            raise UsageError(f"{path}: not an SSH public key line: {ln[:40]}...",
                             hint="each line must look like: ssh-ed25519 AAAA... comment")
    return "\n".join(keys)


def net_with_bridge(current: str | None, bridge: str) -> str:
    """`net0` with only the bridge replaced: the model, the MAC Proxmox generated for the clone (§4.3)
    and every other option (firewall, tag, ...) are kept. Without a NIC: `virtio,bridge=B`."""
    if not current:
        return f"virtio,bridge={bridge}"
    first, opts = parse_prop(current)
    parts = [first] if first else []
    parts += [f"{k}={bridge if k == 'bridge' else v}" for k, v in opts.items()]
    if "bridge" not in opts:
        parts.append(f"bridge={bridge}")
    return ",".join(parts)


def net_bridge(value: str | None) -> str | None:
    return parse_prop(value)[1].get("bridge") if value else None


def _volume_storages(config: dict[str, Any]) -> dict[str, str]:
    """drive key -> storage id of every volume (CD-ROM ISOs included; `none` and host paths skipped):
    a clone to another node needs every one of them on shared storage (§4.2)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if not _DISK_RE.match(key):
            continue
        volid, _ = parse_prop(str(value))
        if volid and ":" in volid and not volid.startswith("/"):
            out[key] = volid.split(":", 1)[0]
    return out


def boot_disk(config: dict[str, Any]) -> str | None:
    for key in _BOOT_DISKS:
        value = config.get(key)
        if value and parse_prop(str(value))[1].get("media") != "cdrom" and "cloudinit" not in str(value):
            return key
    return None


def pick_ip(interfaces: Any) -> tuple[str | None, str | None]:
    """(first non-loopback, non-link-local IPv4, first global IPv6) from a guest agent
    `network-get-interfaces` answer. Interfaces without `ip-addresses` (DHCP still running) are skipped
    (pain point #8)."""
    v4 = v6 = None
    for iface in interfaces if isinstance(interfaces, list) else []:
        if not isinstance(iface, dict) or iface.get("name") == "lo":
            continue
        for a in iface.get("ip-addresses") or []:
            try:
                addr = ipaddress.ip_address(str(a.get("ip-address", "")).split("%")[0])
            except ValueError:
                continue
            if addr.is_loopback or addr.is_link_local or addr.is_unspecified:
                continue
            if addr.version == 4 and v4 is None:
                v4 = str(addr)
            elif addr.version == 6 and v6 is None:
                v6 = str(addr)
    return v4, v6


# ------------------------------------------------------------------------------------------------ VMIDs


class VmidAllocator:
    """Hands out VMIDs inside one process without ever giving one out twice: the lowest id in the range
    that `/cluster/resources` does not list and that this process has not handed out (pain point #3;
    nothing on the server reserves an id, so a clone that hits `already exists` asks for the next one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._given: set[int] = set()

    def allocate(self, used: set[int], start: int, end: int) -> int:
        with self._lock:
            for vmid in range(start, end + 1):
                if vmid not in used and vmid not in self._given:
                    self._given.add(vmid)
                    return vmid
        raise GuardRefused(f"no free VMID left in the range {start}-{end}",
                           "widen vmid_ranges.vms in cluster-config.yaml or delete unused VMs")

    def claim(self, vmid: int) -> bool:
        with self._lock:
            if vmid in self._given:
                return False
            self._given.add(vmid)
            return True

    def given(self) -> set[int]:
        with self._lock:
            return set(self._given)


_ALLOCATORS: weakref.WeakKeyDictionary[Any, VmidAllocator] = weakref.WeakKeyDictionary()
_ALLOCATORS_LOCK = threading.Lock()


def allocator_for(cluster: Cluster) -> VmidAllocator:
    """One allocator per Cluster object, shared by every thread that provisions through it."""
    with _ALLOCATORS_LOCK:
        a = _ALLOCATORS.get(cluster)
        if a is None:
            a = _ALLOCATORS[cluster] = VmidAllocator()
        return a


# ------------------------------------------------------------------------------------------------ limits


class _Limits:
    """Bounded concurrency for bulk work: clone tasks per node and per target storage (pain point #2:
    the storage lock is taken per allocation with a 10 s timeout)."""

    def __init__(self, max_per_node: int, max_per_storage: int) -> None:
        self.max_per_node = max(1, max_per_node)
        self.max_per_storage = max(1, max_per_storage)
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = {}

    def sem(self, key: str, n: int) -> threading.BoundedSemaphore:
        with self._lock:
            s = self._sems.get(key)
            if s is None:
                s = self._sems[key] = threading.BoundedSemaphore(n)
            return s


class _LimitedTransport:
    """Keeps at most `per_node` requests in flight per node from this process (pveproxy and pvedaemon
    run 3 workers per node: pve-semantics C14). Everything else is the wrapped Transport's."""

    def __init__(self, inner: Any, per_node: int = 3) -> None:
        self._inner = inner
        self._per_node = per_node
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = {}

    def _sem(self, node: str | None) -> threading.BoundedSemaphore:
        key = node or self._inner.nodes[0].name
        with self._lock:
            s = self._sems.get(key)
            if s is None:
                s = self._sems[key] = threading.BoundedSemaphore(self._per_node)
            return s

    def request(self, method: str, path: str, params: Any = None, *, node: str | None = None,
                raw: bool = False) -> Any:
        with self._sem(node):
            return self._inner.request(method, path, params, node=node, raw=raw)

    def get(self, path: str, params: Any = None, **kw: Any) -> Any:
        return self.request("GET", path, params, **kw)

    def post(self, path: str, params: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, params, **kw)

    def put(self, path: str, params: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, params, **kw)

    def delete(self, path: str, params: Any = None, **kw: Any) -> Any:
        return self.request("DELETE", path, params, **kw)

    def close(self) -> None:      # the wrapped transport belongs to the caller's Cluster
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# ------------------------------------------------------------------------------------------------ plan


@dataclass(slots=True)
class _Plan:
    spec: CloneSpec
    template: VmSummary
    template_config: dict[str, Any]
    node: str                        # where the new VM ends up
    full: bool
    storage: str | None              # target storage of a full clone (None: linked, keeps the template's)
    vmid: int
    explicit_vmid: bool
    memory: int | None
    ssh_keys: str | None             # encoded
    ciuser: str | None
    bridge: str | None               # set net0 to this bridge (None: keep the template's NIC)
    ipconfig: str | None
    storage_shared: bool = False
    warnings: list[str] = field(default_factory=list)


class _Snapshot:
    """One read of `/cluster/resources` (all types), split by type."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.vms = [e for e in entries if e.get("type") in ("qemu", "lxc")]
        self.nodes = {e["node"]: e for e in entries if e.get("type") == "node"}
        self.storages: dict[tuple[str, str], dict[str, Any]] = {
            (e["node"], e["storage"]): e for e in entries if e.get("type") == "storage"}

    @property
    def used_vmids(self) -> set[int]:
        return {int(e["vmid"]) for e in self.vms if "vmid" in e}

    def vm(self, vmid: int) -> dict[str, Any] | None:
        return next((e for e in self.vms if int(e.get("vmid", -1)) == vmid), None)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.vms if e.get("type") == "qemu" and e.get("name") == name]

    def storage_on(self, node: str, sid: str) -> dict[str, Any] | None:
        return self.storages.get((node, sid))

    def shared(self, sid: str) -> bool:
        return any(int(e.get("shared", 0) or 0) for (_, s), e in self.storages.items() if s == sid)

    def online(self, node: str) -> bool:
        e = self.nodes.get(node)
        return e is not None and e.get("status") == "online"


class _Run:
    """State shared by the workflows of one `provision` / `provision_many` call."""

    def __init__(self, cluster: Cluster, writer: Writer, deadline: Deadline, on_event: EventCallback | None,
                 limits: _Limits | None = None) -> None:
        self.cluster = cluster
        self.t = cluster.transport
        self.writer = writer
        self.deadline = deadline
        self.on_event = on_event
        self.limits = limits
        self.allocator = allocator_for(cluster)
        self._templates: dict[str, VmSummary] = {}
        self._tconfigs: dict[int, dict[str, Any]] = {}
        self._bridges: dict[str, set[str] | None] = {}
        self._lock = threading.Lock()

    @property
    def dry_run(self) -> bool:
        return self.writer.dry_run

    def emit(self, name: str, vmid: int | None, step: str, state: str, message: str,
             fraction: float | None = None) -> None:
        if self.on_event is not None:
            self.on_event(ProvisionEvent(name, vmid, step, state, message, fraction))

    def snapshot(self) -> _Snapshot:
        return _Snapshot(self.t.get("/cluster/resources"))

    def template(self, ref: str | int) -> VmSummary:
        key = str(ref)
        with self._lock:
            hit = self._templates.get(key)
        if hit is None:
            hit = self.cluster.templates.resolve(ref)
            with self._lock:
                self._templates[key] = hit
        return hit

    def template_config(self, tpl: VmSummary) -> dict[str, Any]:
        with self._lock:
            hit = self._tconfigs.get(tpl.vmid)
        if hit is None:
            hit = self.t.get(f"/nodes/{tpl.node}/qemu/{tpl.vmid}/config", node=tpl.node)
            with self._lock:
                self._tconfigs[tpl.vmid] = hit
        return hit

    def bridges(self, node: str) -> set[str] | None:
        """Bridges on `node` (GET /nodes/{node}/network?type=any_bridge), None when not known."""
        with self._lock:
            if node in self._bridges:
                return self._bridges[node]
        found: set[str] | None
        try:
            found = {e["iface"] for e in self.t.get(f"/nodes/{node}/network", {"type": "any_bridge"}, node=node)
                     if e.get("iface")}
        except (ApiError, KeyError, TypeError):
            found = None        # an API without the endpoint, or no Sys.Audit: not checked
        with self._lock:
            self._bridges[node] = found
        return found


# ------------------------------------------------------------------------------------------------ API


def provision(cluster: Cluster, spec: CloneSpec, *, deadline: Deadline | float | None, writer: Writer,
              on_event: EventCallback | None = None) -> ProvisionResult:
    """Make one VM from a template (see the module docstring). Returns the result (`result` created,
    exists or planned); raises GuardRefused / UsageError / NotFound before anything is written, and
    ProvisionFailed (with `.result`) for a failure once the workflow has started."""
    run = _Run(cluster, writer, Deadline.of(deadline), on_event)
    snap = run.snapshot()
    plan_or_result = _plan(run, spec, snap)
    if isinstance(plan_or_result, ProvisionResult):
        return plan_or_result
    return _execute(run, plan_or_result)


def provision_many(cluster: Cluster, specs: Sequence[CloneSpec], *, deadline: Deadline | float | None,
                   writer: Writer, max_per_node: int = 2, max_per_storage: int = 2, max_workers: int = 8,
                   on_event: EventCallback | None = None) -> list[ProvisionResult]:
    """Make several VMs concurrently (bounded: `max_per_node` clone tasks per node, `max_per_storage`
    full clones per target storage, at most 3 requests in flight per node). Never raises for one VM's
    failure: each result carries its own `error`. Results are in the order of `specs`. Every VMID is
    allocated up front in spec order, so the plan (and a dry-run) is deterministic."""
    from .cluster import Cluster as _Cluster

    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"the same name is given more than once: {', '.join(dupes)}")
    limited = _Cluster(cluster.config, _LimitedTransport(cluster.transport))
    w = Writer(limited, writer.command, writer.dry_run, writer.out, writer.planned)
    run = _Run(limited, w, Deadline.of(deadline), on_event, _Limits(max_per_node, max_per_storage))
    run.allocator = allocator_for(cluster)
    snap = run.snapshot()
    results: list[ProvisionResult | None] = [None] * len(specs)
    plans: list[tuple[int, _Plan]] = []
    for i, spec in enumerate(specs):
        try:
            p = _plan(run, spec, snap)
        except PvectlError as exc:
            run.emit(spec.name, spec.vmid, "plan", "failed", exc.message)
            results[i] = ProvisionResult(spec.name, vmid=spec.vmid, result="failed", error=exc)
            continue
        if isinstance(p, ProvisionResult):
            results[i] = p
        else:
            plans.append((i, p))

    def work(item: tuple[int, _Plan]) -> None:
        i, p = item
        try:
            results[i] = _execute(run, p)
        except ProvisionFailed as exc:
            r = exc.result
            r.error = exc
            results[i] = r
        except PvectlError as exc:
            results[i] = ProvisionResult(p.spec.name, p.template.vmid, p.vmid, p.node, "failed", error=exc)

    if run.dry_run or len(plans) <= 1:
        for item in plans:
            work(item)
    else:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(plans))),
                                thread_name_prefix="pvectl-provision") as pool:
            list(pool.map(work, plans))
    return [r for r in results if r is not None]


# ------------------------------------------------------------------------------------------------ plan


def _check_spec(spec: CloneSpec) -> None:
    if not _DNS_NAME_RE.match(spec.name):
        raise UsageError(f"'{spec.name}' is not a valid VM name",
                         hint="Proxmox wants a DNS name: letters, digits and '-', dot-separated")
    if spec.linked and spec.storage:
        # qemu-server clone_vm: "parameter 'storage' not allowed for linked clones" (§4.2)
        raise UsageError("--storage cannot be combined with --linked: a linked clone stays on the template's "
                         "storage (Proxmox refuses it: parameter 'storage' not allowed for linked clones)",
                         hint="drop --storage, or drop --linked for a full clone onto that storage")
    if spec.cores is not None and not 1 <= int(spec.cores) <= 8192:
        raise UsageError(f"invalid cores {spec.cores}: 1 to 8192")
    if spec.disk_size is not None:
        from .guards import parse_disk_size

        parse_disk_size(spec.disk_size)
    if spec.disk is not None and not _DISK_RE.match(spec.disk):
        raise UsageError(f"invalid disk name '{spec.disk}' (e.g. scsi0, virtio0)")
    if spec.vmid is not None and not 100 <= int(spec.vmid) <= 999999999:
        raise UsageError(f"invalid VMID {spec.vmid}: 100 to 999999999")


def _plan(run: _Run, spec: CloneSpec, snap: _Snapshot) -> _Plan | ProvisionResult:
    """Every read and check before the first write. Returns a plan, or the result for a VM that exists."""
    cfg = run.cluster.config
    _check_spec(spec)
    memory = parse_memory(spec.memory) if spec.memory is not None else None
    ipconfig = ipconfig_value(spec.ip) if spec.ip else None
    keys_file = spec.ssh_keys_file or cfg.cloudinit.ssh_keys_file
    ssh_keys = encode_sshkeys(read_ssh_keys(keys_file)) if keys_file else None
    run.emit(spec.name, spec.vmid, "plan", "start", f"planning {spec.name} from template {spec.template}")

    tpl = run.template(spec.template)
    tconf = run.template_config(tpl)

    # Idempotency (pain point #6): a VM with this name made from this template is the answer; any other
    # VM with the name is refused (a second VM with the same name would make names ambiguous).
    same = snap.named(spec.name)
    if same:
        return _existing(run, spec, tpl, same)

    if not snap.online(tpl.node):
        raise NodeUnreachable(
            f"the template's node {tpl.node} is offline: Proxmox runs a clone on the node that holds the "
            f"template ({tpl.vmid} {tpl.name})",
            hint="bring the node back, or use a copy of the template on another node (select it by tag)")

    # Placement (pain point #12, §4.2)
    full = not spec.linked
    storage = (spec.storage or cfg.defaults.storage) if full else None
    vols = _volume_storages(tconf)
    local_vols = sorted(f"{k} on {s}" for k, s in vols.items() if not snap.shared(s))
    warnings: list[str] = []
    bridge_wanted = spec.bridge or cfg.defaults.network_bridge
    node = tpl.node
    if spec.target and spec.target != "auto" and spec.target != tpl.node:
        node = spec.target
        if node not in snap.nodes:
            raise UsageError(f"no node '{node}' in the cluster (nodes: {', '.join(sorted(snap.nodes))})")
        if not snap.online(node):
            raise GuardRefused(f"node {node} is offline", "pick an online node or --target auto")
        why = _cross_node_blocker(tpl, node, storage, local_vols, snap)
        if why:
            raise GuardRefused(why[0], why[1])
    elif spec.target == "auto":
        node, note = _auto_node(run, tpl, storage, bridge_wanted, local_vols, snap)
        if note:
            warnings.append(note)
            run.emit(spec.name, None, "plan", "warning", note)
    if storage is not None:
        st = snap.storage_on(node, storage)
        if st is None:
            raise UsageError(f"storage '{storage}' does not exist on node {node}",
                             hint=_storages_hint(snap, node))
        if "images" not in str(st.get("content", "images")).split(","):
            raise UsageError(f"storage '{storage}' does not hold VM disks (content: {st.get('content')})",
                             hint=_storages_hint(snap, node))

    # net0: set only when a bridge was asked for, or the template's bridge is not the configured default
    # (the clone already has a NIC with a fresh MAC on the template's bridge: §4.3)
    tbridge = net_bridge(tconf.get("net0"))
    bridge = None
    if spec.bridge or (tbridge != bridge_wanted and bridge_wanted):
        bridge = bridge_wanted
        known = run.bridges(node)
        if known is not None and bridge not in known:
            raise UsageError(f"bridge '{bridge}' does not exist on node {node} (bridges: {', '.join(sorted(known))})")

    # ipconfig0: the seed sets `ip=dhcp`; keep what the template has when --ip is not given
    if ipconfig is None and not tconf.get("ipconfig0"):
        ipconfig = "ip=dhcp"

    vmid, explicit = _choose_vmid(run, spec, snap)
    run.emit(spec.name, vmid, "plan", "done",
             f"{'full' if full else 'linked'} clone of {tpl.vmid} ({tpl.name}) as VM {vmid} on {node}"
             + (f", storage {storage}" if storage else ""))
    return _Plan(spec=spec, template=tpl, template_config=tconf, node=node, full=full, storage=storage, vmid=vmid,
                 explicit_vmid=explicit, memory=memory, ssh_keys=ssh_keys,
                 ciuser=spec.ciuser or cfg.cloudinit.default_user, bridge=bridge, ipconfig=ipconfig,
                 storage_shared=bool(storage and snap.shared(storage)), warnings=warnings)


def _storages_hint(snap: _Snapshot, node: str) -> str:
    names = sorted(s for (n, s), e in snap.storages.items()
                   if n == node and "images" in str(e.get("content", "")).split(","))
    return f"storages for VM disks on {node}: {', '.join(names) or 'none'}"


def _cross_node_blocker(tpl: VmSummary, node: str, storage: str | None, local_vols: list[str],
                        snap: _Snapshot) -> tuple[str, str] | None:
    """Why a clone of `tpl` cannot be made on `node` directly, or None. Proxmox allows `target` only when
    every volume of the source is on shared storage (`can't clone VM to node 'X' (VM uses local storage)`)
    and, for a full clone, the target storage is shared (`can't clone to non-shared storage`) (§4.2)."""
    shared = sorted({s for (_, s), e in snap.storages.items() if int(e.get("shared", 0) or 0)
                     and "images" in str(e.get("content", "")).split(",")})
    if local_vols:
        return (f"can't clone template {tpl.vmid} ({tpl.name}) to node {node}: its disks are on local storage "
                f"({', '.join(local_vols)}) and Proxmox clones to another node only when every disk of the "
                f"template is on shared storage",
                f"clone on {tpl.node} (drop --target) and then move it: pvectl vm migrate NAME {node}; or keep "
                f"a copy of the template on shared storage" + (f" ({', '.join(shared)})" if shared else ""))
    if storage is not None and not snap.shared(storage):
        return (f"can't clone to node {node} onto storage '{storage}': a clone to another node needs a shared "
                f"target storage (Proxmox: can't clone to non-shared storage '{storage}')",
                f"use --storage {shared[0]}" if shared else f"clone on {tpl.node} and then pvectl vm migrate")
    return None


def _auto_node(run: _Run, tpl: VmSummary, storage: str | None, bridge: str | None, local_vols: list[str],
               snap: _Snapshot) -> tuple[str, str | None]:
    """The online node with the most free memory that has the storage and the bridge; another node than
    the template's only when the clone can go there (else the template's node, and why)."""
    candidates = []
    for name, e in snap.nodes.items():
        if e.get("status") != "online" or "maxmem" not in e:
            continue
        if storage is not None and snap.storage_on(name, storage) is None:
            continue
        if bridge:
            known = run.bridges(name)
            if known is not None and bridge not in known:
                continue
        candidates.append((int(e["maxmem"]) - int(e.get("mem", 0)), name))
    if not candidates:
        return tpl.node, f"--target auto: no other online node qualifies; staying on {tpl.node}"
    candidates.sort(key=lambda c: (-c[0], c[1]))
    best = candidates[0][1]
    if best == tpl.node:
        return best, None
    why = _cross_node_blocker(tpl, best, storage, local_vols, snap)
    if why is None:
        return best, None
    return tpl.node, (f"--target auto: {best} has the most free memory, but {why[0]}; staying on the template's "
                      f"node {tpl.node}")


def _choose_vmid(run: _Run, spec: CloneSpec, snap: _Snapshot) -> tuple[int, bool]:
    rng = run.cluster.config.vmid_ranges.vms
    start, end = (rng.start, rng.end) if rng is not None else (100, 999999999)
    if spec.vmid is not None:
        vmid = int(spec.vmid)
        if rng is not None and not rng.contains(vmid):
            raise GuardRefused(f"VMID {vmid} is outside vmid_ranges.vms ({rng})",
                               "pick a VMID inside the range, or leave --vmid out to take the next free one")
        other = snap.vm(vmid)
        if other is not None:
            raise AlreadyExists(f"VMID {vmid} is already used by {other.get('name') or other.get('type')} "
                                f"on {other.get('node')}", hint="leave --vmid out to take the next free one")
        if not run.allocator.claim(vmid):
            raise AlreadyExists(f"VMID {vmid} is already being used by this run")
        return vmid, True
    return run.allocator.allocate(snap.used_vmids, start, end), False


def _existing(run: _Run, spec: CloneSpec, tpl: VmSummary, same: list[dict[str, Any]]) -> ProvisionResult:
    if len(same) > 1:
        listed = ", ".join(f"{e['vmid']} on {e['node']}" for e in same)
        raise GuardRefused(f"the name '{spec.name}' is already used by {len(same)} VMs ({listed})",
                           "pick another name")
    e = same[0]
    vmid, node = int(e["vmid"]), str(e["node"])
    conf = run.t.get(f"/nodes/{node}/qemu/{vmid}/config", node=node)
    m = _MARKER_RE.search(str(conf.get("description", "")))
    if m is None or int(m.group(1)) != tpl.vmid:
        origin = f"from template {m.group(1)}" if m else "not by pvectl from this template"
        raise GuardRefused(f"a VM named '{spec.name}' already exists (VM {vmid} on {node}), made {origin}",
                           f"pick another name, or remove that VM first (pvectl vm delete {vmid} --yes)")
    warnings = _differences(run, spec, conf)
    state = str(e.get("status", "unknown"))
    if conf.get("lock"):
        warnings.append(f"VM {vmid} is locked ({conf['lock']}): another task is still working on it")
    msg = f"VM {vmid} ({spec.name}) already exists on {node}, cloned from template {tpl.vmid}: nothing changed"
    run.emit(spec.name, vmid, "done", "info", msg)
    for w in warnings:
        run.emit(spec.name, vmid, "done", "warning", w)
    return ProvisionResult(spec.name, tpl.vmid, vmid, node, "exists", state, steps=["exists"], warnings=warnings)


def _differences(run: _Run, spec: CloneSpec, conf: dict[str, Any]) -> list[str]:
    """What an earlier run with this name left different from this spec (it may not have finished)."""
    out = []
    if spec.cores is not None and str(conf.get("cores")) != str(spec.cores):
        out.append(f"cores is {conf.get('cores')}, this run asks for {spec.cores}")
    if spec.memory is not None and str(conf.get("memory")) != str(parse_memory(spec.memory)):
        out.append(f"memory is {conf.get('memory')} MiB, this run asks for {parse_memory(spec.memory)}")
    if spec.bridge and net_bridge(conf.get("net0")) != spec.bridge:
        out.append(f"net0 bridge is {net_bridge(conf.get('net0'))}, this run asks for {spec.bridge}")
    if spec.ip and conf.get("ipconfig0") != ipconfig_value(spec.ip):
        out.append(f"ipconfig0 is {conf.get('ipconfig0')}, this run asks for {ipconfig_value(spec.ip)}")
    return out


# ------------------------------------------------------------------------------------------------ execute


class _StepFailed(Exception):
    def __init__(self, step: str, cause: PvectlError) -> None:
        super().__init__(step)
        self.step = step
        self.cause = cause


def _execute(run: _Run, plan: _Plan) -> ProvisionResult:
    spec = plan.spec
    res = ProvisionResult(spec.name, plan.template.vmid, plan.vmid, plan.node, "failed",
                          warnings=list(plan.warnings))
    created = _clone(run, plan, res)              # raises ProvisionFailed when nothing is left
    if not created:                               # dry-run
        _dry_run_rest(run, plan, res)
        return res
    try:
        _configure(run, plan, res)
        _resize(run, plan, res)
        if spec.start or spec.wait_ip:
            _start(run, plan, res)
        if spec.wait_ip:
            _wait_ip(run, plan, res)
    except _StepFailed as exc:
        _after_failure(run, plan, res, exc.step, exc.cause)
    res.result = "created"
    res.changed = True
    res.state = "running" if (spec.start or spec.wait_ip) else "stopped"
    run.emit(spec.name, res.vmid, "done", "done",
             f"VM {res.vmid} ({spec.name}) ready on {res.node}" + (f", IP {res.ip}" if res.ip else ""))
    return res


def _wait_task(run: _Run, plan: _Plan, res: ProvisionResult, step: str, upid: str) -> None:
    res.upids[step] = upid
    name = plan.spec.name

    def progress(p: Progress) -> None:
        run.emit(name, res.vmid, step, "progress", p.line, p.fraction)

    try:
        result = Task(run.cluster, upid).wait(run.deadline, on_progress=progress)
    except TaskFailed as exc:
        run.writer.task_done(upid, exc.exitstatus)
        raise
    except TaskTimeout:
        run.writer.task_done(upid, "still running at the deadline")
        raise
    run.writer.task_done(upid, result.exitstatus)
    res.warnings.extend(result.warnings)


def _clone(run: _Run, plan: _Plan, res: ProvisionResult) -> bool:
    """Post the clone and wait for it. True when the VM exists afterwards, False in dry-run."""
    spec, tpl = plan.spec, plan.template
    params: dict[str, Any] = {"newid": plan.vmid, "name": spec.name}
    params["full"] = 1 if plan.full else 0
    if plan.node != tpl.node:
        params["target"] = plan.node
    if plan.storage:
        params["storage"] = plan.storage
    tdesc = str(plan.template_config.get("description", "") or "").strip()
    marker = MARKER.format(vmid=tpl.vmid, name=tpl.name)
    # the clone copies the template's description unless one is given (§4.3): keep it below the marker
    params["description"] = marker + (f"\n\n{tdesc}" if tdesc and not _MARKER_RE.search(tdesc) else "")

    sems: list[threading.BoundedSemaphore] = []
    if run.limits is not None:
        sems.append(run.limits.sem(f"node:{tpl.node}", run.limits.max_per_node))
        if plan.full and plan.storage:
            key = plan.storage if plan.storage_shared else f"{plan.node}/{plan.storage}"
            sems.append(run.limits.sem(f"storage:{key}", run.limits.max_per_storage))
    for s in sems:
        s.acquire()
    try:
        return _clone_attempts(run, plan, res, params)
    finally:
        for s in reversed(sems):
            s.release()


def _clone_attempts(run: _Run, plan: _Plan, res: ProvisionResult, params: dict[str, Any]) -> bool:
    spec, tpl = plan.spec, plan.template
    id_attempts = lock_attempts = 0
    resend_same = False
    while True:
        vmid = plan.vmid
        params["newid"] = vmid
        res.vmid = vmid
        mode = "full" if plan.full else "linked"
        write = Write("POST", f"/nodes/{tpl.node}/qemu/{tpl.vmid}/clone", dict(params), tpl.node,
                      f"{mode} clone of template {tpl.vmid} ({tpl.name}) as VM {vmid} '{spec.name}'"
                      + (f" on {plan.node}" if plan.node != tpl.node else ""))
        run.emit(spec.name, vmid, "clone", "start", write.summary)
        try:
            upid = run.writer.send(write)
        except AlreadyExists as exc:
            if resend_same and _adopt(run, plan, res):
                return True
            id_attempts += 1
            _next_vmid(run, plan, res, exc, id_attempts)
            resend_same = False
            continue
        except NodeUnreachable as exc:
            if not exc.uncertain:
                _fail_nothing_made(run, plan, res, "clone", exc, created=False)
            # the POST may have been applied: look before sending again (DESIGN §4)
            if _adopt(run, plan, res):
                return True
            if resend_same:
                _fail_nothing_made(run, plan, res, "clone", exc, created=False)
            resend_same = True          # same VMID: a second clone would hit `already exists`
            continue
        except Locked as exc:
            lock_attempts += 1
            if lock_attempts >= LOCK_ATTEMPTS or not _backoff(run, lock_attempts):
                _fail_nothing_made(run, plan, res, "clone", exc, created=False)
            run.emit(spec.name, vmid, "clone", "warning", f"{exc.message}; retrying")
            continue
        except PvectlError as exc:
            _fail_nothing_made(run, plan, res, "clone", exc, created=False)
        if upid is None:                # dry-run
            res.steps.append("clone")
            return False
        try:
            _wait_task(run, plan, res, "clone", str(upid))
        except TaskFailed as exc:
            text = exc.exitstatus
            if "File exists" in text or "already exists" in text:
                # newid taken on another node: pmxcfs EEXIST inside the task (§4.2)
                id_attempts += 1
                _next_vmid(run, plan, res, exc, id_attempts)
                continue
            if "can't lock file" in text or "got timeout" in text or "lock request timeout" in text:
                lock_attempts += 1
                if lock_attempts < LOCK_ATTEMPTS and _backoff(run, lock_attempts):
                    run.emit(spec.name, vmid, "clone", "warning", f"clone task: {text}; retrying")
                    continue
            _fail_nothing_made(run, plan, res, "clone", exc, created=None)
        except TaskTimeout as exc:
            res.state = "cloning"
            raise ProvisionFailed(res, exc, f"the clone of VM {vmid} ({spec.name}) is still running at the "
                                  f"deadline", f"resume with: pvectl task wait {exc.upid}") from None
        except NodeUnreachable as exc:
            res.state = "unknown"
            raise ProvisionFailed(res, exc, f"lost contact while cloning VM {vmid} ({spec.name}) on {tpl.node}: "
                                  f"{exc.message}", f"check the task: pvectl task status {upid}") from None
        res.steps.append("clone")
        run.emit(spec.name, vmid, "clone", "done", f"VM {vmid} cloned on {plan.node}")
        return True


def _backoff(run: _Run, attempt: int) -> bool:
    """Sleep before a retry (jittered, growing); False when the deadline leaves no room."""
    pause = min(1.0 * 2 ** (attempt - 1), 8.0) * random.uniform(0.75, 1.25)
    remaining = run.deadline.remaining()
    if remaining is not None and remaining <= pause:
        return False
    time.sleep(pause)
    return True


def _next_vmid(run: _Run, plan: _Plan, res: ProvisionResult, exc: PvectlError, attempts: int) -> None:
    if plan.explicit_vmid:
        _fail_nothing_made(run, plan, res, "clone", exc, created=False,
                           hint="leave --vmid out to take the next free VMID")
    if attempts >= CLONE_ATTEMPTS:
        _fail_nothing_made(run, plan, res, "clone", exc, created=False,
                           hint=f"{attempts} VMIDs were taken by someone else in a row; retry later")
    old = plan.vmid
    rng = run.cluster.config.vmid_ranges.vms
    start, end = (rng.start, rng.end) if rng is not None else (100, 999999999)
    used = run.snapshot().used_vmids | {old}
    plan.vmid = run.allocator.allocate(used, start, end)
    res.vmid = plan.vmid
    run.emit(plan.spec.name, plan.vmid, "clone", "warning",
             f"VMID {old} was taken meanwhile ({exc.message}); trying VMID {plan.vmid}")


def _adopt(run: _Run, plan: _Plan, res: ProvisionResult) -> bool:
    """After an uncertain clone POST: did it start? If VM `plan.vmid` exists with our name, wait until its
    `lock: clone` is gone (the task ended) and take it; False when it does not exist."""
    spec = plan.spec
    for pause in (0.0, 1.0):
        time.sleep(pause)
        try:
            e = run.snapshot().vm(plan.vmid)
        except PvectlError:
            continue
        if e is None:
            continue
        if e.get("name") != spec.name:
            return False
        run.emit(spec.name, plan.vmid, "clone", "info", f"VM {plan.vmid} exists: the clone request did arrive")
        while True:
            e = run.snapshot().vm(plan.vmid)
            if e is None:
                return False           # the clone failed and Proxmox removed it
            if e.get("lock") != "clone":
                res.node = str(e.get("node", plan.node))
                plan.node = res.node
                res.steps.append("clone")
                return True
            if run.deadline.expired():
                return False
            time.sleep(0.5)
    return False


def _fail_nothing_made(run: _Run, plan: _Plan, res: ProvisionResult, step: str, exc: PvectlError, *,
                       created: bool | None, hint: str | None = None) -> None:
    """The clone did not produce a VM. `created=None`: check with a re-read that nothing is left (a failed
    clone task frees its volumes and removes the config: §4.4)."""
    spec = plan.spec
    left = None
    if created is None:
        try:
            left = run.snapshot().vm(plan.vmid)
        except PvectlError as read_exc:
            res.state = "unknown"
            msg = (f"clone of template {plan.template.vmid} as VM {plan.vmid} ({spec.name}) failed: {exc.message}; "
                   f"could not check whether anything was left ({read_exc.message})")
            run.emit(spec.name, plan.vmid, step, "failed", msg)
            raise ProvisionFailed(res, exc, msg, f"check with: pvectl vm status {plan.vmid}") from None
    if left is not None and left.get("name") == spec.name:
        res.state = str(left.get("status", "unknown"))
        res.node = str(left.get("node", plan.node))
        msg = f"clone of template {plan.template.vmid} as VM {plan.vmid} ({spec.name}) failed: {exc.message}; " \
              f"VM {plan.vmid} still exists on {res.node}"
        hint_ = hint or f"look at it (pvectl vm status {plan.vmid}) and delete it: pvectl vm delete {plan.vmid} --yes"
    else:
        res.state = "absent"
        verified = " (checked: Proxmox removed the half-made VM)" if created is None else ""
        msg = f"clone of template {plan.template.vmid} as VM {plan.vmid} ({spec.name}) failed: {exc.message}; " \
              f"nothing was created{verified}"
        hint_ = hint or exc.hint
        res.vmid = plan.vmid
    run.emit(spec.name, plan.vmid, step, "failed", msg)
    raise ProvisionFailed(res, exc, msg, hint_)


def _config_path(plan: _Plan, res: ProvisionResult) -> str:
    return f"/nodes/{res.node}/qemu/{res.vmid}"


def _configure(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """ONE config PUT with the digest read after the clone (checksum mismatch = someone else changed it)."""
    spec = plan.spec
    assert res.node is not None and res.vmid is not None
    try:
        conf = _read_unlocked(run, res)
    except PvectlError as exc:
        raise _StepFailed("config", exc) from None
    params = _config_params(run, plan, conf)
    if not params:
        return
    params["digest"] = conf.get("digest")
    keys = ", ".join(k for k in params if k not in ("digest", "delete"))
    write = Write("PUT", _config_path(plan, res) + "/config", params, res.node,
                  f"configure VM {res.vmid} ({spec.name}): {keys}")
    run.emit(spec.name, res.vmid, "config", "start", write.summary)
    try:
        run.writer.send(write)
    except PvectlError as exc:
        raise _StepFailed("config", exc) from None
    res.steps.append("config")
    run.emit(spec.name, res.vmid, "config", "done", f"VM {res.vmid} configured ({keys})")


def _config_params(run: _Run, plan: _Plan, conf: dict[str, Any]) -> dict[str, Any]:
    spec = plan.spec
    p: dict[str, Any] = {}
    if spec.cores is not None:
        p["cores"] = int(spec.cores)
    if plan.memory is not None:
        p["memory"] = plan.memory
    if plan.bridge:
        p["net0"] = net_with_bridge(conf.get("net0"), plan.bridge)
    if plan.ipconfig and conf.get("ipconfig0") != plan.ipconfig:
        p["ipconfig0"] = plan.ipconfig
    if plan.ciuser and conf.get("ciuser") != plan.ciuser:
        p["ciuser"] = plan.ciuser
    if plan.ssh_keys and conf.get("sshkeys") != plan.ssh_keys:
        p["sshkeys"] = plan.ssh_keys
    # the clone copied the template's tags (§4.3), including the one that marks templates
    ttag = run.cluster.config.tags.templates
    tags = split_tags(conf.get("tags"))
    if ttag and ttag in tags:
        rest = [t for t in tags if t != ttag]
        if rest:
            p["tags"] = ";".join(rest)
        else:
            p["delete"] = "tags"
    return p


def _read_unlocked(run: _Run, res: ProvisionResult) -> dict[str, Any]:
    """The new VM's config once no `lock` is left (a just-finished clone may still show `lock: clone`
    to a reader on another node for a moment; pain point #2, bpg #133)."""
    while True:
        conf = run.t.get(f"/nodes/{res.node}/qemu/{res.vmid}/config", node=res.node)
        if not conf.get("lock") or run.deadline.expired():
            return conf
        time.sleep(0.2)


def _resize(run: _Run, plan: _Plan, res: ProvisionResult, conf: dict[str, Any] | None = None) -> None:
    spec = plan.spec
    if not spec.disk_size:
        return
    from .guards import check_disk_resize

    try:
        if conf is None:
            conf = run.t.get(f"/nodes/{res.node}/qemu/{res.vmid}/config", node=res.node)
        disk = spec.disk or boot_disk(conf)
        if disk is None or disk not in conf:
            raise GuardRefused(f"VM {res.vmid} has no disk {disk or '(boot disk)'} to grow",
                               "name the disk with --disk (e.g. virtio0)")
        current = size_bytes(parse_prop(str(conf[disk]))[1].get("size"))
        if current is not None:
            check_disk_resize(vmid=res.vmid or 0, disk=disk, current=current, size=spec.disk_size)
        write = Write("PUT", _config_path(plan, res) + "/resize", {"disk": disk, "size": disk_size_param(spec.disk_size)},
                      res.node or plan.node, f"grow disk {disk} of VM {res.vmid} ({spec.name}) to {spec.disk_size}")
        run.emit(spec.name, res.vmid, "resize", "start", write.summary)
        upid = run.writer.send(write)
        if upid is not None:
            _wait_task(run, plan, res, "resize", str(upid))
    except PvectlError as exc:
        raise _StepFailed("resize", exc) from None
    res.steps.append("resize")
    run.emit(spec.name, res.vmid, "resize", "done", f"disk {disk} grown ({spec.disk_size})")


def _start(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    spec = plan.spec
    write = Write("POST", _config_path(plan, res) + "/status/start", {}, res.node or plan.node,
                  f"start VM {res.vmid} ({spec.name})")
    run.emit(spec.name, res.vmid, "start", "start", write.summary)
    try:
        upid = run.writer.send(write)
        if upid is not None:
            _wait_task(run, plan, res, "start", str(upid))
    except PvectlError as exc:
        raise _StepFailed("start", exc) from None
    res.steps.append("start")
    run.emit(spec.name, res.vmid, "start", "done", f"VM {res.vmid} started")


def _wait_ip(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """Poll the guest agent until the guest has an address (§13). `QEMU guest agent is not running`
    means not booted yet: keep polling. `No QEMU guest agent configured` cannot change: stop. A global
    IPv6 address is taken only when no IPv4 address has appeared for three answers in a row."""
    spec = plan.spec
    path = _config_path(plan, res) + "/agent/network-get-interfaces"
    remaining = run.deadline.remaining()
    limit = Deadline(IP_WAIT_WITHOUT_DEADLINE) if remaining is None else run.deadline
    run.emit(spec.name, res.vmid, "ip", "start", f"waiting for VM {res.vmid} to report an IP address")
    pause, v6_seen = 0.2, 0
    last = "no answer yet"
    while True:
        try:
            data = run.t.get(path, node=res.node)
            result = data.get("result") if isinstance(data, dict) else None
            if isinstance(result, dict) and "error" in result:
                # an agent error object is a 200 (C16 step 6)
                desc = result["error"].get("desc", result["error"])
                raise _StepFailed("ip", ApiError(f"the guest agent of VM {res.vmid} cannot list interfaces: {desc}"))
            v4, v6 = pick_ip(result)
            if v4:
                res.ip = v4
                break
            if v6:
                v6_seen += 1
                if v6_seen >= 3:
                    res.ip = v6
                    break
            last = "the agent reports no usable address yet"
        except ApiError as exc:
            text = exc.message
            if "No QEMU guest agent configured" in text:
                raise _StepFailed("ip", ApiError(
                    f"VM {res.vmid} has no QEMU guest agent configured, so its IP address cannot be read",
                    hint="enable it in the template (agent: 1) and install qemu-guest-agent in the image")) from None
            if "guest agent is not running" in text or "got timeout" in text:
                last = text
            elif isinstance(exc, NodeUnreachable) and exc.retryable:
                last = text
            else:
                raise _StepFailed("ip", exc) from None
        remaining = limit.remaining()
        if remaining is not None and remaining <= 0:
            raise _StepFailed("ip", TaskTimeout(res.upids.get("start", "-"), message=(
                f"VM {res.vmid} ({spec.name}) reported no IP address before the deadline ({last})"),
                hint=f"the VM is running; look at its console, or ask again later: pvectl vm status {res.vmid}"))
        time.sleep(min(pause, max(remaining or pause, 0.05)))
        pause = min(pause * 1.5, 2.0)
    res.steps.append("ip")
    run.emit(spec.name, res.vmid, "ip", "done", f"VM {res.vmid} has IP {res.ip}")


def _vm_state(run: _Run, res: ProvisionResult) -> str:
    try:
        st = run.t.get(f"/nodes/{res.node}/qemu/{res.vmid}/status/current", node=res.node)
        return str(st.get("status", "unknown")) + (f", lock {st['lock']}" if st.get("lock") else "")
    except NotFound:
        return "absent"
    except PvectlError as exc:
        return f"unknown ({exc.message})"


def _after_failure(run: _Run, plan: _Plan, res: ProvisionResult, step: str, cause: PvectlError) -> None:
    """A step after the clone failed: say what exists, clean up if asked, raise ProvisionFailed."""
    spec = plan.spec
    res.state = _vm_state(run, res)
    done = ", ".join(res.steps) or "none"
    todo = [s for s in ("config", "resize", "start", "ip") if _wanted(plan, s) and s not in res.steps]
    base = (f"{step} failed for VM {res.vmid} ({spec.name}) on {res.node}: {cause.message}. "
            f"The VM exists ({res.state}); steps done: {done}")
    run.emit(spec.name, res.vmid, step, "failed", f"{step} failed: {cause.message}")
    if spec.cleanup_on_failure and not res.state.startswith("unknown"):
        try:
            _cleanup(run, plan, res)
        except PvectlError as exc:
            raise ProvisionFailed(res, cause, f"{base}; the cleanup failed too: {exc.message}",
                                  f"delete it by hand: pvectl vm delete {res.vmid} --yes") from None
        raise ProvisionFailed(res, cause, f"{base}; deleted it (--cleanup-on-failure)", cause.hint) from None
    hint = (f"delete it with `pvectl vm delete {res.vmid} --yes` and run the command again, or finish the "
            f"remaining steps ({', '.join(todo) or 'none'}) by hand")
    if cause.hint:
        hint = f"{cause.hint}; then {hint}"
    raise ProvisionFailed(res, cause, base, hint) from None


def _wanted(plan: _Plan, step: str) -> bool:
    s = plan.spec
    return {"config": True, "resize": bool(s.disk_size), "start": s.start or s.wait_ip, "ip": s.wait_ip}[step]


def _cleanup(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """Stop the VM if it runs, then DELETE with purge=1&destroy-unreferenced-disks=1 (the seed's delete)
    and wait. The VM is ours (just made by this run), so no --yes is asked."""
    spec = plan.spec
    node = res.node or plan.node
    run.emit(spec.name, res.vmid, "cleanup", "start", f"deleting VM {res.vmid} ({spec.name})")
    st = run.t.get(f"/nodes/{node}/qemu/{res.vmid}/status/current", node=node)
    if st.get("status") == "running":
        upid = run.writer.send(Write("POST", f"/nodes/{node}/qemu/{res.vmid}/status/stop", {}, node,
                                     f"stop VM {res.vmid} ({spec.name}) to delete it"))
        if upid:
            _wait_task(run, plan, res, "cleanup-stop", str(upid))
    upid = run.writer.send(Write("DELETE", f"/nodes/{node}/qemu/{res.vmid}",
                                 {"purge": 1, "destroy-unreferenced-disks": 1}, node,
                                 f"delete VM {res.vmid} ({spec.name}) after the failure"))
    if upid:
        _wait_task(run, plan, res, "cleanup", str(upid))
    res.steps.append("cleanup")
    res.state = "absent"
    run.emit(spec.name, res.vmid, "cleanup", "done", f"VM {res.vmid} deleted")


def _dry_run_rest(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """Print the writes that would follow the clone. The clone's config is predicted from the template's:
    Proxmox copies it (§4.3); the digest and the new MAC are not known before the clone."""
    spec = plan.spec
    predicted = {k: v for k, v in plan.template_config.items() if k not in ("digest", "template")}
    if plan.bridge and predicted.get("net0"):
        # the clone gets a new MAC (§4.3): leave it out, Proxmox generates one (add_random_macs)
        first, opts = parse_prop(str(predicted["net0"]))
        model = next((m for m in _NET_MODELS if m in opts), first or "virtio")
        opts.pop(model, None)
        predicted["net0"] = ",".join([model] + [f"{k}={v}" for k, v in opts.items()])
    params = _config_params(run, plan, predicted)
    if params:
        keys = ", ".join(k for k in params if k != "delete")
        run.writer.send(Write("PUT", _config_path(plan, res) + "/config", params, plan.node,
                              f"configure VM {plan.vmid} ({spec.name}): {keys} (with the digest read after the clone)"))
        res.steps.append("config")
    if spec.disk_size:
        disk = spec.disk or boot_disk(predicted) or "scsi0"
        run.writer.send(Write("PUT", _config_path(plan, res) + "/resize", {"disk": disk, "size": disk_size_param(spec.disk_size)},
                              plan.node, f"grow disk {disk} of VM {plan.vmid} ({spec.name}) by/to {spec.disk_size}"))
        res.steps.append("resize")
    if spec.start or spec.wait_ip:
        run.writer.send(Write("POST", _config_path(plan, res) + "/status/start", {}, plan.node,
                              f"start VM {plan.vmid} ({spec.name})"))
        res.steps.append("start")
    if spec.wait_ip:
        run.writer.out.write(f"# then poll GET /api2/json{_config_path(plan, res)}/agent/network-get-interfaces "
                             "until the guest reports an address\n")
    res.result = "planned"
    res.state = "absent"
    run.emit(spec.name, plan.vmid, "done", "info", f"dry-run: VM {plan.vmid} ({spec.name}) planned on {plan.node}")


def bulk_names(pattern: str, count: int, start: int = 1) -> list[str]:
    """`web-{n}` x 3 -> web-1, web-2, web-3 (`{n}` may carry a format: `web-{n:02d}`)."""
    if "{n" not in pattern:
        raise UsageError(f"--name-pattern '{pattern}' has no {{n}}", hint="e.g. --name-pattern web-{n}")
    try:
        return [pattern.format(n=i) for i in range(start, start + count)]
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"invalid --name-pattern '{pattern}': {exc}") from None


def next_free_index(pattern: str, names: set[str]) -> int:
    """1 + the highest n for which `pattern` already names a VM (1 when none does)."""
    prefix, _, rest = pattern.partition("{n")
    suffix = rest.split("}", 1)[1] if "}" in rest else ""
    rx = re.compile("^" + re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
    found = [int(m.group(1)) for n in names if (m := rx.match(n))]
    return max(found) + 1 if found else 1


def specs_for_count(base: CloneSpec, pattern: str, count: int, start: int = 1) -> list[CloneSpec]:
    if base.vmid is not None and count > 1:
        raise UsageError("--vmid cannot be combined with --count > 1 (each VM takes the next free VMID)")
    return [replace(base, name=n) for n in bulk_names(pattern, count, start)]
