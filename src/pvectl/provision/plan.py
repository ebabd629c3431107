"""Planning: every read and check before the first write (template, name, placement, VMID)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import AlreadyExists, GuardRefused, NodeUnreachable, NotFound, UsageError
from ..units import parse_memory
from .cloudinit import (
    _DISK_RE,
    _DNS_NAME_RE,
    _volume_storages,
    encode_sshkeys,
    ipconfig_value,
    net_bridge,
    read_ssh_keys,
)
from .names import Names
from .removal import remove_vm
from .state import _Run, _Snapshot, known_name
from .types import CloneSpec, ProvisionResult

if TYPE_CHECKING:
    from ..vms.reads import VmSummary

# The description line written by the clone POST; a later run finds the VM by name and this line. The
# request id tells this run's clone from another one; `; configured` is added by the config PUT, so a
# re-run knows whether the configure step ever ran.
MARKER = "pvectl: cloned from template {vmid} ({name})"
_MARKER_RE = re.compile(r"^pvectl: cloned from template (\d+)\b", re.M)
_REQUEST_RE = re.compile(r"^pvectl: cloned from template \d+ .*; request ([0-9a-f]+)\b", re.M)
CONFIGURED = "; configured"


def marker_line(tpl_vmid: int, tpl_name: str, request: str) -> str:
    return MARKER.format(vmid=tpl_vmid, name=tpl_name) + f"; request {request}"


def request_of(description: object) -> str | None:
    m = _REQUEST_RE.search(str(description or ""))
    return m.group(1) if m else None


def configured(description: object) -> bool:
    """False only for a VM whose marker carries a request id but not `; configured` (the config PUT
    never ran); a VM made before request ids existed counts as configured."""
    first = next((ln for ln in str(description or "").splitlines() if _MARKER_RE.match(ln)), "")
    return "; request " not in first or first.endswith(CONFIGURED)


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
    existing: dict[str, Any] | None = None   # the VM that already carries the name (a re-run finishes it)
    request: str = ""                        # this run's request id, in the clone's description
    description: str = ""                    # the description the clone POST sets
    sent: float = 0.0                        # time.time() when the last clone POST went out


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
        from ..units import parse_disk_size

        parse_disk_size(spec.disk_size, "--disk-size")
    if spec.disk is not None and not _DISK_RE.match(spec.disk):
        raise UsageError(f"invalid disk name '{spec.disk}' (e.g. scsi0, virtio0)")
    if spec.vmid is not None and not 100 <= int(spec.vmid) <= 999999999:
        raise UsageError(f"invalid VMID {spec.vmid}: 100 to 999999999")


def _plan(run: _Run, spec: CloneSpec, snap: _Snapshot) -> _Plan | ProvisionResult:
    """Every read and check before the first write. Returns a plan, or the result for a VM that exists."""
    cfg = run.session.config
    _check_spec(spec)
    memory = parse_memory(spec.memory) if spec.memory is not None else None
    ipconfig = ipconfig_value(spec.ip) if spec.ip else None
    keys_file = spec.ssh_keys_file or cfg.cloudinit.ssh_keys_file
    ssh_keys = encode_sshkeys(read_ssh_keys(keys_file)) if keys_file else None
    run.emit(spec.name, spec.vmid, "plan", "start", f"planning {spec.name} from template {spec.template}")

    tpl = run.template(spec.template)
    tconf = run.template_config(tpl)

    # Idempotency (pain point #6): a VM with this name made from this template is the answer (a re-run
    # finishes what an earlier run left); any other VM with the name is refused (DESIGN §5 "names").
    existing = _existing(run, spec, tpl, snap)
    if existing is not None:
        return _plan_existing(run, spec, tpl, tconf, existing, memory, ipconfig, ssh_keys)

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
    rng = run.session.config.vmid_ranges.vms
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
    vmid = run.allocator.allocate(snap.used_vmids, start, end, first=run.vmid_floor or start)
    if run.vmid_floor is not None:
        run.vmid_floor = vmid + 1
    return vmid, False


def _existing(run: _Run, spec: CloneSpec, tpl: VmSummary, snap: _Snapshot) -> dict[str, Any] | None:
    """The VM (resource entry + `config`) made by pvectl from `tpl` that carries the name, or None when
    no VM does. A clone in flight that makes the name is waited for; another VM with it is refused."""
    names = Names(run, spec.name)
    same = [e for e in snap.named(spec.name) if names.carries(e)]
    for vmid in run.in_flight.vmids(spec.name):       # this process's own clones in flight
        e = snap.vm(vmid)
        if e is not None and known_name(e) is None:
            same.append(e)
    removed: list[str] = []
    if len(same) > 1:
        same, removed = _without_losers(run, spec, tpl, same)
    if len(same) > 1:
        listed = ", ".join(f"{e['vmid']} on {e['node']}" for e in same)
        raise GuardRefused(f"the name '{spec.name}' is already used by {len(same)} VMs ({listed})",
                           "pick another name")
    if not same:
        return None
    e = same[0]
    if e.get("lock") == "clone" and not run.dry_run:
        found = names.until_unlocked(e)
        if found is None:
            return None           # that clone failed and Proxmox removed it: the name is free
        e = found
    vmid, node = int(e["vmid"]), str(e["node"])
    conf = e.get("config") or run.t.get(f"/nodes/{node}/qemu/{vmid}/config", node=node)   # read by _without_losers
    m = _MARKER_RE.search(str(conf.get("description", "")))
    if m is None or int(m.group(1)) != tpl.vmid:
        origin = f"from template {m.group(1)}" if m else "not by pvectl from this template"
        raise GuardRefused(f"a VM named '{spec.name}' already exists (VM {vmid} on {node}), made {origin}",
                           f"pick another name, or remove that VM first (pvectl vm delete {vmid} --yes)")
    return dict(e, config=conf, removed=removed)


def _without_losers(run: _Run, spec: CloneSpec, tpl: VmSummary,
                    same: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Several VMs carry the name. When pvectl made them all from `tpl` and each one but the lowest
    VMID is a finished, stopped clone that was never configured, those are clones that lost the name
    (names protocol step 2: the lowest VMID keeps it) and that their run could not remove (it lost
    contact with the cluster, or stopped, right after its clone): removed here, as their run would have.
    One whose removal runs already (its config is `{lock: destroyed}`, pve-semantics §3.1) or that is
    gone no longer counts. Anything else is left as it is (the caller refuses the name). Returns the
    VMs left and a line per VM removed."""
    ordered = sorted(same, key=lambda e: int(e["vmid"]))
    if any(e.get("lock") for e in ordered) or any(e.get("status") != "stopped" for e in ordered[1:]):
        return same, []
    left: list[dict[str, Any]] = []
    losers: list[dict[str, Any]] = []
    for e in ordered:
        vmid, node = int(e["vmid"]), str(e["node"])
        try:
            conf = run.t.get(f"/nodes/{node}/qemu/{vmid}/config", node=node)
        except NotFound:
            continue                    # removed meanwhile
        if conf.get("lock") == "destroyed":
            continue                    # being removed (by the run that made it)
        desc = conf.get("description")
        m = _MARKER_RE.search(str(desc or ""))
        if m is None or int(m.group(1)) != tpl.vmid or (left and configured(desc)):
            return same, []
        (losers if left else left).append(dict(e, config=conf))
    removed: list[str] = []
    for e in losers:
        vmid, node = int(e["vmid"]), str(e["node"])
        why = (f"a clone of template {tpl.vmid} that lost the name '{spec.name}' to VM {left[0]['vmid']} (the lower "
               f"VMID keeps it) and was never finished")
        summary = f"delete VM {vmid} ({spec.name}): {why}"
        run.emit(spec.name, vmid, "cleanup", "start", summary)
        removal = remove_vm(run, node, vmid, summary)
        if removal.error is not None:
            run.emit(spec.name, vmid, "cleanup", "failed", f"could not remove VM {vmid}: {removal.error.message}")
            left.append(e)
            continue
        removed.append(f"VM {vmid} {'would be' if run.dry_run else 'was'} removed: {why}")
        run.emit(spec.name, vmid, "cleanup", "done", removed[-1])
    return left, removed


def _plan_existing(run: _Run, spec: CloneSpec, tpl: VmSummary, tconf: dict[str, Any], e: dict[str, Any],
                   memory: int | None, ipconfig: str | None, ssh_keys: str | None, *, planning: bool = True) -> _Plan:
    cfg = run.session.config
    node, vmid = str(e["node"]), int(e["vmid"])
    bridge_wanted = spec.bridge or cfg.defaults.network_bridge
    bridge = bridge_wanted if (spec.bridge or (net_bridge(tconf.get("net0")) != bridge_wanted and bridge_wanted)) \
        else None
    if ipconfig is None and not tconf.get("ipconfig0"):
        ipconfig = "ip=dhcp"
    run.emit(spec.name, vmid, "plan" if planning else "clone", "done" if planning else "info",
             f"VM {vmid} ({spec.name}) already exists on {node}, cloned from template {tpl.vmid}")
    return _Plan(spec=spec, template=tpl, template_config=tconf, node=node, full=not spec.linked, storage=None,
                 vmid=vmid, explicit_vmid=True, memory=memory, ssh_keys=ssh_keys,
                 ciuser=spec.ciuser or cfg.cloudinit.default_user, bridge=bridge, ipconfig=ipconfig, existing=e,
                 warnings=list(e.get("removed") or []))


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
