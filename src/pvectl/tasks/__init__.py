"""`pve.tasks`: Proxmox tasks (UPIDs) — one task's status, log and wait (`Task`), the task lists of
the nodes, diagnosis of a stuck task, and stopping one."""

from __future__ import annotations

from ..deadline import Deadline
from .listing import TaskSummary, list_tasks
from .task import Backoff, Progress, Task, TaskResult, TaskStatus, parse_progress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..session import Session
    from ..upid import Upid

__all__ = ["Backoff", "Deadline", "Progress", "Task", "TaskResult", "TaskStatus", "TaskSummary", "TasksApi", "parse_progress"]


class TasksApi:
    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, upid: str | Upid) -> Task:
        return Task(self._s, upid)

    def list(self, *, node: str | None = None, running: bool = False, vmid: int | None = None,
             limit: int = 50) -> list[TaskSummary]:
        """Recent tasks per node, newest first (`running=True`: only running ones)."""
        return list_tasks(self._s, node=node, running=running, vmid=vmid, limit=limit)

    def diagnose(self, ref: str | int, **options: Any) -> Any:
        """Why a task or a VM is stuck: a `diagnose.Diagnosis` (options: see `diagnose.diagnose`)."""
        from ..diagnose import diagnose

        return diagnose(self._s, ref, **options)
