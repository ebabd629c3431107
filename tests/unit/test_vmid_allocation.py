"""VMID allocation inside one process (pvectl.provision.VmidAllocator): lowest free id, range ends inclusive,
never one id twice."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from pvectl.config import VmidRange
from pvectl.errors import AlreadyExists, GuardRefused
from pvectl.provision import CloneSpec, VmidAllocator, allocator_for
from pvectl.provision.plan import _choose_vmid
from pvectl.provision.state import _Snapshot


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


def test_one_allocator_per_connection() -> None:
    class FakeTransport:    # allocator_for keys on the session's transport (weakly), nothing else
        pass

    t1, t2 = FakeTransport(), FakeTransport()
    s1, s1_copy, s2 = SimpleNamespace(transport=t1), SimpleNamespace(transport=t1), SimpleNamespace(transport=t2)
    assert allocator_for(s1) is allocator_for(s1_copy)  # type: ignore[arg-type]   (with_options shares it)
    assert allocator_for(s1) is not allocator_for(s2)  # type: ignore[arg-type]


# -- choosing the VMID of one clone (explicit --vmid or the next free one) -----------------------------

def choose(vmid: int | None, *, rng: VmidRange | None = VmidRange(start=100, end=110),
           entries: list[dict[str, Any]] | None = None, allocator: VmidAllocator | None = None) -> tuple[int, bool]:
    run = SimpleNamespace(session=SimpleNamespace(config=SimpleNamespace(vmid_ranges=SimpleNamespace(vms=rng))),
                          allocator=allocator or VmidAllocator(), vmid_floor=None)
    spec = CloneSpec(template=9000, name="web", vmid=vmid)
    return _choose_vmid(run, spec, _Snapshot(entries or []))  # type: ignore[arg-type]


def test_next_free_vmid_in_the_configured_range() -> None:
    used = [{"type": "qemu", "vmid": v, "name": f"vm{v}", "node": "pve1"} for v in range(100, 110)]
    assert choose(None, entries=used) == (110, False)          # the range's last VMID
    with pytest.raises(GuardRefused, match=r"^no free VMID left in the range 100-110$"):
        choose(None, entries=used + [{"type": "lxc", "vmid": 110, "node": "pve2"}])


def test_without_a_range_any_vmid_from_100() -> None:
    assert choose(None, rng=None, entries=[{"type": "qemu", "vmid": 100, "node": "pve1"}]) == (101, False)
    assert choose(None, rng=None) == (100, False)
    assert choose(999999999, rng=None) == (999999999, True)


def test_explicit_vmid_inside_the_range_and_free() -> None:
    assert choose(110) == (110, True)
    assert choose(100) == (100, True)


@pytest.mark.parametrize("vmid", [99, 111])
def test_explicit_vmid_outside_the_range_is_refused(vmid: int) -> None:
    with pytest.raises(GuardRefused) as ei:
        choose(vmid)
    assert str(ei.value) == f"VMID {vmid} is outside vmid_ranges.vms (100-110)"
    assert ei.value.hint == "pick a VMID inside the range, or leave --vmid out to take the next free one"


def test_explicit_vmid_in_use_names_its_owner() -> None:
    with pytest.raises(AlreadyExists) as ei:
        choose(105, entries=[{"type": "qemu", "vmid": 105, "name": "db-01", "node": "pve2"}])
    assert str(ei.value) == "VMID 105 is already used by db-01 on pve2"
    assert ei.value.hint == "leave --vmid out to take the next free one"
    with pytest.raises(AlreadyExists, match=r"^VMID 106 is already used by lxc on pve3$"):
        choose(106, entries=[{"type": "lxc", "vmid": 106, "node": "pve3"}])


def test_explicit_vmid_given_earlier_in_this_run_is_refused() -> None:
    a = VmidAllocator()
    assert choose(107, allocator=a) == (107, True)
    assert a.given() == {107}
    with pytest.raises(AlreadyExists, match=r"^VMID 107 is already being used by this run$"):
        choose(107, allocator=a)


def test_skip_spreads_clients_that_collided_and_falls_back_to_the_lowest_free() -> None:
    a = VmidAllocator()
    assert a.allocate({100, 101}, 100, 110, skip=3) == 105          # free: 102 103 104 [105]
    assert a.allocate({100, 101}, 100, 110, skip=0) == 102
    assert a.allocate(set(range(100, 110)), 100, 110, skip=5) == 110   # only 110 left: taken anyway
