"""The task engine: UPIDs, worker threads, task logs, and the per-VM config flocks.

Each task runs its worker function in a thread, as pvedaemon forks a worker process
(pve-common `RESTEnvironment.pm::fork_worker`). The worker writes log lines; when it returns the
engine appends `TASK OK` (or `TASK WARNINGS: n` after `warn()`), when it raises `TaskError` the
engine appends `TASK ERROR: <msg>` with embedded newlines turned into spaces (pve-semantics §1.5).
Durations are PVE seconds multiplied by the simulator's time scale.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .models import Node, TaskRecord


class TaskError(Exception):
    """Ends the running task with `TASK ERROR: <message>`."""


class Interrupted(TaskError):
    """The task was stopped (DELETE /nodes/{node}/tasks/{upid})."""


class LockTimeout(Exception):
    def __init__(self, vmid: int) -> None:
        # pve-common Tools.pm::lock_file_full prefixes run_with_timeout's "got timeout"
        # (pve-semantics §3.3).
        super().__init__(f"can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")


def format_upid(node: str, pid: int, pstart: int, starttime: int, dtype: str, wid: str, user: str) -> str:
    # pve-common UPID.pm::encode: sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", ...)
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{dtype}:{wid}:{user}:"


class ConfigLocks:
    """`/var/lock/qemu-server/lock-<vmid>.conf`: shared/exclusive flock with a timeout.

    The flock is node-local (pve-semantics §3.3): the same vmid locked on two nodes does not conflict.
    Callers pass PVE's timeout in PVE seconds (10 s for most, 1 s for clone: pve-semantics §3.3);
    it is scaled like every other duration.
    """

    def __init__(self, scale: Callable[[float], float]) -> None:
        self._scale = scale
        self._cond = threading.Condition()
        self._shared: dict[tuple[str, int], int] = {}
        self._exclusive: set[tuple[str, int]] = set()

    def _free(self, key: tuple[str, int], shared: bool) -> bool:
        if key in self._exclusive:
            return False
        return shared or self._shared.get(key, 0) == 0

    def acquire(self, node: str, vmid: int, *, shared: bool = False, timeout: float = 10.0,
                on_wait: Callable[[], None] | None = None) -> None:
        key = (node, vmid)
        deadline = time.monotonic() + self._scale(timeout)
        with self._cond:
            if not self._free(key, shared) and on_wait is not None:
                on_wait()
            while not self._free(key, shared):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LockTimeout(vmid)
                self._cond.wait(left)
            if shared:
                self._shared[key] = self._shared.get(key, 0) + 1
            else:
                self._exclusive.add(key)

    def release(self, node: str, vmid: int, *, shared: bool = False) -> None:
        key = (node, vmid)
        with self._cond:
            if shared:
                self._shared[key] = self._shared.get(key, 1) - 1
                if not self._shared[key]:
                    del self._shared[key]
            else:
                self._exclusive.discard(key)
            self._cond.notify_all()

    @contextmanager
    def hold(self, node: str, vmid: int, *, shared: bool = False, timeout: float = 10.0,
             on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        self.acquire(node, vmid, shared=shared, timeout=timeout, on_wait=on_wait)
        try:
            yield
        finally:
            self.release(node, vmid, shared=shared)

    def is_locked(self, node: str, vmid: int) -> bool:
        with self._cond:
            return (node, vmid) in self._exclusive or self._shared.get((node, vmid), 0) > 0


@dataclass
class Task:
    upid: str
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str
    record: TaskRecord
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    warnings: int = 0
    # what a SIGTERM leaves as the final error (workers install their own handlers:
    # clone -> "clone failed: interrupted by signal"; pve-semantics §1.4)
    interrupt_message: str = "received interrupt"
    # the line a worker logs before anything it does can fail (an injected failure logs it too):
    # clone_vm's `creating a clone of VM <vmid> with ID <newid>` (pve-semantics §2.1)
    intro: str | None = None

    @property
    def lines(self) -> list[str]:
        return self.record.lines


class TaskContext:
    """What a worker function gets: log, warn, sleep (interruptible), the lock helpers."""

    def __init__(self, engine: TaskEngine, task: Task) -> None:
        self.engine = engine
        self.task = task

    @property
    def upid(self) -> str:
        return self.task.upid

    def log(self, line: str) -> None:
        with self.engine.mu:
            self.task.lines.append(line)

    def warn(self, message: str) -> None:
        # RESTEnvironment.pm::warn / log_warn print "WARN: <msg>" and count it (pve-semantics §1.5)
        self.log(f"WARN: {message}")
        self.task.warnings += 1

    def sleep(self, pve_seconds: float) -> None:
        if self.task.stop.wait(self.engine.scale(pve_seconds)):
            raise Interrupted(self.task.interrupt_message)

    def check_interrupt(self) -> None:
        if self.task.stop.is_set():
            raise Interrupted(self.task.interrupt_message)

    @contextmanager
    def config_lock(self, vmid: int, *, shared: bool = False, timeout: float = 10.0) -> Iterator[None]:
        """Take the VM's flock on the task's node; prints `trying to acquire lock...` while waiting
        and ` OK` once it got it (pve-common Tools.pm::lock_file_full)."""
        waited: list[int] = []

        def on_wait() -> None:
            with self.engine.mu:
                waited.append(len(self.task.lines))
                self.task.lines.append("trying to acquire lock...")

        node = self.task.node
        self.engine.locks.acquire(node, vmid, shared=shared, timeout=timeout, on_wait=on_wait)
        if waited:
            with self.engine.mu:
                self.task.lines[waited[0]] += " OK"
        try:
            yield
        finally:
            self.engine.locks.release(node, vmid, shared=shared)


Worker = Callable[[TaskContext], None]


class TaskEngine:
    """Starts workers, keeps every node's task index, answers status/log/list/stop."""

    def __init__(self, nodes: dict[str, Node], records: list[TaskRecord], *, time_scale: float,
                 mu: threading.RLock) -> None:
        self.nodes = nodes
        self.time_scale = time_scale
        self.mu = mu                   # the backend's state lock; log appends take it too
        self.locks = ConfigLocks(self.scale)
        self.tasks: dict[str, Task] = {}
        self.finished: dict[str, TaskRecord] = {r.upid: r for r in records}
        self.failures: dict[str, list[str]] = {}     # injected: task type -> messages to fail with
        self._closing = threading.Event()

    def scale(self, pve_seconds: float) -> float:
        return max(0.0, pve_seconds * self.time_scale)

    def start(self, node: str, dtype: str, wid: str, user: str, worker: Worker, *,
              interrupt_message: str = "received interrupt", intro: str | None = None) -> str:
        now = time.time()
        with self.mu:
            n = self.nodes[node]
            n.next_pid += 1 + (n.next_pid % 7)
            pid = n.next_pid
            # pstart: process start in clock ticks since boot (USER_HZ 100; ProcFSTools.pm)
            pstart = int((now - n.boot_time) * 100)
            upid = format_upid(node, pid, pstart, int(now), dtype, wid, user)
            record = TaskRecord(upid=upid, node=node, lines=[], status="running")
            task = Task(upid, node, pid, pstart, int(now), dtype, wid, user, record,
                        interrupt_message=interrupt_message, intro=intro)
            self.tasks[upid] = task
        thread = threading.Thread(target=self._run, args=(task, worker), name=f"task-{dtype}-{wid}", daemon=True)
        thread.start()
        return upid

    def _run(self, task: Task, worker: Worker) -> None:
        ctx = TaskContext(self, task)
        final: str
        try:
            injected = self.failures.get(task.type)
            if injected:
                message = injected.pop(0)
                if task.intro is not None:
                    ctx.log(task.intro)
                ctx.sleep(0.5)
                raise TaskError(message)
            worker(ctx)
            final = f"TASK WARNINGS: {task.warnings}" if task.warnings else "TASK OK"
        except TaskError as exc:
            # fork_worker: chomp, newlines become spaces
            final = "TASK ERROR: " + str(exc).rstrip("\n").replace("\n", " ")
        except LockTimeout as exc:
            final = f"TASK ERROR: {exc}"
        except Exception as exc:  # a simulator bug must still end the task like PVE would
            final = f"TASK ERROR: {exc}"
        with self.mu:
            task.lines.append(final)
            task.record.status = "stopped"
            task.record.exitstatus = exitstatus_of(final)
            task.record.endtime = int(time.time())
            self.finished[task.upid] = task.record
        task.done.set()

    def get(self, upid: str) -> Task | None:
        return self.tasks.get(upid)

    def record(self, upid: str) -> TaskRecord | None:
        task = self.tasks.get(upid)
        return task.record if task else self.finished.get(upid)

    def stop(self, upid: str) -> bool:
        task = self.tasks.get(upid)
        if task is None or task.done.is_set():
            return False
        task.stop.set()
        return True

    def records(self) -> list[TaskRecord]:
        with self.mu:
            seen = dict(self.finished)
            for upid, task in self.tasks.items():
                seen[upid] = task.record
            return list(seen.values())

    def running_for(self, vmid: int) -> list[Task]:
        with self.mu:
            return [t for t in self.tasks.values() if t.id == str(vmid) and not t.done.is_set()]

    def close(self) -> None:
        self._closing.set()
        for task in list(self.tasks.values()):
            task.stop.set()


@dataclass(frozen=True)
class DecodedUpid:
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str


# pve-common UPID.pm::decode
_UPID_RE = re.compile(r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
                      r"([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$")


def decode_upid(upid: str) -> DecodedUpid:
    m = _UPID_RE.match(upid)
    if not m:
        raise ValueError(f"unable to parse worker upid '{upid}'")
    return DecodedUpid(m.group(1), int(m.group(3), 16), int(m.group(4), 16), int(m.group(5), 16), m.group(6),
                       m.group(7), m.group(8))


def exitstatus_of(last_line: str) -> str:
    """pve-common UPID.pm::read_status: the exit status from the final log line."""
    if last_line == "TASK OK":
        return "OK"
    if last_line.startswith("TASK ERROR: "):
        return last_line[len("TASK ERROR: "):]
    if last_line.startswith("TASK WARNINGS: "):
        return last_line[len("TASK "):]
    return "unexpected status"
