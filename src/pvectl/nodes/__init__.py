"""`pve.nodes`: node reads and the node drain, as methods (`NodesApi`)."""

from __future__ import annotations

from .reads import NodeStatus, NodeSummary, list_nodes, node_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..session import Session

__all__ = ["NodeStatus", "NodeSummary", "NodesApi"]


class NodesApi:
    def __init__(self, session: Session) -> None:
        self._s = session

    def list(self) -> list[NodeSummary]:
        """Every member with cpu, memory and uptime (offline nodes listed as `offline`)."""
        return list_nodes(self._s)

    def status(self, name: str) -> NodeStatus:
        return node_status(self._s, name)

    def drain_plan(self, name: str, **options: Any) -> Any:
        """Where each VM of the node would go (`drain.DrainPlan`); sends nothing."""
        from ..drain import plan

        return plan(self._s, name, **options)

    def drain(self, name: str, **options: Any) -> Any:
        """Empty the node: plan per VM, migrate in parallel (`drain.DrainResult`; see `drain.drain`)."""
        from ..drain import drain

        return drain(self._s, name, writer=self._s.writer(f"nodes.drain {name}"), **options)
