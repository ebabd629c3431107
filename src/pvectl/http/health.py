"""What a `Transport` knows about each node: which to skip, until when, and why.

Two kinds of failure are kept apart, because they call for different detours:
- unreachable: this client cannot connect to the node (refused, timed out). Other nodes may still
  reach it, so requests for its paths go through them; it is only skipped as an entry point.
- unresponsive: the node does not answer at all — no answer on a direct request, or a node that
  relayed to it reported 595/596 (pve-semantics §12.5). Any relay would wait for it too, so requests
  whose path names it fail fast, and it is skipped as an entry point as well.

Each mark lasts a back-off (`reprobe_after`, doubling per failure up to `reprobe_max`); then the node is
tried again (a re-probe) and an answer clears it. Threads that fail on a node at the same moment count
as one failure. Thread-safe.
"""

from __future__ import annotations

import threading
import time


class _Mark:
    __slots__ = ("failures", "until", "reason")

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0        # monotonic time before which the node is skipped
        self.reason = ""


class NodeHealth:
    def __init__(self, reprobe_after: float = 2.0, reprobe_max: float = 30.0) -> None:
        self.reprobe_after = reprobe_after
        self.reprobe_max = reprobe_max
        self._lock = threading.Lock()
        self._unreachable: dict[str, _Mark] = {}
        self._unresponsive: dict[str, _Mark] = {}

    # -- what happened ----------------------------------------------------------------------------

    def unreachable(self, name: str, reason: str) -> str:
        """This client could not connect to `name`."""
        return self._mark(self._unreachable, name, reason)

    def unresponsive(self, name: str, reason: str) -> str:
        """`name` did not answer, directly or through a relay."""
        return self._mark(self._unresponsive, name, reason)

    def answered(self, name: str) -> None:
        if name in self._unreachable or name in self._unresponsive:
            with self._lock:
                self._unreachable.pop(name, None)
                self._unresponsive.pop(name, None)

    # -- what to do -------------------------------------------------------------------------------

    def skip_entry(self, name: str) -> str | None:
        """Why `name` is not to be sent requests now (either mark in its back-off), else None."""
        return self._active(self._unreachable, name) or self._active(self._unresponsive, name)

    def skip_target(self, name: str) -> str | None:
        """Why requests for `name`'s paths fail fast now (it does not answer), else None."""
        return self._active(self._unresponsive, name)

    def suspect(self, name: str) -> bool:
        """True when `name` failed and has not answered since (its next request is a re-probe)."""
        return name in self._unreachable or name in self._unresponsive

    def failures(self, name: str) -> int:
        with self._lock:
            return max(m.failures for m in (self._unreachable.get(name, _Mark()), self._unresponsive.get(name, _Mark())))

    def backoff_left(self, name: str) -> float:
        """Seconds until `name` is tried again (0 when it is not skipped)."""
        now = time.monotonic()
        with self._lock:
            until = max((m.until for m in (self._unreachable.get(name), self._unresponsive.get(name)) if m), default=0.0)
        return max(until - now, 0.0)

    def skipped(self) -> dict[str, str]:
        """Every node skipped right now, with the reason."""
        now = time.monotonic()
        with self._lock:
            out = {name: m.reason for name, m in self._unreachable.items() if m.until > now}
            out.update({name: m.reason for name, m in self._unresponsive.items() if m.until > now})
        return out

    # -- internals --------------------------------------------------------------------------------

    def _mark(self, marks: dict[str, _Mark], name: str, reason: str) -> str:
        now = time.monotonic()
        with self._lock:
            m = marks.setdefault(name, _Mark())
            m.reason = reason
            if m.until <= now:   # threads that failed on it at the same moment count as one failure
                m.failures += 1
                m.until = now + min(self.reprobe_after * 2 ** (m.failures - 1), self.reprobe_max)
        return reason

    @staticmethod
    def _active(marks: dict[str, _Mark], name: str) -> str | None:
        m = marks.get(name)
        if m is None or m.until <= time.monotonic():
            return None
        return m.reason
