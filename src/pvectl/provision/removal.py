"""Removing a VM that lost its name (provision/names.py, step 2): this run's own clone, or one that
another run made and could not remove (it stopped, or lost contact with the cluster, after its clone).

A DELETE that meets a lock held for a moment (`can't lock file … got timeout`, pve-semantics §3.3) or
a node that did not take the request is sent again; one whose answer was lost is looked at before it
is sent again (a write is never sent twice while the first may have been carried out)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..deadline import Deadline
from ..errors import Locked, NodeUnreachable, NotFound, PvectlError, TaskTimeout
from ..writes import Write

if TYPE_CHECKING:
    from .state import _Run

REMOVE_ATTEMPTS = 4          # DELETEs sent for one VM (a lock held a moment, a node that did not answer)
REMOVE_WAIT = 60.0           # seconds to wait for the removal task without a deadline


class Removal:
    """How removing one VM went: `error` None when it is gone (or its removal task runs on past the
    deadline: `upid`), else why it is still there."""

    __slots__ = ("upid", "error")

    def __init__(self, upid: str | None = None, error: PvectlError | None = None) -> None:
        self.upid = upid
        self.error = error


def remove_vm(run: _Run, node: str, vmid: int, summary: str, *, wait: bool = True) -> Removal:
    """DELETE VM `vmid` with purge (like the seed's delete) and, with `wait`, wait for its task."""
    write = Write("DELETE", f"/nodes/{node}/qemu/{vmid}", {"purge": 1, "destroy-unreferenced-disks": 1}, node, summary)
    attempt = 0
    while True:
        attempt += 1
        try:
            upid = run.writer.send(write)
            break
        except NotFound:
            return Removal()                  # removed meanwhile (by its maker or another run)
        except (Locked, NodeUnreachable) as exc:
            if isinstance(exc, NodeUnreachable) and exc.uncertain and _gone(run, vmid):
                return Removal()              # the DELETE whose answer was lost was carried out
            if attempt >= REMOVE_ATTEMPTS or run.stopped or not run.backoff(attempt, first=0.5, cap=4.0):
                return Removal(error=exc)
        except PvectlError as exc:
            return Removal(error=exc)
    if not upid or not wait or run.stopped:
        return Removal(str(upid) if upid else None)
    limit = run.deadline if run.deadline.remaining() is not None else Deadline(REMOVE_WAIT)
    from ..tasks.task import Task

    try:
        run.writer.task_done(str(upid), Task(run.session, str(upid)).wait(limit).exitstatus)
    except TaskTimeout:
        return Removal(str(upid))             # still removing at the deadline: its task says how it ends
    except PvectlError as exc:
        # another run removed it at the same moment: this task then fails on the missing config
        return Removal(str(upid), None if _gone(run, vmid) else exc)
    return Removal(str(upid))


def _gone(run: _Run, vmid: int) -> bool:
    try:
        with run.t.reporting():
            e = run.snapshot().vm(vmid)
    except PvectlError:
        return False
    return e is None or e.get("lock") == "destroyed"
