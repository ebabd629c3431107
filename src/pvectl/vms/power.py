"""Power: start, shutdown, stop, reboot — of one VM, or of several at once (`power_many`).

Each reads the VM's fresh status, applies the guards, then sends one write that starts a task, and
waits for it by one deadline unless `wait=False` (then it returns the `Task`). Starting a running VM
or stopping a stopped one is reported as `already` and sends nothing (Proxmox would start a task
that fails with `VM N already running`, or one that does nothing: pve-semantics row 3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..deadline import Deadline
from ..errors import GuardRefused, TaskFailed, UsageError
from ..guards import check_stop
from ..results import OpResult
from ..taskwrites import start_task
from ..tasks.task import Task, TasksInterrupted
from .reads import resolve

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..session import Session
    from ..tasks.task import TaskResult
    from ..writes import Write

POWER_ACTIONS = ("start", "shutdown", "stop", "reboot")

# How long a forced shutdown may take past the guest's own timeout: SIGTERM, then up to 10 s more
# before SIGKILL (qemu-server QemuServer.pm::_do_vm_stop; pve-semantics §5.1).
FORCE_STOP_MARGIN = 30.0

_DONE_DETAIL = {"start": "running", "shutdown": "stopped", "stop": "stopped (hard power-off)", "reboot": "rebooted"}


def wait_seconds(action: str, timeout: float | None) -> float | None:
    """How long a power operation given `timeout` may take. For a shutdown, `timeout` is the guest's
    time to power off (Proxmox's own `timeout`), so the wait is that plus what a forced stop may add."""
    if action == "shutdown" and timeout is not None:
        return float(timeout) + FORCE_STOP_MARGIN
    return timeout


def power_deadline(session: Session, action: str, timeout: Deadline | float | None) -> Deadline:
    """The operation's deadline: `timeout` as `wait_seconds` reads it, else the session's default."""
    if isinstance(timeout, Deadline) or timeout is None:
        return session.deadline(timeout)
    return Deadline(wait_seconds(action, timeout))


def _guest_timeout(timeout: Deadline | float | None, guest_timeout: int | None) -> int | None:
    if guest_timeout is not None:
        return guest_timeout
    if timeout is None or isinstance(timeout, Deadline):
        return None
    return max(1, int(timeout))


def plan_power(session: Session, ref: str | int, action: str, *, guest_timeout: int | None = None,
               force_stop: bool = False, yes: bool = False) -> tuple[OpResult, Write | None]:
    """Resolve the VM, read its fresh status and apply the guards (raising before any write): the
    result so far and the write to send (None: already in that state)."""
    if action not in POWER_ACTIONS:
        raise UsageError(f"unknown power action '{action}'", hint=f"one of: {', '.join(POWER_ACTIONS)}")
    vm = resolve(session, ref)
    st: dict[str, Any] = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/status/current", node=vm.node)
    status = st.get("status", "unknown")
    qmp = st.get("qmpstatus", status)
    res = OpResult(vm.vmid, vm.name, vm.node, action, "done")
    if st.get("template"):
        raise GuardRefused(f"VM {vm.vmid} ({vm.name}) is a template: it cannot be {action}ed",
                           "clone it first: pvectl vm clone TEMPLATE NAME")
    if action == "start" and status == "running":
        res.outcome, res.detail = "already", f"already running (qmpstatus {qmp})"
        return res, None
    if action in ("shutdown", "stop") and status == "stopped":
        res.outcome, res.detail = "already", "already stopped"
        return res, None
    if action == "reboot" and status != "running":
        raise GuardRefused(f"VM {vm.vmid} ({vm.name}) is {status}: only a running VM can be rebooted",
                           f"start it instead: pvectl vm start {vm.vmid}")
    if action == "stop":
        check_stop(vmid=vm.vmid, yes=yes)
    params: dict[str, Any] = {}
    if action == "shutdown":
        if guest_timeout is not None:
            params["timeout"] = guest_timeout
        if force_stop:
            params["forceStop"] = 1
    from ..writes import Write

    return res, Write("POST", f"/nodes/{vm.node}/qemu/{vm.vmid}/status/{action}", params, vm.node,
                      f"{action} VM {vm.vmid} ({vm.name}) on {vm.node}")


def _finisher(res: OpResult) -> Callable[[TaskResult], OpResult]:
    def finish(task: TaskResult) -> OpResult:
        res.outcome, res.exitstatus, res.warnings = "done", task.exitstatus, task.warnings
        res.detail = _DONE_DETAIL[res.action] + (f" ({len(task.warnings)} warnings)" if task.warnings else "")
        return res

    return finish


def _begin(session: Session, res: OpResult, write: Write | None, deadline: Deadline) -> Task[OpResult]:
    if write is None:
        return Task.completed(session, res)
    return start_task(session, session.writer(), write, res, deadline=deadline, finish=_finisher(res))


def power(session: Session, ref: str | int, action: str, *, wait: bool = True,
          timeout: Deadline | float | None = None, guest_timeout: int | None = None, force_stop: bool = False,
          yes: bool = False) -> OpResult | Task[OpResult]:
    """One VM: start | shutdown | stop | reboot (see the module's doc)."""
    deadline = power_deadline(session, action, timeout)
    with session.transport.bounded(deadline):
        res, write = plan_power(session, ref, action, guest_timeout=_guest_timeout(timeout, guest_timeout)
                                if action == "shutdown" else None, force_stop=force_stop, yes=yes)
        task = _begin(session, res, write, deadline)
        return task.wait() if wait else task


def power_many(session: Session, action: str, refs: Iterable[str | int], *, wait: bool = True, yes: bool = False,
               timeout: Deadline | float | None = None, guest_timeout: int | None = None,
               force_stop: bool = False) -> list[OpResult]:
    """Several VMs, all or nothing: every VM is resolved and every guard applied before the first
    task is started (a refusal or a typo for the last VM does not leave the first ones half done);
    then every task is started, then all are waited for, so N VMs take the time of the slowest.

    A task that fails makes its VM's result `failed` (with the exit status) and the others go on;
    the deadline passing raises `TaskTimeout`. Ctrl-C while waiting raises `TasksInterrupted`
    naming the tasks that run on."""
    deadline = power_deadline(session, action, timeout)
    guest = _guest_timeout(timeout, guest_timeout) if action == "shutdown" else None
    with session.transport.bounded(deadline):
        plans = [plan_power(session, ref, action, guest_timeout=guest, force_stop=force_stop, yes=yes)
                 for ref in refs]
        tasks = [_begin(session, res, write, deadline) for res, write in plans]
        if not wait:
            return [t.preview if t.preview is not None else res for t, (res, _) in zip(tasks, plans)]
        waiting = [str(t.upid) for t in tasks if t.upid is not None]
        results: list[OpResult] = []
        try:
            for task, (res, _) in zip(tasks, plans):
                try:
                    results.append(task.wait())
                except TaskFailed as exc:
                    res.outcome, res.exitstatus, res.detail = "failed", exc.exitstatus, exc.exitstatus
                    results.append(res)
                if task.upid is not None:
                    waiting.remove(str(task.upid))
        except KeyboardInterrupt as exc:
            raise TasksInterrupted(waiting) from exc
        return results
