"""`Deadline`: one point in time that bounds a whole workflow, and how much of it a request may use.

A command's `--timeout` (or a library call's `timeout=`) becomes one `Deadline`. The transport reads
it before every connect and every read: each socket timeout is the configured one or the time left,
whichever is shorter, so no call outlives the deadline by more than a scheduling tick. Imported on
the CLI's start-up path: standard library `time` only.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from contextlib import AbstractContextManager
    from typing import Any, Protocol, TypeVar

    R = TypeVar("R")

    class _Bounding(Protocol):
        def bounded(self, deadline: Deadline | None) -> AbstractContextManager[object]: ...

    class _HasTransport(Protocol):
        """What an operation's first argument (a Session) gives `bounds_every_request`."""

        @property
        def transport(self) -> _Bounding: ...

# A read may use half of the time left (at least MIN_READ_SLICE s, at most all of it), so that one
# node that does not answer leaves time for the other nodes and for the rest of the workflow.
READ_SHARE = 0.5
MIN_READ_SLICE = 1.0


class Deadline:
    """One deadline for a whole workflow (clone + configure + start + wait for IP). None = no limit."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.at = None if seconds is None else time.monotonic() + seconds

    @classmethod
    def of(cls, value: Deadline | float | None) -> Deadline:
        return value if isinstance(value, Deadline) else cls(value)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def __repr__(self) -> str:
        left = self.remaining()
        return "Deadline(None)" if left is None else f"Deadline({left:.3f} s left)"


def earliest(deadlines: Iterable[Deadline | None]) -> float | None:
    """Seconds left until the earliest of `deadlines` (None when none of them sets a limit)."""
    left: float | None = None
    for d in deadlines:
        r = d.remaining() if d is not None else None
        if r is not None and (left is None or r < left):
            left = r
    return left


def read_slice(left: float) -> float:
    """How long one read may wait for an answer when `left` seconds remain."""
    return max(min(left, MIN_READ_SLICE), left * READ_SHARE)


def bounds_every_request(operation: Callable[..., R]) -> Callable[..., R]:
    """For a library operation `operation(cluster, ..., deadline=...)`: every request it makes — the
    reads and guards before its write, the write, the task wait and the reads after — ends by that
    one deadline (DESIGN §5 "deadlines"), not only the task wait."""
    import functools

    @functools.wraps(operation)
    def bounded(session: _HasTransport, *args: Any, deadline: Deadline | float | None = None, **kw: Any) -> R:
        d = Deadline.of(deadline)
        with session.transport.bounded(d):
            return operation(session, *args, deadline=d, **kw)

    return bounded
