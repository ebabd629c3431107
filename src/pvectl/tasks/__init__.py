"""`pve.tasks`: Proxmox tasks (UPIDs) — one task's status, log and wait (`Task`), the task lists of
the nodes, diagnosis of a stuck task, and stopping one."""

from __future__ import annotations

from ..deadline import Deadline
from ..nodes.reads import require_node
from .control import StopResult, follow, stop_task, task_of
from .listing import TaskSummary, list_tasks
from .task import (
    Backoff,
    Progress,
    Task,
    TaskResult,
    TasksInterrupted,
    TaskStatus,
    parse_progress,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable

    from ..diagnose import Diagnosis
    from ..session import Session
    from ..upid import Upid

__all__ = ["Backoff", "Deadline", "Progress", "StopResult", "Task", "TaskResult", "TaskStatus", "TaskSummary", "TasksApi",
           "TasksInterrupted", "parse_progress"]


class TasksApi:
    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, upid: str | Upid) -> Task[TaskResult]:
        """The task of a UPID (UsageError, exit 2, for text that is not one or a node not in the
        cluster)."""
        return task_of(self._s, upid)

    def list(self, *, node: str | None = None, running: bool = False, vm: str | int | None = None,
             limit: int = 50) -> builtins.list[TaskSummary]:
        """Recent tasks per node, newest first (`running=True`: only running ones; `vm`: a VMID —
        also of a VM deleted since — or a unique name, only its tasks)."""
        if node:
            require_node(self._s, node)
        vmid: int | None = None
        if isinstance(vm, int):
            vmid = vm
        elif vm is not None:
            from ..vms.reads import resolve

            vmid = int(vm) if vm.isascii() and vm.isdigit() else resolve(self._s, vm).vmid
        return list_tasks(self._s, node=node, running=running, vmid=vmid, limit=limit)

    def follow(self, upid: str | Upid, on_line: Callable[[str], None], *,
               timeout: Deadline | float | None = None) -> str | None:
        """Hand each log line to `on_line` as it arrives (from the first) until the task stops; returns
        its exit status. TaskTimeout (exit 4) when it still runs at the deadline."""
        task = task_of(self._s, upid)
        return follow(task, on_line, self._s.deadline(timeout))

    def diagnose(self, ref: str | int, *, use_ssh: bool = True, ssh_config: str | None = None,
                 unlock: bool = False, yes: bool = False) -> Diagnosis:
        """Why a task (UPID) or a VM (VMID or name) is stuck: API evidence, and over ssh as
        `credentials.ssh_user` (`ssh_config`: a file for `ssh -F`) the node's; a verdict and the next
        commands. Changes nothing, unless `unlock=True, yes=True` and ssh confirmed a stale lock."""
        from ..diagnose import diagnose, ssh_from_config

        ssh = ssh_from_config(self._s, config_file=ssh_config) if use_ssh else None
        return diagnose(self._s, ref, ssh=ssh, use_ssh=use_ssh, unlock=unlock, yes=yes)

    def stop(self, upid: str | Upid, *, yes: bool = False, timeout: Deadline | float | None = None) -> StopResult:
        """Stop a running task (Proxmox: SIGTERM, SIGKILL after 5 s); needs `yes` (GuardRefused, exit 3).
        Waits until it has stopped (up to the deadline, else 30 s). An ended task: `already stopped`."""
        return stop_task(self._s, upid, yes=yes, deadline=timeout)
