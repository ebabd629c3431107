"""VM reads: listing and filtering (one cluster-wide call), resolving a VMID or name, live status,
config. Plain functions of a `Session`, shared by the `VmsApi` face and by the operations."""

from __future__ import annotations

from ..records import Record

TYPE_CHECKING = False

from ..errors import NotFound, PermissionDenied, UsageError

if TYPE_CHECKING:
    from typing import Any

    from ..session import Session

GIB = 1024**3


def split_tags(tags: str | None) -> tuple[str, ...]:
    # PVE stores tags `;`-separated (older releases also accepted `,` and spaces: pve-common
    # JSONSchema.pm pve-tag-list split on [,; ]).
    if not tags:
        return ()
    return tuple(t for t in tags.replace(",", ";").replace(" ", ";").split(";") if t)


class _Count:
    """A whole-number field of an API entry, 0 when the entry leaves it out (offline nodes' VMs)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __get__(self, vm: VmSummary | None, owner: object = None) -> int:
        if vm is None:
            return self  # type: ignore[return-value]  # read on the class: the field itself
        return int(vm._entry.get(self.key, 0))


class VmSummary(Record):
    """A VM as `/cluster/resources?type=vm` reports it (pve-semantics §10.2). Stats there come from
    pvestatd and lag up to 10 s; `status` may be `unknown` for a node that is down.

    Built from the API entry, it keeps the entry and converts a field when it is read: listing 500
    VMs makes 500 small objects, and only the fields a caller reads are converted (bench_overhead.py).
    """

    __slots__ = ("_entry",)
    _fields = ("vmid", "name", "node", "status", "template", "maxcpu", "maxmem", "mem", "cpu", "uptime",
               "maxdisk", "tags", "lock")
    _entry: dict[str, Any]

    def __init__(self, **fields: Any) -> None:
        """Every field by keyword, typed as the properties below return them."""
        missing = [f for f in self._fields if f not in fields]
        extra = sorted(set(fields) - set(self._fields))
        if missing or extra:
            raise TypeError(f"VmSummary() missing arguments {missing}" if missing
                            else f"VmSummary() got unexpected arguments {extra}")
        fields["tags"] = tuple(fields["tags"])
        _set(self, "_entry", fields)

    @classmethod
    def from_resource(cls, e: dict[str, Any]) -> VmSummary:
        """The entry is kept as it is (it must not be changed afterwards)."""
        if "vmid" not in e or "node" not in e:
            raise ValueError(f"a /cluster/resources entry without vmid or node: {sorted(e)}")
        vm = _new(cls)
        _set(vm, "_entry", e)
        return vm

    @property
    def vmid(self) -> int:
        return int(self._entry["vmid"])

    @property
    def name(self) -> str:
        e = self._entry
        return str(e.get("name") or f"VM {e['vmid']}")

    @property
    def node(self) -> str:
        return str(self._entry["node"])

    @property
    def status(self) -> str:
        return str(self._entry.get("status", "unknown"))

    @property
    def template(self) -> bool:
        return bool(self._entry.get("template"))

    maxcpu = _Count("maxcpu")
    maxmem = _Count("maxmem")
    mem = _Count("mem")
    uptime = _Count("uptime")
    maxdisk = _Count("maxdisk")

    @property
    def cpu(self) -> float:
        return float(self._entry.get("cpu", 0))

    @property
    def tags(self) -> tuple[str, ...]:
        tags = self._entry.get("tags")
        return tags if isinstance(tags, tuple) else split_tags(tags)

    @property
    def lock(self) -> str | None:
        lock = self._entry.get("lock")
        return None if lock is None else str(lock)

    def to_dict(self) -> dict[str, Any]:
        d = Record.to_dict(self)
        d["tags"] = list(self.tags)
        return d


_new = object.__new__
_set = object.__setattr__


class VmStatus(Record):
    """GET /nodes/{node}/qemu/{vmid}/status/current (QemuServer.pm::vmstatus, pve-semantics §5.3)."""

    __slots__ = ("vmid", "name", "node", "status", "qmpstatus", "pid", "cpu", "cpus", "mem", "maxmem",
                 "maxdisk", "uptime", "lock", "tags", "template", "agent")

    vmid: int
    name: str
    node: str
    status: str
    qmpstatus: str
    pid: int | None
    cpu: float
    cpus: int
    mem: int
    maxmem: int
    maxdisk: int
    uptime: int
    lock: str | None
    tags: tuple[str, ...]
    template: bool
    agent: bool

    def to_dict(self) -> dict[str, Any]:
        d = Record.to_dict(self)
        d["tags"] = list(self.tags)
        return d


def _resources(s: Session) -> list[VmSummary]:
    return [VmSummary.from_resource(e) for e in s.transport.get("/cluster/resources", {"type": "vm"})
            if e.get("type", "qemu") == "qemu"]


def list_vms(s: Session, *, status: str | None = None, node: str | None = None, tag: str | None = None,
             templates: bool | None = None) -> list[VmSummary]:
    """All QEMU VMs the token may see, filtered locally (`templates`: True = only templates,
    False = none, None = both). An empty answer is checked against the token's privileges:
    Proxmox filters by VM.Audit silently (pve-semantics §10.2), so "no VMs" from a token without
    VM.Audit is reported as the missing privilege, not as an empty cluster."""
    vms = _resources(s)
    if not vms:
        require_audit(s)
    if status is not None or node is not None or tag is not None or templates is not None:
        vms = [v for v in vms
               if (status is None or v.status == status) and (node is None or v.node == node)
               and (tag is None or tag in v.tags) and (templates is None or v.template == templates)]
    vms.sort(key=_by_vmid)
    return vms


def _by_vmid(vm: VmSummary) -> int:
    return vm.vmid


def require_audit(s: Session) -> None:
    perms = s.transport.get("/access/permissions")
    if not any("VM.Audit" in privs for privs in perms.values()):
        raise PermissionDenied(
            "the API token may not see any VM: it has no VM.Audit privilege (checked on /vms)",
            status=403, acl_path="/vms", privilege="VM.Audit",
            hint="grant it, e.g.: pveum acl modify /vms --tokens 'USER@REALM!TOKEN' --roles PVEAuditor")


def is_vmid(text: str) -> bool:
    # a VMID is ASCII digits and nothing else: `str.isdigit` and `int()` also take other scripts'
    # digits ('١٠٠') and surrounding blanks, which would silently pick VM 100
    return text.isascii() and text.isdigit()


def resolve(s: Session, ref: str | int | VmSummary) -> VmSummary:
    """A VMID or a unique VM name -> the VM (with its node). Ambiguous names list the candidates.
    A `VmSummary` is looked up again (fresh state)."""
    if isinstance(ref, VmSummary):
        ref = ref.vmid
    vms = _resources(s)
    text = str(ref)
    if is_vmid(text):
        vmid = int(text)
        for v in vms:
            if v.vmid == vmid:
                return v
        if not vms:
            require_audit(s)
        raise NotFound(f"VM {vmid} does not exist (or the token may not see it)",
                       hint="list the VMs with: pvectl vm list")
    matches = [v for v in vms if v.name == text]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        if not vms:
            require_audit(s)
        raise NotFound(f"no VM named {text!r}", hint="list the VMs with: pvectl vm list")
    listed = ", ".join(f"{v.vmid} on {v.node}" for v in sorted(matches, key=lambda v: v.vmid))
    raise UsageError(f"the name '{text}' matches {len(matches)} VMs ({listed}): give the VMID instead")


def vm_status(s: Session, ref: str | int | VmSummary) -> VmStatus:
    vm = resolve(s, ref)
    d = s.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/status/current", node=vm.node)
    return VmStatus(vmid=vm.vmid, name=d.get("name", vm.name), node=vm.node, status=d.get("status", "unknown"),
                    qmpstatus=d.get("qmpstatus", d.get("status", "unknown")), pid=d.get("pid"),
                    cpu=float(d.get("cpu", 0)), cpus=int(d.get("cpus", 0)), mem=int(d.get("mem", 0)),
                    maxmem=int(d.get("maxmem", 0)), maxdisk=int(d.get("maxdisk", 0)),
                    uptime=int(d.get("uptime", 0)), lock=d.get("lock"), tags=split_tags(d.get("tags")),
                    template=bool(d.get("template")), agent=bool(d.get("agent")))


def vm_config(s: Session, vm: VmSummary, *, current: bool = False) -> dict[str, Any]:
    config: dict[str, Any] = s.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/config",
                                             {"current": 1} if current else None, node=vm.node)
    return config
