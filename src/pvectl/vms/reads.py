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


class VmSummary(Record):
    """A VM as `/cluster/resources?type=vm` reports it (pve-semantics §10.2). Stats there come from
    pvestatd and lag up to 10 s; `status` may be `unknown` for a node that is down."""

    __slots__ = ("vmid", "name", "node", "status", "template", "maxcpu", "maxmem", "mem", "cpu", "uptime",
                 "maxdisk", "tags", "lock")

    vmid: int
    name: str
    node: str
    status: str
    template: bool
    maxcpu: int
    maxmem: int
    mem: int
    cpu: float
    uptime: int
    maxdisk: int
    tags: tuple[str, ...]
    lock: str | None

    @classmethod
    def from_resource(cls, e: dict[str, Any]) -> VmSummary:
        return cls(vmid=int(e["vmid"]), name=e.get("name") or f"VM {e['vmid']}", node=e["node"],
                   status=e.get("status", "unknown"), template=bool(e.get("template")),
                   maxcpu=int(e.get("maxcpu", 0)), maxmem=int(e.get("maxmem", 0)), mem=int(e.get("mem", 0)),
                   cpu=float(e.get("cpu", 0)), uptime=int(e.get("uptime", 0)), maxdisk=int(e.get("maxdisk", 0)),
                   tags=split_tags(e.get("tags")), lock=e.get("lock"))

    def to_dict(self) -> dict[str, Any]:
        d = Record.to_dict(self)
        d["tags"] = list(self.tags)
        return d


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
    out = [v for v in vms
           if (status is None or v.status == status) and (node is None or v.node == node)
           and (tag is None or tag in v.tags) and (templates is None or v.template == templates)]
    out.sort(key=lambda v: v.vmid)
    return out


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
