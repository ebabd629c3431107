"""Storage bandwidth: concurrent disk copies onto one storage share its write throughput.

A model of the hardware, not a Proxmox rule (backend.StorageBandwidth). Nothing here times anything:
the assertions read the simulator's own accounting (each copy's current rate, and the rate segments it
records in model time), at checkpoints where the set of copies in flight is known.
"""

from __future__ import annotations

import math
import urllib.parse

import pytest
from apiharness import Client, wait_until

from pvectl.sim.backend import Backend, Segment, fair_shares
from pvectl.sim.models import COPY_THROUGHPUT, GIB, MIB, Storage

LVM_PVE1 = ("local-lvm", "pve1")
LVM_PVE2 = ("local-lvm", "pve2")
CEPH = ("ceph-vm", None)
SLOW = 100 * MIB        # slow enough that no copy ends between two checkpoints; tasks are stopped at the end


def rates(backend: Backend, key: tuple[str, str | None]) -> dict[str, float]:
    """Current rate (bytes per PVE second) of every copy in flight on `key`, by task UPID."""
    return {c.label.split(" ")[0]: c.rate for c in backend.bandwidth.active(key)}


def clone(client: Client, node: str, template: int, newid: int, **params: object) -> str:
    return client.ok("POST", f"/nodes/{node}/qemu/{template}/clone", {"newid": newid, "full": 1, **params})


def stop(client: Client, upid: str) -> None:
    node = upid.split(":")[1]
    client.ok("DELETE", f"/nodes/{node}/tasks/{urllib.parse.quote(upid, safe='')}")
    client.wait(upid)


def overload(segments: list[Segment]) -> list[tuple[float, float, float]]:
    """(time, summed rate, throughput) wherever the copies on one storage together exceed its throughput."""
    out = []
    for s in segments:
        at = s.t0
        total = sum(o.rate for o in segments if o.key == s.key and o.t0 <= at < o.t1)
        if total > s.throughput * (1 + 1e-9):
            out.append((at, total, s.throughput))
    return out


# ---------------------------------------------------------------- the split
def test_fair_shares() -> None:
    inf = math.inf
    assert fair_shares(900, [inf]) == [900]
    assert fair_shares(900, [inf, inf]) == [450, 450]
    assert fair_shares(900, [inf, inf, inf]) == [300, 300, 300]
    # a copy capped below an equal share (bwlimit) keeps its cap; the others share the rest
    assert fair_shares(900, [100, inf, inf]) == [100, 400, 400]
    assert fair_shares(900, [inf, 1000, 100]) == [400, 400, 100]
    # caps above the share change nothing; caps below the total leave bandwidth unused
    assert fair_shares(900, [2000, 2000]) == [450, 450]
    assert fair_shares(900, [100, 200]) == [100, 200]
    assert fair_shares(900, []) == []


def test_throughput_defaults() -> None:
    assert Storage("local-lvm", "lvmthin", "images", False, GIB).throughput() == 900 * MIB
    assert Storage("ceph-vm", "rbd", "images", True, GIB).throughput() == COPY_THROUGHPUT["rbd"]
    assert Storage("x", "lvmthin", "images", False, GIB, copy_throughput=5 * MIB).throughput() == 5 * MIB
    assert Storage("x", "unknown", "images", False, GIB).throughput() == 900 * MIB


# ---------------------------------------------------------------- clones share one storage
def test_two_clones_onto_one_storage_share_it(client: Client, backend: Backend) -> None:
    backend.state.storages["local-lvm"].copy_throughput = SLOW
    a = clone(client, "pve1", 9000, 301)
    b = clone(client, "pve1", 9000, 302)
    # 9001 lives on pve2: its local-lvm is another pool, so that copy runs at full speed meanwhile
    c = clone(client, "pve2", 9001, 303)
    wait_until(lambda: len(backend.bandwidth.active(LVM_PVE1)) == 2 and backend.bandwidth.active(LVM_PVE2),
               "three copies in flight")
    assert rates(backend, LVM_PVE1) == {a: SLOW / 2, b: SLOW / 2}
    assert rates(backend, LVM_PVE2) == {c: SLOW}

    # when one ends, the other gets the whole storage again
    stop(client, b)
    assert rates(backend, LVM_PVE1) == {a: SLOW}
    # a third one halves it again
    d = clone(client, "pve1", 9000, 304)
    wait_until(lambda: len(backend.bandwidth.active(LVM_PVE1)) == 2, "the new copy in flight")
    assert rates(backend, LVM_PVE1) == {a: SLOW / 2, d: SLOW / 2}
    for upid in (a, c, d):
        stop(client, upid)
    assert not backend.bandwidth.active()

    # the accounting: copy a ran alone, then shared with b, alone, then shared with d
    seg_a = [s for s in backend.bandwidth.segments if s.label.startswith(a)]
    shares = [(s.sharers, s.rate) for s in seg_a]
    assert [k for i, k in enumerate(shares) if i == 0 or shares[i - 1] != k][-3:] == \
        [(2, SLOW / 2), (1, SLOW), (2, SLOW / 2)]
    assert not overload(list(backend.bandwidth.segments))


def test_bwlimit_caps_one_copy_and_the_other_gets_the_rest(client: Client, backend: Backend) -> None:
    backend.state.storages["local-lvm"].copy_throughput = SLOW
    a = clone(client, "pve1", 9000, 301, bwlimit=10240)         # KiB/s: 10 MiB/s
    b = clone(client, "pve1", 9000, 302)
    wait_until(lambda: len(backend.bandwidth.active(LVM_PVE1)) == 2, "two copies in flight")
    assert rates(backend, LVM_PVE1) == {a: 10 * MIB, b: SLOW - 10 * MIB}
    stop(client, b)
    assert rates(backend, LVM_PVE1) == {a: 10 * MIB}            # bwlimit still caps it when alone
    stop(client, a)


def test_shared_storage_is_one_pool_for_every_node(client: Client, backend: Backend) -> None:
    backend.state.storages["ceph-vm"].copy_throughput = SLOW
    a = clone(client, "pve1", 9000, 301, storage="ceph-vm")
    b = clone(client, "pve2", 9001, 302, storage="ceph-vm")
    wait_until(lambda: len(backend.bandwidth.active(CEPH)) == 2, "two copies in flight")
    assert rates(backend, CEPH) == {a: SLOW / 2, b: SLOW / 2}
    assert not backend.bandwidth.active(LVM_PVE1) and not backend.bandwidth.active(LVM_PVE2)
    stop(client, a)
    stop(client, b)


def test_migration_disk_copy_shares_the_target_storage(client: Client, backend: Backend) -> None:
    backend.state.storages["local-lvm"].copy_throughput = SLOW
    c = clone(client, "pve2", 9001, 301)
    wait_until(lambda: backend.bandwidth.active(LVM_PVE2), "the clone's copy in flight")
    # offline migration of VM 103 (pve1 -> pve2): its local disk is written into pve2's local-lvm
    m = client.ok("POST", "/nodes/pve1/qemu/103/migrate", {"target": "pve2"})
    # (its 4 MiB cloud-init volume goes first, capped by the copy's minimum duration; wait for scsi0)
    wait_until(lambda: any(x.label == f"{m} scsi0" for x in backend.bandwidth.active(LVM_PVE2)),
               "the migration's copy of scsi0 in flight")
    assert rates(backend, LVM_PVE2) == {c: SLOW / 2, m: SLOW / 2}
    assert not backend.bandwidth.active(LVM_PVE1)
    stop(client, m)
    assert client.wait(m)["exitstatus"] == "migration aborted"
    assert rates(backend, LVM_PVE2) == {c: SLOW}
    stop(client, c)


# ---------------------------------------------------------------- complete runs
@pytest.mark.parametrize("count", [1, 3])
def test_concurrent_clones_complete_within_the_storage_throughput(client: Client, backend: Backend,
                                                                    count: int) -> None:
    upids = [clone(client, "pve1", 9000, 300 + i) for i in range(count)]
    assert [client.wait(u)["exitstatus"] for u in upids] == ["OK"] * count
    size = 32 * GIB
    throughput = backend.state.storages["local-lvm"].throughput()
    segments = [s for s in backend.bandwidth.segments if s.key == LVM_PVE1]
    for u in upids:
        # the progress lines are the same as ever: one per percent, 0% to 100%
        progress = [line for line in client.log(u) if line.startswith("transferred ")]
        assert len(progress) == 101
        assert progress[0] == "transferred 0.0 B of 32.0 GiB (0.00%)"
        assert progress[-1] == "transferred 32.0 GiB of 32.0 GiB (100.00%)"
        # every byte was paid for at the rates the model granted (model time, not wall clock)
        mine = [s for s in segments if s.label.startswith(u)]
        assert sum(s.rate * (s.t1 - s.t0) for s in mine) >= size * (1 - 1e-9)
        assert max(s.rate for s in mine) <= throughput
    # at no moment did the copies together write faster than the storage
    assert not overload(segments)
    if count > 1:
        assert max(s.sharers for s in segments) == count
        # started together, they ran side by side: the storage was shared, not given to each in full
        assert any(s.sharers == count and s.rate == throughput / count for s in segments)
