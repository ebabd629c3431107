"""VmidAllocator: counting the free VMIDs of a range before a bulk run (both ends included), the fallback
id that `skip` lands on is never handed out twice, and the per-Cluster record of clones in flight."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pvectl.errors import GuardRefused
from pvectl.provision import VmidAllocator, allocator_for


def test_free_count_counts_both_ends_of_the_range() -> None:
    a = VmidAllocator()
    assert a.free_count(set(), 100, 104, enough=100) == 5
    assert a.free_count({100, 104}, 100, 104, enough=100) == 3
    assert a.free_count(set(range(100, 110)), 100, 110, enough=5) == 1      # only the last one is free
    assert a.free_count(set(range(100, 111)), 100, 110, enough=5) == 0


def test_free_count_leaves_out_ids_this_process_handed_out() -> None:
    a = VmidAllocator()
    a.allocate(set(), 100, 104)
    assert a.claim(104)
    assert a.free_count({102}, 100, 104, enough=10) == 2                  # 101 and 103
    assert a.given() == {100, 104}                                         # counting takes nothing


def test_free_count_stops_at_enough() -> None:
    a = VmidAllocator()
    assert a.free_count(set(), 100, 10**6, enough=3) == 3
    assert a.free_count({100}, 100, 10**6, enough=1) == 1


def test_the_fallback_id_is_given_out_once() -> None:
    """Fewer free ids than `skip`: the lowest free one is taken; asking again finds the range full."""
    a = VmidAllocator()
    assert a.allocate({100, 101}, 100, 102, skip=4) == 102
    assert a.given() == {102}
    with pytest.raises(GuardRefused):
        a.allocate({100, 101}, 100, 102, skip=4)


def test_a_clusters_allocator_starts_with_no_clone_in_flight() -> None:
    class FakeTransport:      # the allocator is kept per connection (weakly keyed on the transport)
        pass

    in_flight = allocator_for(SimpleNamespace(transport=FakeTransport())).in_flight  # type: ignore[arg-type]
    assert in_flight.vmids("web") == [] and in_flight.name(120) is None
    in_flight.note(120, "web")
    assert in_flight.vmids("web") == [120]
