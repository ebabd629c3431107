"""`pve.nodes`: node reads and the node drain, as methods (`NodesApi`)."""

from __future__ import annotations

from .reads import NodeStatus, NodeSummary, list_nodes, node_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..deadline import Deadline
    from ..drain import DrainPlan, DrainResult
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

    def drain_plan(self, name: str | None = None, *, undo: str | DrainPlan | None = None,
                   to: Sequence[str] | None = None, include_stopped: bool = False,
                   with_local_disks: bool = False) -> DrainPlan:
        """Where each VM of node `name` would go (`to`: only these targets; stopped VMs too with
        `include_stopped`), or with `undo` (a saved plan file or a `DrainPlan`) how the VMs a drain
        moved go back. Reads only."""
        from ..drain import drain_plan

        return drain_plan(self._s, name, undo=undo, to=to, include_stopped=include_stopped,
                          with_local_disks=with_local_disks)

    def drain(self, name: str | None = None, *, undo: str | DrainPlan | None = None, yes: bool = False,
              to: Sequence[str] | None = None, include_stopped: bool = False, with_local_disks: bool = False,
              parallel: int | None = None, timeout: Deadline | float | None = None,
              plan_file: str | None = None) -> DrainResult:
        """Empty node `name` (or move back what the drain `undo` moved): the plan, then `parallel`
        migrations at once (default: datacenter.cfg max_workers, else 4), each checked again on fresh
        state; a failed move is reported and the rest go on. Needs `yes=True` (GuardRefused, exit 3),
        also on a dry-run cluster, where every move is checked and `planned` holds its migration.
        The plan and each outcome are saved to `plan_file` if given. Progress: the session's
        `on_event` gets `{"event": "drain", "kind": "plan" | "start" | "progress" | "done", ...}`."""
        from ..drain import drain

        return drain(self._s, name, undo=undo, yes=yes, to=to, include_stopped=include_stopped,
                     with_local_disks=with_local_disks, parallel=parallel, deadline=timeout, plan_file=plan_file)
