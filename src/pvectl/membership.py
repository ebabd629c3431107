"""Cluster membership and quorum (GET /cluster/status): the cluster's name, quorum, and each
member's online state. Read by `Cluster.status()` and by the migration and drain checks."""

from __future__ import annotations

from .records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .session import Session


class NodeMembership(Record):
    __slots__ = ("name", "online", "nodeid", "ip", "local")

    name: str
    online: bool
    nodeid: int
    ip: str | None
    local: bool


class ClusterStatus(Record):
    __slots__ = ("name", "quorate", "nodes", "version")
    _defaults = {"version": None}

    name: str | None          # None for a standalone node (no `cluster` entry: pve-semantics §10.1)
    quorate: bool
    nodes: tuple[NodeMembership, ...]
    version: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.name, "quorate": self.quorate, "version": self.version,
                "nodes": [{"name": n.name, "online": n.online, "nodeid": n.nodeid, "ip": n.ip}
                          for n in self.nodes]}


def cluster_status(s: Session) -> ClusterStatus:
    """GET /cluster/status: name, quorum, and each member's online state."""
    entries = s.transport.get("/cluster/status")
    name: str | None = None
    quorate = True
    version = None
    nodes = []
    for e in entries:
        if e.get("type") == "cluster":
            name = e.get("name")
            quorate = bool(e.get("quorate"))
            version = e.get("version")
        elif e.get("type") == "node":
            nodes.append(NodeMembership(name=e["name"], online=bool(e.get("online")),
                                        nodeid=int(e.get("nodeid", 0)), ip=e.get("ip"),
                                        local=bool(e.get("local"))))
    nodes.sort(key=lambda n: (n.nodeid or 0, n.name))   # the server sends hash order
    return ClusterStatus(name=name, quorate=quorate, nodes=tuple(nodes), version=version)
