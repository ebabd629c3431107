"""Per-connection state of this process: VMID allocation (nothing on the server reserves an id) and
the clones this process has in flight with the names they make."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from ..errors import GuardRefused

if TYPE_CHECKING:
    from ..session import Session


class InFlight:
    """This process's own clones in flight (VMID -> name), shared by every run on one connection, so
    that a bulk run never waits for its own siblings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: dict[int, str] = {}

    def note(self, vmid: int, name: str) -> None:
        with self._lock:
            self._names[vmid] = name

    def done(self, vmid: int) -> None:
        with self._lock:
            self._names.pop(vmid, None)

    def name(self, vmid: int) -> str | None:
        with self._lock:
            return self._names.get(vmid)

    def vmids(self, name: str) -> list[int]:
        with self._lock:
            return [v for v, n in self._names.items() if n == name]


class VmidAllocator:
    """Hands out VMIDs inside one process without ever giving one out twice: the lowest id in the range
    that `/cluster/resources` does not list and that this process has not handed out (pain point #3;
    nothing on the server reserves an id, so a clone that hits `already exists` asks for the next one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._given: set[int] = set()
        self.in_flight = InFlight()        # this process's clones in flight and their names

    def allocate(self, used: AbstractSet[int], start: int, end: int, *, first: int | None = None,
                 skip: int = 0) -> int:
        """The lowest free VMID in `start`..`end` (both included), looking from `first` on (a caller that
        plans many VMs from one snapshot passes the id after the last one it got, so planning N VMs
        scans the range once). `skip` passes over that many free ids first (falling back to the
        lowest free one when fewer are left): clients that collided on one id spread out instead of
        all taking the next one together."""
        with self._lock:
            fallback = None
            for vmid in range(max(start, first or start), end + 1):
                if vmid not in used and vmid not in self._given:
                    if fallback is None:
                        fallback = vmid
                    if skip > 0:
                        skip -= 1
                        continue
                    self._given.add(vmid)
                    return vmid
            if fallback is not None:
                self._given.add(fallback)
                return fallback
        raise GuardRefused(f"no free VMID left in the range {start}-{end}",
                           "widen vmid_ranges.vms in cluster-config.yaml or delete unused VMs")

    def free_count(self, used: AbstractSet[int], start: int, end: int, *, enough: int) -> int:
        """How many VMIDs in `start`..`end` are free (counting stops at `enough`)."""
        n = 0
        with self._lock:
            for vmid in range(start, end + 1):
                if vmid not in used and vmid not in self._given:
                    n += 1
                    if n >= enough:
                        break
        return n

    def claim(self, vmid: int) -> bool:
        with self._lock:
            if vmid in self._given:
                return False
            self._given.add(vmid)
            return True

    def given(self) -> set[int]:
        with self._lock:
            return set(self._given)


_ALLOCATORS: weakref.WeakKeyDictionary[Any, VmidAllocator] = weakref.WeakKeyDictionary()
_ALLOCATORS_LOCK = threading.Lock()


def allocator_for(session: Session) -> VmidAllocator:
    """One allocator per connection to the cluster (the session's transport, which `with_options`
    copies share), used by every thread that provisions through it."""
    with _ALLOCATORS_LOCK:
        a = _ALLOCATORS.get(session.transport)
        if a is None:
            a = _ALLOCATORS[session.transport] = VmidAllocator()
        return a


def in_flight_for(session: Session) -> InFlight:
    """One registry per connection to the cluster (kept with its VMID allocator), shared by its threads."""
    return allocator_for(session).in_flight
