"""What a write operation returns: `OpResult` (power, delete, resize, set).

`outcome` says what happened: `done` (the change is made, its task ended OK), `already` (the VM was
in that state: nothing sent), `started` (the task runs on, not waited for), `planned` (a dry run:
nothing sent; `planned` holds the writes it would have sent), or `failed` (in a batch of several
VMs, this VM's task failed; the others went on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .writes import PlannedWrite, Writer

OUTCOMES = ("done", "already", "started", "planned", "failed")


@dataclass
class OpResult:
    """What one operation on one VM did."""

    vmid: int
    name: str
    node: str
    action: str
    outcome: str
    upid: str | None = None
    exitstatus: str | None = None
    detail: str = ""
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    planned: list[PlannedWrite] | None = None     # a dry run: what would have been sent

    def plan(self, writer: Writer) -> None:
        """Mark a dry run's result: outcome `planned`, with the writes the writer recorded."""
        self.outcome = "planned"
        self.planned = writer.planned_writes()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"vmid": self.vmid, "name": self.name, "node": self.node, "action": self.action,
                             "outcome": self.outcome, "upid": self.upid, "exitstatus": self.exitstatus,
                             "detail": self.detail}
        if self.warnings:
            d["warnings"] = self.warnings
        d.update(self.extra)
        if self.planned is not None:
            d["planned"] = [p.to_dict() for p in self.planned]
        return d
