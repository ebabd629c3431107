"""Whole commands with `--timeout` against a hung or silent node: each ends by its deadline plus a
margin (never an exact time), with the documented exit code and the state it left (DESIGN §5
deadlines). pveproxy on a hung node accepts requests and never answers; relays to it wait 30 s."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cliharness import Run

from pvectl.sim.cluster import Cluster as SimCluster

MARGIN = 1.5     # start-up, scheduling on a loaded machine; a deadline 2 s late still fails


@pytest.fixture
def pv(cli: Callable[..., Run], fresh_sim: SimCluster) -> Iterator[Callable[..., tuple[float, Run]]]:
    """`pvectl --config <sim> -o json ARGS` in this process; returns (seconds taken, the run)."""

    def run(*args: str) -> tuple[float, Run]:
        t0 = time.monotonic()
        r = cli("--config", str(fresh_sim.config_path), "-o", "json", *args)
        return time.monotonic() - t0, r

    yield run
    fresh_sim.unhang_node()


def names(sim: SimCluster) -> list[str]:
    return sorted(str(v.config.get("name")) for v in sim.backend.state.vms.values())


def test_vm_status_of_a_vm_on_a_hung_node_ends_by_the_deadline(pv: Any, fresh_sim: SimCluster) -> None:
    fresh_sim.hang_node("pve1")
    took, r = pv("--timeout", "2", "vm", "status", "100")          # web-01 on pve1
    assert took <= 2 + MARGIN
    assert r.code == 5
    err = json.loads(r.out)["error"]
    assert err["node"] == "pve1" and "pve1 is not answering" in err["message"]


def test_vm_list_with_the_first_node_hung_fails_over_within_the_deadline(pv: Any, fresh_sim: SimCluster) -> None:
    fresh_sim.hang_node("pve1")
    took, r = pv("--timeout", "2", "vm", "list")
    assert r.code == 0, r.err
    assert took <= 2 + MARGIN
    assert {v["vmid"] for v in r.json} >= {100, 101, 102}


def test_vm_list_without_a_timeout_moves_on_from_a_hung_node(pv: Any, fresh_sim: SimCluster) -> None:
    fresh_sim.hang_node("pve1")
    took, r = pv("vm", "list")
    assert r.code == 0, r.err
    assert took <= 5 + MARGIN                                  # failover_after, not the 30 s read timeout


def test_task_wait_on_a_hung_node_exits_4_at_the_deadline_with_the_upid(pv: Any, fresh_sim: SimCluster) -> None:
    upid = fresh_sim.backend.hold_lock(103)                        # a task on pve1 that runs on
    fresh_sim.hang_node("pve1")
    try:
        took, r = pv("--timeout", "2", "task", "wait", upid)
    finally:
        fresh_sim.backend.release_lock(103)
    assert r.code == 4
    assert 2 <= took <= 2 + MARGIN
    err = json.loads(r.out)["error"]
    assert err["upid"] == upid and err["hint"] == f"resume with: pvectl task wait {upid}"


def test_clone_from_a_template_on_a_hung_node_ends_by_the_deadline(pv: Any, fresh_sim: SimCluster) -> None:
    before = names(fresh_sim)
    fresh_sim.hang_node("pve1")                                    # ubuntu-24.04-cloud is on pve1
    took, r = pv("vm", "clone", "ubuntu-24.04-cloud", "h1", "--timeout", "5")
    assert took <= 5 + MARGIN
    assert r.code in (4, 5), r.out
    fresh_sim.unhang_node()
    assert names(fresh_sim) == before                              # nothing was started


def test_clone_with_an_uninvolved_node_hung_succeeds_in_time(pv: Any, fresh_sim: SimCluster) -> None:
    """Only pve3 hangs; placement reads pve3's bridges through the other nodes. The read for pve3
    fails fast (pve3 is blamed, not its relays) and the clone is made on a node that answers."""
    fresh_sim.hang_node("pve3")
    took, r = pv("vm", "clone", "debian-12-cloud", "auto1", "--target", "auto", "--timeout", "5")
    assert r.code == 0, r.out + r.err
    assert took <= 5 + MARGIN
    assert r.json["result"] == "created" and r.json["node"] in ("pve1", "pve2")
    assert names(fresh_sim).count("auto1") == 1


def test_clone_whose_node_hangs_after_the_post_exits_4_with_the_upid(
        pv: Any, fresh_sim: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The template's node hangs right after it accepted the clone: the task's state is unknown;
    the command ends by its deadline with exit 4 and the UPID to resume with."""
    from pvectl.http import Transport

    orig = Transport.request

    def request(self: Transport, method: str, path: str, params: Any = None, **kw: Any) -> Any:
        res = orig(self, method, path, params, **kw)
        if method == "POST" and path.endswith("/qemu/9001/clone"):
            fresh_sim.hang_node("pve2")
        return res

    monkeypatch.setattr(Transport, "request", request)
    took, r = pv("vm", "clone", "debian-12-cloud", "h2", "--timeout", "3")
    assert took <= 3 + MARGIN
    assert r.code == 4, r.out
    assert ":qmclone:9001:" in r.out


def test_migrate_reports_the_move_when_the_target_goes_away_afterwards(
        pv: Any, fresh_sim: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """pveproxy on the target stops while the migration task runs; the task ends OK and the VM is on
    the target. Exit 0 with the UPID: the read that failed afterwards is a warning, not a failure."""
    from testkit import move_to_shared

    from pvectl.http import Transport

    move_to_shared(fresh_sim.backend, 100)
    orig = Transport.request

    def request(self: Transport, method: str, path: str, params: Any = None, **kw: Any) -> Any:
        res = orig(self, method, path, params, **kw)
        if "qmigrate" in path and path.endswith("/log") and \
                any("transferred" in e.get("t", "") for e in res.data or []):
            fresh_sim.stop_node("pve3")          # the memory copy has begun (phase 2)
        return res

    monkeypatch.setattr(Transport, "request", request)
    try:
        took, r = pv("--timeout", "30", "vm", "migrate", "web-01", "pve3")
    finally:
        fresh_sim.start_node("pve3")
    assert r.code == 0, r.out + r.err
    out = r.json
    assert (out["outcome"], out["exitstatus"], out["node"], out["status"]) == ("done", "OK", "pve3", None)
    assert ":qmigrate:100:" in out["upid"]
    assert [w.split(", but ")[0] for w in out["warnings"]] == [f"migrated (task {out['upid']} OK)"]
    assert fresh_sim.backend.state.vms[100].node == "pve3"
