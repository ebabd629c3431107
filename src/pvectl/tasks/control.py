"""Acting on a task by its UPID: parse and place it, follow its log, stop it (`pve.tasks`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..deadline import Deadline
from ..errors import DeadlineExceeded, TaskFailed, TaskTimeout, UsageError
from ..nodes.reads import require_node
from ..upid import Upid
from .task import Task, TaskResult

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..session import Session
    from ..writes import PlannedWrite, Writer

UPID_HINT = "a UPID looks like UPID:pve1:0000A1B2:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:"
# how long `stop` waits for the worker to end when the call has no deadline: SIGTERM, then SIGKILL
# after 5 s (pve-semantics §1.4), with room for the node to write the task's end
STOP_WAIT = 30.0


def parse_upid(text: str | Upid) -> Upid:
    """A UPID, or UsageError (exit 2) saying what one looks like."""
    if isinstance(text, Upid):
        return text
    try:
        return Upid.parse(str(text).strip())
    except ValueError as exc:
        raise UsageError(f"{exc}", hint=UPID_HINT) from None


def task_of(s: Session, upid: str | Upid) -> Task[TaskResult]:
    """The task of a UPID whose node belongs to the cluster."""
    parsed = parse_upid(upid)
    require_node(s, parsed.node)
    return Task(s, parsed)


def follow(task: Task[Any], on_line: Callable[[str], None], deadline: Deadline) -> str | None:
    """Hand each new log line to `on_line` as it arrives until the task stops; its exit status.
    TaskTimeout (exit 4, with the UPID) when it still runs at the deadline."""
    still_running = TaskTimeout(str(task), node=task.node,
                                message=f"task {task.upid.type if task.upid else '?'} on {task.node} is still "
                                        f"running at the deadline")
    delay = 0.1
    try:
        while True:
            for line in task.read_new_lines():
                on_line(line)
                delay = 0.1
            st = task.status()
            if not st.running:
                for line in task.read_new_lines():
                    on_line(line)
                return st.exitstatus
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise still_running
            time.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 1.5, 2.0)
    except DeadlineExceeded:
        raise still_running from None      # the deadline ended a read: the task was last seen running


@dataclass
class StopResult:
    """What `pve.tasks.stop` did: `outcome` stopped | already stopped | planned (dry run)."""

    upid: str
    node: str
    type: str
    outcome: str
    exitstatus: str | None = None
    planned: list[PlannedWrite] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"upid": self.upid, "node": self.node, "type": self.type, "outcome": self.outcome,
                             "exitstatus": self.exitstatus}
        if self.planned is not None:
            d["planned"] = [p.to_dict() for p in self.planned]
        return d


def stop_task(s: Session, upid: str | Upid, *, yes: bool = False, deadline: Deadline | float | None = None,
              writer: Writer | None = None) -> StopResult:
    """DELETE /nodes/{node}/tasks/{upid}: SIGTERM to the worker, SIGKILL after 5 s (pve-semantics §1.4).
    Needs `yes` (GuardRefused, exit 3); waits (up to the deadline, else STOP_WAIT s) until the task has
    stopped and returns its exit status. A task that already stopped is reported and nothing is sent."""
    from urllib.parse import quote

    from ..guards import require_yes
    from ..writes import Write

    task = task_of(s, upid)
    uid = parse_upid(upid)
    st = task.status()
    res = StopResult(str(uid), uid.node, uid.type, "already stopped", st.exitstatus)
    if not st.running:
        return res
    require_yes(yes, "stopping", f"task {uid.type} {uid.id} on {uid.node} ({uid})")
    writer = writer or s.writer(f"tasks.stop {uid}")
    writer.send(Write("DELETE", f"/nodes/{uid.node}/tasks/{quote(str(uid), safe='')}", {}, uid.node,
                      f"stop task {uid.type} {uid.id} on {uid.node}"))
    if writer.dry_run:
        res.outcome, res.exitstatus = "planned", None
        res.planned = writer.planned_writes()
        return res
    d = s.deadline(deadline)
    if d.at is None:
        d = Deadline(STOP_WAIT)
    try:
        exitstatus = task.wait(d).exitstatus
    except TaskFailed as exc:        # the usual end: `received interrupt` (or the worker's own text)
        exitstatus = exc.exitstatus
    writer.task_done(str(uid), exitstatus)
    res.outcome, res.exitstatus = "stopped", exitstatus
    return res
