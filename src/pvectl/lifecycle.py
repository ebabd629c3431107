"""Moved: power, delete, resize and set are `pve.vms.*` (vms/power.py, vms/delete.py, vms/config.py),
`OpResult` is in results.py, and the task-write helpers are in taskwrites.py. These names stay
importable from here for code not yet moved."""

from __future__ import annotations

from .results import OpResult
from .taskwrites import send_task_write, tasks_started_since
from .taskwrites import wait_task as _wait

__all__ = ["OpResult", "_wait", "send_task_write", "tasks_started_since"]
