"""Writes that start a Proxmox task: send one (never twice), find the task it started when the answer
was lost, and hand back a `Task` bound to the operation's result.

Every task-starting operation (power, delete, resize, migrate, ...) goes through `start_task`:

    task = start_task(session, writer, write, result, deadline=deadline, finish=done)
    return task.wait() if wait else task

A dry run sends nothing: the result becomes `planned` (with the writer's planned writes) and the
`Task` has no UPID. Otherwise the result's `upid` is set, its outcome is `started` until `wait()`
calls `finish(TaskResult)`, which turns it into the final result.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import DeadlineExceeded, NodeUnreachable, PvectlError
from .tasks.task import Task

if TYPE_CHECKING:
    from collections.abc import Callable

    from .deadline import Deadline
    from .session import Session
    from .tasks.task import Progress, TaskResult
    from .writes import Write, Writer


class TaskOutcome(Protocol):
    """A result an operation fills in around its task (`OpResult`, `MigrationResult`, ...)."""

    outcome: str
    upid: str | None

    def plan(self, writer: Writer) -> None: ...


T = TypeVar("T", bound=TaskOutcome)
T2 = TypeVar("T2")


def start_task(session: Session, writer: Writer, write: Write, result: T, *, deadline: Deadline,
               finish: Callable[[TaskResult], T]) -> Task[T]:
    """Send `write` (it starts a task) and return the `Task` whose `wait()` gives the final result."""
    upid = send_task_write(session, writer, write)
    if upid is None:
        result.plan(writer)
        return Task.completed(session, result)
    result.upid, result.outcome = upid, "started"
    from .writes import hide_secrets

    session.emit("task_started", upid=upid, node=write.node, summary=hide_secrets(write.summary, write.params))
    return Task(session, upid, finish=finish, preview=copy.copy(result), writer=writer, deadline=deadline)


def wait_task(session: Session, writer: Writer, upid: str, deadline: Deadline,
              on_progress: Callable[[Progress], None] | None = None) -> TaskResult:
    """Wait for a task this operation started; its exit status goes to the audit log."""
    task = Task(session, upid, finish=lambda res: res, writer=writer, deadline=deadline)
    return wait_naming_task(task, on_progress=on_progress)


def wait_naming_task(task: Task[T2], **options: Any) -> T2:
    """`task.wait(...)`; a Ctrl-C while waiting carries the task's UPID (`upid` on the
    KeyboardInterrupt), so the caller can say which task goes on running on its node."""
    try:
        return task.wait(**options)
    except KeyboardInterrupt as exc:
        if task.upid is not None and not getattr(exc, "upid", None):
            exc.upid = str(task.upid)  # type: ignore[attr-defined]
        raise


def send_task_write(session: Session, writer: Writer, write: Write) -> str | None:
    """Send a write that starts a task; its UPID (None in a dry run). When the answer is lost after
    the write was sent, the task it started is looked up in the node's task list before anything is
    said (DESIGN §4: never resend, re-read the state); still unknown, the uncertain error is raised."""
    sent = time.time()
    try:
        upid: str | None = writer.send(write)
        return upid
    except KeyboardInterrupt as exc:
        # Ctrl-C while the write or its answer was on its way: one look (within the reporting grace)
        # for the task it started, so the interrupted command can name it; a second Ctrl-C ends the look
        if not getattr(exc, "upid", None):
            try:
                found = _started_task(session, write, sent)
            except (Exception, KeyboardInterrupt):  # noqa: BLE001 - the interrupt is what is reported
                found = None
            if found:
                exc.upid = found  # type: ignore[attr-defined]
        raise
    except NodeUnreachable as exc:
        if not exc.uncertain:
            raise
        found = _started_task(session, write, sent)
        if found is None:
            raise
        return found


# The task type each task-starting write starts (qemu-server API2/Qemu.pm: the
# `$rpcenv->fork_worker(TYPE, $vmid, ...)` of vm_start, vm_stop, vm_shutdown, vm_reboot, destroy_vm,
# migrate_vm).
_TASK_TYPES = {"start": "qmstart", "stop": "qmstop", "shutdown": "qmshutdown", "reboot": "qmreboot",
               "migrate": "qmigrate", "resize": "resize"}


def _node_tasks_since(session: Session, node: str, vmid: int | str, kind: str,
                      since: float) -> list[tuple[int, str]]:
    """(start time, UPID) of the `kind` tasks for VM `vmid` in `node`'s task list that began at `since`
    or later (a UPID's start time has a resolution of one second). Read with the reporting grace: it
    says what a write started, also after the deadline."""
    with session.transport.reporting():
        tasks: list[Any] = session.transport.get(f"/nodes/{node}/tasks", {"vmid": vmid, "typefilter": kind,
                                                                          "source": "all", "limit": 20}, node=node)
    return sorted((int(t.get("starttime", 0)), str(t["upid"])) for t in tasks
                  if isinstance(t, dict) and t.get("upid") and t.get("type") == kind
                  and str(t.get("id")) == str(vmid) and int(t.get("starttime", 0)) >= int(since) - 1)


def _started_task(session: Session, write: Write, sent: float) -> str | None:
    """The UPID of the task an uncertain `write` started: the newest task of its type for its VMID on
    its node since the write was sent, or None when there is none (the write did not arrive) or the
    node cannot tell now."""
    parts = write.path.strip("/").split("/")      # nodes/N/qemu/VMID[/status/ACTION]
    if len(parts) < 4 or parts[2] != "qemu":
        return None
    kind = "qmdestroy" if write.method == "DELETE" and len(parts) == 4 else _TASK_TYPES.get(parts[-1])
    if kind is None:
        return None
    try:
        found = _node_tasks_since(session, parts[1], parts[3], kind, sent)
    except PvectlError:
        return None
    return found[-1][1] if found else None


def tasks_started_since(session: Session, vmid: int, kind: str, since: float) -> list[str]:
    """UPIDs of `kind` tasks for VM `vmid` that began at `since` or later, on any node (after a Ctrl-C
    that may have cut a write's answer short: what did it start?). Nodes that cannot tell are skipped."""
    found: list[tuple[int, str]] = []
    for node in session.config.nodes:
        try:
            found += _node_tasks_since(session, node.name, vmid, kind, since)
        except PvectlError:
            continue
    return [upid for _, upid in sorted(found)]


def send_config_write(session: Session, writer: Writer, write: Write, changes: dict[str, Any],
                      deleted: list[str] | tuple[str, ...] = ()) -> None:
    """Send a config PUT (it starts no task). When its answer is lost after it was sent, the config is
    read again before anything is said (DESIGN §4: never resend, re-read the state): every change is
    there (done), or the config still has the digest the PUT carried (it was not applied: nothing
    changed, and the error says so); otherwise the uncertain error stands."""
    try:
        writer.send(write)
        return
    except NodeUnreachable as exc:
        if not exc.uncertain:
            raise
        lost = exc
    try:
        with session.transport.reporting():
            conf = session.transport.get(write.path, node=write.node)
    except PvectlError:
        raise lost from None
    if all(str(conf.get(k)) == str(v) for k, v in changes.items()) and not any(k in conf for k in deleted):
        return
    if conf.get("digest") != write.params.get("digest"):
        raise lost
    message = f"{lost.message}; read again: it was not applied, nothing changed"
    if isinstance(lost, DeadlineExceeded):
        raise DeadlineExceeded(message, hint="run the command again with a longer --timeout", method=lost.method,
                               path=lost.path, node=lost.node) from None
    raise NodeUnreachable(message, hint="run the command again", method=lost.method, path=lost.path,
                          node=lost.node) from None
