"""Storage bandwidth shared by concurrent disk copies (clone, migrate, resize of a copy)."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

from ..tasks import TaskContext
from .common import fair_shares


@dataclass
class Copy:
    """One disk copy in flight (a full clone's drive, a migrated local disk)."""

    id: int
    label: str                       # "<UPID> <drive>"
    key: tuple[str, str | None]      # (storage, node); node None for shared storage
    size: int
    cap: float                       # bytes per PVE second this copy never exceeds (math.inf: none)
    started: float                   # model time (PVE seconds)
    done: float = 0.0                # bytes, as of `updated`
    rate: float = 0.0                # bytes per PVE second since `updated`
    updated: float = 0.0
    since: float = 0.0               # start of the current accounting segment


@dataclass(frozen=True)
class Segment:
    """Accounting: `copy` ran at `rate` (bytes per PVE second) from t0 to t1 (model time) with `sharers`
    copies (itself included) on its storage."""

    copy: int
    label: str
    key: tuple[str, str | None]
    t0: float
    t1: float
    rate: float
    sharers: int
    throughput: float


class StorageBandwidth:
    """Concurrent disk copies onto one storage share its write throughput (`Storage.throughput()`).

    This is a model of the hardware, not a Proxmox API rule. PVE does not arbitrate between concurrent
    `qemu-img convert` / drive-mirror / storage-migrate jobs; it only caps each one with `bwlimit`
    (the API parameter, or datacenter.cfg / storage.cfg). The storage itself is the bottleneck: twenty
    clones onto one node's LVM-thin pool, or into one Ceph pool, each get about a twentieth of its write
    bandwidth, so starting more copies at once does not make the whole batch finish sooner. Without this
    the simulator would let any number of copies run at full speed at once.

    A copy is charged to the storage it writes to: (storage, node) for local storage, (storage, None) for
    shared storage. Rates are a max-min fair split (`fair_shares`) among the copies on that storage,
    each capped by its own `cap`; they are recomputed whenever a copy starts or ends, so a copy speeds
    up as soon as another one finishes, and every copy's bytes are integrated over those piecewise
    constant rates. Time is model time in PVE seconds (wall clock / time scale). Every rate change is
    recorded as a `Segment` (the last 20000), for tests and benchmarks.
    """

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self.cond = threading.Condition()
        self._t0 = time.monotonic()
        self._active: dict[tuple[str, str | None], list[Copy]] = {}
        self._next = 0
        self.segments: collections.deque[Segment] = collections.deque(maxlen=20000)

    def now(self) -> float:
        """Model time in PVE seconds."""
        return (time.monotonic() - self._t0) / self.time_scale if self.time_scale > 0 else 0.0

    def active(self, key: tuple[str, str | None] | None = None) -> list[Copy]:
        with self.cond:
            if key is not None:
                return list(self._active.get(key, ()))
            return [c for cs in self._active.values() for c in cs]

    def wake(self) -> None:
        """Let waiting copies look at their task's stop flag now (a task was stopped)."""
        with self.cond:
            self.cond.notify_all()

    def _advance(self, key: tuple[str, str | None], now: float, throughput: float | None = None) -> None:
        """Bring every copy on `key` to `now`; with `throughput`, also close their accounting segments
        (the set of copies or their rates is about to change)."""
        copies = self._active.get(key, [])
        for c in copies:
            c.done = min(float(c.size), c.done + c.rate * (now - c.updated))
            c.updated = now
            if throughput is not None:
                if now > c.since:
                    self.segments.append(Segment(c.id, c.label, key, c.since, now, c.rate, len(copies),
                                                 throughput))
                c.since = now

    def _reshare(self, key: tuple[str, str | None], throughput: float) -> None:
        copies = self._active.get(key, [])
        for c, r in zip(copies, fair_shares(throughput, [c.cap for c in copies])):
            c.rate = r
        self.cond.notify_all()

    def begin(self, label: str, key: tuple[str, str | None], throughput: float, size: int, cap: float) -> Copy:
        with self.cond:
            now = self.now()
            self._advance(key, now, throughput)
            self._next += 1
            copy = Copy(self._next, label, key, size, cap, now, updated=now, since=now)
            self._active.setdefault(key, []).append(copy)
            self._reshare(key, throughput)
            return copy

    def end(self, copy: Copy, throughput: float) -> None:
        with self.cond:
            now = self.now()
            self._advance(copy.key, now, throughput)
            copies = self._active.get(copy.key, [])
            if copy in copies:
                copies.remove(copy)
            if not copies:
                self._active.pop(copy.key, None)
            self._reshare(copy.key, throughput)

    def wait_for(self, ctx: TaskContext, copy: Copy, target: int) -> float:
        """Block until `copy` has moved `target` bytes; returns the model time then. Raises Interrupted
        when the task is stopped."""
        with self.cond:
            while True:
                ctx.check_interrupt()
                now = self.now()
                self._advance(copy.key, now)
                left = target - copy.done
                if left <= 0.5 or self.time_scale <= 0:
                    return now
                wait = left / copy.rate * self.time_scale if copy.rate > 0 else 0.25
                self.cond.wait(min(max(wait, 0.0005), 0.25))
