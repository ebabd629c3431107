"""VMID allocation inside one process (pvectl.provision.VmidAllocator): lowest free id, range ends inclusive,
never one id twice."""

from __future__ import annotations

import threading

import pytest

from pvectl.errors import GuardRefused
from pvectl.provision import VmidAllocator, allocator_for


def test_lowest_free_id_skipping_used_and_given() -> None:
    a = VmidAllocator()
    assert a.allocate({100, 102}, 100, 110) == 101
    assert a.allocate({100, 102}, 100, 110) == 103
    assert a.given() == {101, 103}


def test_the_last_vmid_of_the_range_is_allocated() -> None:
    a = VmidAllocator()
    assert a.allocate(set(range(100, 899)), 100, 899) == 899
    assert VmidAllocator().allocate(set(), 899, 899) == 899


def test_a_full_range_is_refused_with_the_range_and_a_hint() -> None:
    a = VmidAllocator()
    assert a.allocate({100}, 100, 101) == 101
    with pytest.raises(GuardRefused) as ei:
        a.allocate({100}, 100, 101)
    assert str(ei.value) == "no free VMID left in the range 100-101"
    assert ei.value.hint == "widen vmid_ranges.vms in cluster-config.yaml or delete unused VMs"
    assert ei.value.exit_code == 3


def test_claim_gives_an_explicit_id_once_and_allocate_skips_it() -> None:
    a = VmidAllocator()
    assert a.claim(105) is True
    assert a.claim(105) is False
    assert a.allocate(set(range(100, 105)), 100, 110) == 106
    given = a.given()
    given.add(1)                      # a copy: the allocator's own set is unchanged
    assert a.given() == {105, 106}


def test_threads_never_get_the_same_id() -> None:
    a = VmidAllocator()
    got: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            v = a.allocate(set(), 100, 999)
            with lock:
                got.append(v)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(100, 300))


def test_one_allocator_per_cluster_object() -> None:
    class FakeCluster:      # allocator_for keys on the object (weakly), nothing else
        pass

    c1, c2 = FakeCluster(), FakeCluster()
    assert allocator_for(c1) is allocator_for(c1)  # type: ignore[arg-type]
    assert allocator_for(c1) is not allocator_for(c2)  # type: ignore[arg-type]
