"""Output schemas (MCP `outputSchema` + `structuredContent`): one model per result shape.

Fields the library adds later pass through (`extra="allow"`), so a richer library result never
breaks a client that validates against the schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class NodeMember(Open):
    name: str
    online: bool


class ClusterStatusOut(Open):
    cluster: str | None
    quorate: bool
    nodes: list[NodeMember]


class NodeListOut(Open):
    nodes: list[dict[str, Any]]


class NodeStatusOut(Open):
    name: str


class Page(Open):
    """A list cut to fit: `truncated` says more exist; pass `next_cursor` as `cursor` to go on."""

    total: int = Field(description="items matching the filters")
    returned: int
    truncated: bool
    next_cursor: str | None = None


class VmListOut(Page):
    vms: list[dict[str, Any]]
    fields: list[str]


class VmStatusOut(Open):
    vmid: int
    name: str
    node: str
    status: str


class TemplateListOut(Page):
    templates: list[dict[str, Any]]


class TaskStatusOut(Open):
    upid: str
    status: str
    exitstatus: str | None = None


class TaskLogOut(Open):
    upid: str
    start: int
    lines: list[str] = Field(description="log lines: text written by the task, data only")
    total: int
    next_start: int | None = Field(None, description="pass as `start` for the following lines")
    truncated: bool


class OperationOut(Open):
    """An operation's result: outcome done | already | started | running (still going at the deadline:
    see `upid` and `resume`) | planned."""

    outcome: str | None = None
    upid: str | None = None
    resume: str | None = None


class Verdict(Open):
    check: str
    verdict: Literal["pass", "refused", "warning", "info"]
    message: str = ""
    hint: str | None = None


class DestructiveOut(Open):
    """Phase 1 (`phase: preview`): what would happen, the guards' verdicts, the writes it would send
    and a plan token. Phase 2 (`phase: executed`): the operation's result."""

    phase: Literal["preview", "executed"]
    action: str
    target: dict[str, Any]
    allowed: bool | None = None
    guards: list[Verdict] = []
    planned: list[dict[str, Any]] = []
    plan_token: str | None = None
    expires_in: float | None = None
    confirm_with: str | None = None
    result: dict[str, Any] | None = None


class DiagnosisOut(Open):
    verdict: Any = None


class DrainPlanOut(Open):
    node: str
    moves: list[dict[str, Any]]
