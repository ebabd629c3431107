"""VMID allocation inside one process (nothing on the server reserves an id)."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import GuardRefused

if TYPE_CHECKING:
    from ..cluster import Cluster

class VmidAllocator:
    """Hands out VMIDs inside one process without ever giving one out twice: the lowest id in the range
    that `/cluster/resources` does not list and that this process has not handed out (pain point #3;
    nothing on the server reserves an id, so a clone that hits `already exists` asks for the next one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._given: set[int] = set()

    def allocate(self, used: set[int], start: int, end: int) -> int:
        with self._lock:
            for vmid in range(start, end + 1):
                if vmid not in used and vmid not in self._given:
                    self._given.add(vmid)
                    return vmid
        raise GuardRefused(f"no free VMID left in the range {start}-{end}",
                           "widen vmid_ranges.vms in cluster-config.yaml or delete unused VMs")

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


def allocator_for(cluster: Cluster) -> VmidAllocator:
    """One allocator per Cluster object, shared by every thread that provisions through it."""
    with _ALLOCATORS_LOCK:
        a = _ALLOCATORS.get(cluster)
        if a is None:
            a = _ALLOCATORS[cluster] = VmidAllocator()
        return a


