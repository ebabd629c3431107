"""The task lists of the nodes (GET /nodes/{node}/tasks; pve-semantics §1.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..nodes.reads import list_nodes

if TYPE_CHECKING:
    from ..session import Session


@dataclass(frozen=True, slots=True)
class TaskSummary:
    upid: str
    node: str
    type: str
    id: str
    user: str
    status: str                  # RUNNING, OK, WARNINGS: n, or the error text
    starttime: int
    endtime: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"upid": self.upid, "node": self.node, "type": self.type, "id": self.id, "user": self.user,
                "status": self.status, "starttime": self.starttime, "endtime": self.endtime}


def list_tasks(s: Session, *, node: str | None = None, running: bool = False, vmid: int | None = None,
               limit: int = 50) -> list[TaskSummary]:
    """Tasks per node, newest first. `source=all` so running tasks are included; `running=True`
    keeps only those (`source=active`)."""
    nodes = [node] if node else [n.name for n in list_nodes(s) if n.status == "online"]
    out: list[TaskSummary] = []
    for name in nodes:
        params: dict[str, Any] = {"source": "active" if running else "all", "limit": limit}
        if vmid is not None:
            params["vmid"] = vmid
        for e in s.transport.get(f"/nodes/{name}/tasks", params, node=name):
            user = e.get("user", "")
            if e.get("tokenid"):
                user = f"{user}!{e['tokenid']}"
            out.append(TaskSummary(upid=e["upid"], node=e.get("node", name), type=e.get("type", ""),
                                   id=str(e.get("id", "")), user=user, status=e.get("status", ""),
                                   starttime=int(e.get("starttime", 0)), endtime=e.get("endtime")))
    out.sort(key=lambda t: t.starttime, reverse=True)
    return out
