"""Tasks (UPIDs): status, log, waiting with a deadline, progress parsed from the log.

`Task.wait()` returns only when the task has stopped. `OK` and `WARNINGS: n` succeed (the warnings
are returned); anything else raises `TaskFailed` with the exit status and the last log lines; at the
deadline it raises `TaskTimeout` carrying the UPID. Polling starts at ~100 ms and backs off to a few
seconds, never past the time the progress lines predict for the end. The log is read incrementally
(`start=`), so a long clone costs one small request per poll, not the whole log again.

The deadline bounds every request the wait makes (the transport's `bounded()`), and no sleep goes
past it. When the task's node stops answering, the task runs on regardless: polling goes on (the
task's own node first, then any node that can relay to it) until the deadline, which then raises
`TaskTimeout` with the UPID; without a deadline, after `LOST_GRACE` s it raises `NodeUnreachable`.

Facts: task status has `status` running|stopped and `exitstatus` only once stopped; the exit status
is read from the final line `TASK OK` / `TASK WARNINGS: n` / `TASK ERROR: msg` (pve-common
UPID.pm::read_status; pve-semantics §1.2, §2). The log endpoint's `n` is 1-based, `start` 0-based.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ..deadline import Deadline
from ..errors import ApiError, DeadlineExceeded, NodeUnreachable, TaskFailed, TaskTimeout, UsageError
from ..upid import Upid

if TYPE_CHECKING:
    from ..session import Session
    from ..writes import Writer

R = TypeVar("R")
S = TypeVar("S")

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4, "PiB": 1024**5}
# qemu-img convert: `transferred 330.2 MiB of 32.0 GiB (1.01%)`; drive-mirror:
# `drive-scsi0: transferred 1.1 GiB of 20.0 GiB (5.70%) in 4s` (pve-semantics §2.1)
_COPY_RE = re.compile(r"transferred ([\d.]+) (\w+) of ([\d.]+) (\w+) \(([\d.]+)%\)")
# live migration: `migration active, transferred 1.1 GiB of 4.0 GiB VM-state, 399.1 MiB/s` (§2.2)
_MIGRATE_RE = re.compile(r"migration \w+, transferred ([\d.]+) (\w+) of ([\d.]+) (\w+) VM-state")


@dataclass(frozen=True, slots=True)
class Progress:
    """What the log says so far. `fraction` is None when the task prints no progress lines."""

    upid: str
    fraction: float | None
    done_bytes: int | None
    total_bytes: int | None
    line: str
    phase: str = "copy"          # copy | migrate


def parse_progress(line: str) -> tuple[float, int, int, str] | None:
    m = _COPY_RE.search(line)
    phase = "copy"
    if m is None:
        m = _MIGRATE_RE.search(line)
        phase = "migrate"
        if m is None:
            return None
        done = float(m.group(1)) * _UNITS.get(m.group(2), 1)
        total = float(m.group(3)) * _UNITS.get(m.group(4), 1)
        return (min(done / total, 1.0) if total else 0.0), int(done), int(total), phase
    done = float(m.group(1)) * _UNITS.get(m.group(2), 1)
    total = float(m.group(3)) * _UNITS.get(m.group(4), 1)
    return float(m.group(5)) / 100, int(done), int(total), phase


@dataclass(frozen=True, slots=True)
class TaskStatus:
    upid: str
    node: str
    type: str
    id: str
    user: str
    status: str                  # running | stopped
    exitstatus: str | None
    starttime: int

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ok(self) -> bool:
        # pve-common UPID.pm::status_is_error: everything but OK and WARNINGS: n is an error
        return self.exitstatus is not None and (self.exitstatus == "OK" or
                                                re.fullmatch(r"WARNINGS: \d+", self.exitstatus) is not None)

    def to_dict(self) -> dict[str, Any]:
        return {"upid": self.upid, "node": self.node, "type": self.type, "id": self.id, "user": self.user,
                "status": self.status, "exitstatus": self.exitstatus, "starttime": self.starttime}


@dataclass(slots=True)
class TaskResult:
    upid: str
    exitstatus: str
    warnings: list[str] = field(default_factory=list)
    polls: int = 0
    log_tail: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"upid": self.upid, "exitstatus": self.exitstatus, "warnings": self.warnings}


class TasksInterrupted(KeyboardInterrupt):
    """Ctrl-C while waiting for tasks that keep running on their nodes: `upids` names them."""

    def __init__(self, upids: list[str]) -> None:
        super().__init__(f"stopped waiting for {len(upids)} task(s)")
        self.upids = upids


class Backoff:
    """Poll intervals: 0.1 s, growing 1.5x up to `cap`, cut short when progress predicts the end."""

    def __init__(self, first: float = 0.1, factor: float = 1.5, cap: float = 3.0) -> None:
        self.first = first
        self.factor = factor
        self.cap = cap

    def intervals(self) -> Any:
        interval = self.first
        while True:
            yield interval
            interval = min(interval * self.factor, self.cap)


class Task(Generic[R]):
    """A Proxmox task, addressed by its UPID (polling goes to the UPID's node first).

    `pve.tasks.get(upid)` gives a `Task[TaskResult]`. An operation called with `wait=False` gives a
    `Task` of its own result type: `wait()` then returns what the blocking call would have returned
    (`pve.vms.start(x)` is `pve.vms.start(x, wait=False).wait()`), records the task's exit status in
    the audit log, and waits by the operation's deadline unless given another. When the operation
    started nothing (already in that state, or a dry run) `upid` is None and `wait()` returns the
    result at once. `preview` is the result as it stands before the task ends (outcome `started`).
    """

    LOST_GRACE = 15.0   # without a deadline: how long a node may stay silent before wait() gives up
    MIN_ANSWER = 0.5    # a wait whose deadline is (nearly) over still has this long for one poll

    upid: Upid | None
    preview: R | None

    @overload
    def __init__(self: Task[TaskResult], session: Session, upid: str | Upid) -> None: ...

    @overload
    def __init__(self, session: Session, upid: str | Upid | None, *, finish: Callable[[TaskResult], R],
                 preview: R | None = None, writer: Writer | None = None, deadline: Deadline | None = None) -> None: ...

    def __init__(self, session: Session, upid: str | Upid | None, *, finish: Callable[[TaskResult], R] | None = None,
                 preview: R | None = None, writer: Writer | None = None, deadline: Deadline | None = None) -> None:
        # (a `Cluster` passed for its session is accepted: `Task(pve, upid)`)
        self._s: Session = getattr(session, "session", session)
        self._t = session.transport
        self.upid = upid if isinstance(upid, Upid) or upid is None else Upid.parse(upid)
        self._finish_with = finish
        self.preview = preview
        self._writer = writer
        self._deadline = deadline
        self._result: R | None = None if upid is not None else preview
        self._log: list[str] = []       # lines read so far (incremental)
        self._log_total = 0

    @staticmethod
    def completed(session: Session, result: S) -> Task[S]:
        """A task of an operation that started nothing (already in that state, or a dry run)."""
        return Task(session, None, finish=lambda _res: result, preview=result)

    @property
    def _id(self) -> Upid:
        if self.upid is None:
            raise UsageError("this operation started no task (nothing to send, or a dry run)",
                             hint="its result is task.preview (or task.wait())")
        return self.upid

    def __str__(self) -> str:
        return str(self.upid) if self.upid is not None else ""

    def __repr__(self) -> str:
        return f"Task({str(self.upid)!r})" if self.upid is not None else f"Task(None, preview={self.preview!r})"

    @property
    def node(self) -> str:
        return self._id.node

    def _path(self, what: str) -> str:
        from urllib.parse import quote

        return f"/nodes/{self.node}/tasks/{quote(str(self._id), safe='')}/{what}"

    def status(self) -> TaskStatus:
        d = self._t.get(self._path("status"), node=self.node)
        return TaskStatus(upid=str(self.upid), node=self.node, type=d.get("type", self._id.type),
                          id=str(d.get("id", self._id.id)), user=self._id.user, status=d.get("status", "running"),
                          exitstatus=d.get("exitstatus"), starttime=int(d.get("starttime", self._id.starttime)))

    def log(self, start: int = 0, limit: int = 50) -> tuple[list[str], int]:
        """Lines [start, start+limit) (`limit=0`: all remaining) and the log's total line count."""
        res = self._t.request("GET", self._path("log"), {"start": start, "limit": limit}, node=self.node, raw=True)
        return [e.get("t", "") for e in (res.data or [])], int(res.total or 0)

    def read_new_lines(self) -> list[str]:
        """Lines appended since the last call (the log endpoint's `start` is 0-based)."""
        lines, total = self.log(start=len(self._log), limit=0)
        if total == 1 and lines and lines[0] == "no content":
            return []
        self._log.extend(lines)
        self._log_total = total
        return lines

    def tail(self, n: int = 10) -> list[str]:
        if not self._log:
            lines, total = self.log(start=0, limit=0)
            self._log = lines
        return self._log[-n:]

    def wait(self, timeout: Deadline | float | None = None, *,
             on_progress: Callable[[Progress], None] | None = None,
             on_line: Callable[[str], None] | None = None, backoff: Backoff | None = None,
             deadline: Deadline | float | None = None) -> R:
        """Wait until the task has stopped and return the operation's result (`TaskResult` for a
        task looked up by UPID). `timeout`: seconds or a `Deadline` (`deadline=` is the same); none
        given: the operation's deadline, else the session's default timeout. Raises `TaskFailed`
        (exit 1), `TaskTimeout` (exit 4, with the UPID to resume with)."""
        if self._result is not None:
            return self._result
        given = timeout if timeout is not None else deadline
        if given is not None:
            limit = Deadline.of(given)
        elif self._deadline is not None:
            limit = self._deadline
        else:
            limit = self._s.deadline(None)
        if on_progress is None and self._s.on_event is not None:
            on_progress = self._emit_progress
        left = limit.remaining()
        # even an expired deadline gets one answer (a task that has ended is reported, not timed out)
        scope = limit if left is None or left >= self.MIN_ANSWER else Deadline(self.MIN_ANSWER)
        with self._t.bounded(scope):
            try:
                res = self._poll(limit, on_progress, on_line, backoff or Backoff())
            except TaskFailed as exc:
                if self._writer is not None:
                    self._writer.task_done(str(self._id), exc.exitstatus)
                raise
            except KeyboardInterrupt as exc:
                if not getattr(exc, "upid", None):   # Ctrl-C: the caller names the task that goes on
                    exc.upid = str(self._id)  # type: ignore[attr-defined]
                raise
            if self._writer is not None:
                self._writer.task_done(res.upid, res.exitstatus)
            if self._s.on_event is not None:
                self._s.emit("task_done", upid=res.upid, exitstatus=res.exitstatus)
            result = res if self._finish_with is None else self._finish_with(res)
        self._result = result  # type: ignore[assignment]
        return result  # type: ignore[return-value]

    def _emit_progress(self, p: Progress) -> None:
        self._s.emit("progress", upid=p.upid, fraction=p.fraction, done_bytes=p.done_bytes,
                     total_bytes=p.total_bytes, phase=p.phase, line=p.line)

    def _poll(self, deadline: Deadline, on_progress: Callable[[Progress], None] | None,
              on_line: Callable[[str], None] | None, backoff: Backoff) -> TaskResult:
        started = time.monotonic()
        polls = 0
        want_log = on_progress is not None or on_line is not None
        last_fraction: float | None = None
        lost: NodeUnreachable | None = None       # the last failed poll, while the node does not answer
        lost_since = 0.0
        for interval in backoff.intervals():
            try:
                st: TaskStatus | None = self.status()
                lost = None
            except DeadlineExceeded:
                raise self._timeout(lost) from None       # the deadline, not the node, ended it
            except ApiError as exc:
                if not isinstance(exc, NodeUnreachable):
                    if not _read_failed_for_now(exc):
                        raise
                    exc = NodeUnreachable(exc.message, status=exc.status, method=exc.method, path=exc.path,
                                          node=exc.node)
                if lost is None:
                    lost_since = time.monotonic()
                lost, st = exc, None
                if deadline.remaining() is None and time.monotonic() - lost_since >= self.LOST_GRACE:
                    raise self._lost(exc) from None
            if st is not None:
                polls += 1
                new_lines = self._new_lines() if want_log else []
                for line in new_lines:
                    if on_line is not None:
                        on_line(line)
                    parsed = parse_progress(line)
                    if parsed is not None:
                        last_fraction = parsed[0]
                        if on_progress is not None:
                            on_progress(Progress(str(self.upid), parsed[0], parsed[1], parsed[2], line, parsed[3]))
                if not st.running:
                    return self._finish(st, polls)
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise self._timeout(lost)
            sleep = interval
            if last_fraction and 0 < last_fraction < 1:
                # the log's own progress predicts the end: do not sleep past it
                elapsed = time.monotonic() - started
                eta = elapsed * (1 - last_fraction) / last_fraction
                sleep = max(0.05, min(sleep, eta))
            if remaining is not None:
                sleep = min(sleep, max(remaining, 0.0))    # never sleep past the deadline
            time.sleep(sleep)
        raise AssertionError("unreachable")

    def _new_lines(self) -> list[str]:
        """New log lines for progress; a log read that fails only delays the progress display."""
        try:
            return self.read_new_lines()
        except ApiError as exc:
            if _read_failed_for_now(exc):
                return []
            raise

    def _timeout(self, lost: NodeUnreachable | None) -> TaskTimeout:
        if lost is None:
            return TaskTimeout(str(self.upid), node=self.node,
                               message=f"task {self._id.type} on {self.node} is still running at the deadline")
        return TaskTimeout(str(self.upid), node=self.node,
                           message=f"task {self._id.type} on {self.node}: its state is unknown at the deadline, "
                                   f"{self.node} did not answer ({lost.message})")

    def _lost(self, exc: NodeUnreachable) -> NodeUnreachable:
        """The task's node stopped answering while we waited: the task's outcome is unknown, so the
        error carries the UPID to resume with."""
        err = NodeUnreachable(f"lost contact with {self.node} while waiting for task {self.upid}: {exc.message}",
                              hint=f"the task's outcome is unknown; once {self.node} answers again: "
                                   f"pvectl task wait {self.upid}",
                              attempts=exc.attempts, status=exc.status, reason=exc.reason, method=exc.method,
                              path=exc.path, node=self.node)
        err.upid = str(self.upid)  # type: ignore[attr-defined]
        return err

    def _finish(self, st: TaskStatus, polls: int) -> TaskResult:
        exitstatus = st.exitstatus or "unexpected status"
        # the exit status decides; the log only adds detail (and may be unreadable for a moment)
        try:
            lines, _ = self.log(start=0, limit=0) if exitstatus != "OK" else (self._log, 0)
        except ApiError as exc:
            if not _read_failed_for_now(exc):
                raise
            lines = self._log
        self._log = lines
        if st.ok:
            warnings = [ln for ln in lines if ln.startswith("WARN: ")] if exitstatus != "OK" else []
            return TaskResult(str(self.upid), exitstatus, warnings, polls)
        tail = [ln for ln in lines if not ln.startswith("TASK ")][-8:]
        raise TaskFailed(str(self.upid), exitstatus, tail, node=self.node)


def _read_failed_for_now(exc: ApiError) -> bool:
    """A read of a task's status or log that says nothing about the task: no answer from the node, or a
    5xx answer (`got timeout`: the cluster file system was busy). The task goes on; read again."""
    return isinstance(exc, NodeUnreachable) or (type(exc) is ApiError and (exc.status or 0) >= 500)
