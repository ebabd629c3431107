"""Nodes: the cluster-wide node list (one call) and one node's detailed status."""

from __future__ import annotations

from ..records import Record

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from ..session import Session


class NodeSummary(Record):
    """A node as `/cluster/resources?type=node` reports it. Offline nodes carry no stats
    (pve-semantics §10.2), so those fields are None."""

    __slots__ = ("name", "status", "cpu", "maxcpu", "mem", "maxmem", "uptime")

    name: str
    status: str                  # online | offline | unknown
    cpu: float | None
    maxcpu: int | None
    mem: int | None
    maxmem: int | None
    uptime: int | None

    @property
    def mem_free(self) -> int | None:
        return None if self.mem is None or self.maxmem is None else self.maxmem - self.mem

    def to_dict(self) -> dict[str, Any]:
        return Record.to_dict(self)


class NodeStatus(Record):
    """GET /nodes/{node}/status (pve-manager API2/Nodes.pm::status; pve-semantics §11)."""

    __slots__ = ("name", "cpu", "cpus", "cpu_model", "loadavg", "memory_used", "memory_total", "memory_free",
                 "swap_used", "swap_total", "rootfs_used", "rootfs_total", "uptime", "pveversion", "kversion")

    name: str
    cpu: float
    cpus: int
    cpu_model: str
    loadavg: tuple[float, ...]
    memory_used: int
    memory_total: int
    memory_free: int
    swap_used: int
    swap_total: int
    rootfs_used: int
    rootfs_total: int
    uptime: int
    pveversion: str
    kversion: str

    def to_dict(self) -> dict[str, Any]:
        d = Record.to_dict(self)
        d["loadavg"] = list(self.loadavg)
        return d


def list_nodes(s: Session) -> list[NodeSummary]:
    """Every member with cpu, memory and uptime from ONE cluster-wide call; offline nodes
    are listed with status `offline` instead of failing the whole read."""
    out = []
    for e in s.transport.get("/cluster/resources", {"type": "node"}):
        online = e.get("status") == "online" and "maxmem" in e
        out.append(NodeSummary(
            name=e["node"], status=e.get("status", "unknown"),
            cpu=e.get("cpu") if online else None, maxcpu=e.get("maxcpu") if online else None,
            mem=e.get("mem") if online else None, maxmem=e.get("maxmem") if online else None,
            uptime=e.get("uptime") if online else None))
    out.sort(key=lambda n: n.name)
    return out

def node_status(s: Session, name: str) -> NodeStatus:
    d = s.transport.get(f"/nodes/{name}/status", node=name)
    mem = d.get("memory", {})
    swap = d.get("swap", {})
    rootfs = d.get("rootfs", {})
    cpuinfo = d.get("cpuinfo", {})
    return NodeStatus(
        name=name, cpu=float(d.get("cpu", 0)), cpus=int(cpuinfo.get("cpus", 0)),
        cpu_model=str(cpuinfo.get("model", "")),
        # loadavg is an array of strings (pve-semantics §11)
        loadavg=_loadavg(d.get("loadavg")),
        memory_used=int(mem.get("used", 0)), memory_total=int(mem.get("total", 0)),
        memory_free=int(mem.get("total", 0)) - int(mem.get("used", 0)),
        swap_used=int(swap.get("used", 0)), swap_total=int(swap.get("total", 0)),
        rootfs_used=int(rootfs.get("used", 0)), rootfs_total=int(rootfs.get("total", 0)),
        uptime=int(d.get("uptime", 0)), pveversion=str(d.get("pveversion", "")),
        kversion=str(d.get("kversion", "")))



def _loadavg(values: Any) -> tuple[float, ...]:
    """The load averages that parse as numbers; an odd entry is left out rather than failing the read."""
    out = []
    for x in values if isinstance(values, (list, tuple)) else ():
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            continue
    return tuple(out)


def require_node(s: Session, name: str) -> None:
    """An unknown node is a usage error (exit 2), found before any request that names it: the config's
    nodes are known, any other name is looked up in the cluster's node list."""
    if s.config.has_node(name):
        return
    known = {n.name for n in list_nodes(s)}
    if name not in known:
        from ..errors import UsageError

        raise UsageError(f"no node '{name}' in the cluster (nodes: {', '.join(sorted(known))})")
