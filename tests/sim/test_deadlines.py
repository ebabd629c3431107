"""Deadlines and node health of the library against the simulator: when `Task.wait` and the
transport give up (a generous upper bound, never an exact time), which node a hang is blamed on, and
a `Cluster` that stays usable while nodes stop, hang and come back (DESIGN §4, §5 deadlines)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pvectl.cluster import Cluster
from pvectl.errors import AuthError, NodeUnreachable, TaskTimeout
from pvectl.sim.cluster import Cluster as SimCluster
from testkit import timed
from pvectl.tasks import Deadline, Task

MARGIN = 1.0     # scheduling slack on a loaded 2-core machine; a deadline 2 s late still fails


@pytest.fixture
def flaky() -> Iterator[SimCluster]:
    """A simulator whose relays give up after 1 s (pveproxy: 30 s) so that 596 shows up quickly."""
    with SimCluster(nodes=3, vms=6, templates=1, bind="127.0.0.1", port=0, time_scale=0.02,
                    proxy_timeout=1.0) as s:
        yield s


def client(sim: SimCluster, **kw: Any) -> Cluster:
    return Cluster.from_config(str(sim.config_path), **kw)


# ------------------------------------------------------------------------------------------ Task.wait
def test_wait_ends_at_its_deadline_with_the_upid(sim: SimCluster, pvc: Cluster) -> None:
    upid = sim.backend.hold_lock(104)            # a task that runs until released
    try:
        took, err = timed(lambda: Task(pvc, upid).wait(Deadline(1.5)))
    finally:
        sim.backend.release_lock(104)
    assert isinstance(err, TaskTimeout) and err.upid == upid and err.exit_code == 4
    assert 1.5 <= took <= 1.5 + MARGIN


def test_wait_on_a_hung_task_node_ends_at_its_deadline(sim: SimCluster, pvc: Cluster) -> None:
    """The task's node hangs: every poll would wait 30 s; the deadline still ends the wait, with
    exit 4, the UPID and the resume hint (not exit 5 after 90 s)."""
    upid = sim.backend.hold_lock(103)            # on pve1
    sim.hang_node("pve1")
    try:
        took, err = timed(lambda: Task(pvc, upid).wait(Deadline(2)))
    finally:
        sim.unhang_node("pve1")
        sim.backend.release_lock(103)
    assert isinstance(err, TaskTimeout), err
    assert err.upid == upid and err.exit_code == 4 and err.hint == f"resume with: pvectl task wait {upid}"
    assert "its state is unknown at the deadline" in err.message
    assert 2 <= took <= 2 + MARGIN


def test_wait_survives_the_task_node_being_down_for_a_while(sim: SimCluster, pvc: Cluster) -> None:
    """pveproxy on the task's node is down for ~1.5 s while the task runs on: the wait keeps polling
    (the node's back-off, then a re-probe) and reports the task's end once it answers again."""
    upid = sim.backend.hold_lock(103)            # on pve1
    sim.stop_node("pve1")

    def later() -> None:
        time.sleep(1.0)
        sim.backend.release_lock(103)            # the task ends while pve1 is still down
        time.sleep(0.5)
        sim.start_node("pve1")

    th = threading.Thread(target=later)
    th.start()
    try:
        took, res = timed(lambda: Task(pvc, upid).wait(Deadline(20)))
    finally:
        th.join()
    assert not isinstance(res, Exception), res
    assert res.exitstatus == "OK"
    assert took < 1.5 + 2.0 + MARGIN          # back-off 2 s at most before the re-probe


# ----------------------------------------------------------------------------------- blame and health
def test_a_hung_node_behind_a_relay_is_blamed_not_the_relay(flaky: SimCluster) -> None:
    """A per-node GET for hung pve3 relayed by pve1 ends in 596 (the relay's timeout); pve3 is marked,
    pve1 stays in use, and the next read for pve3 fails at once without a request."""
    flaky.hang_node("pve3")
    pve = client(flaky, read_timeout=10)
    try:
        # path for pve3, sent to pve1 first (no node= hint): pve1 relays to pve3
        took, err = timed(lambda: pve.transport.get("/nodes/pve3/status"))
        assert isinstance(err, NodeUnreachable) and err.status == 596, err
        assert took < 1.0 + MARGIN
        assert set(pve.transport.dead_nodes) == {"pve3"}
        since = flaky.server.requests.last_seq
        took, err = timed(lambda: pve.transport.get("/nodes/pve3/network"))
        assert isinstance(err, NodeUnreachable) and "pve3 is not answering" in err.message
        assert took < 0.1 and flaky.requests_log(since=since) == []      # nothing was sent
        assert pve.transport.request("GET", "/cluster/resources", raw=True).node == "pve1"
        assert pve.transport.get("/nodes/pve2/status")["uptime"] >= 0
    finally:
        flaky.unhang_node("pve3")
        pve.close()


def test_a_client_timeout_on_a_relayed_read_blames_the_target(sim: SimCluster) -> None:
    """The client gives up before the relay does (read timeout < pveproxy's 30 s): still pve3's fault."""
    sim.hang_node("pve3")
    pve = client(sim, read_timeout=0.5)
    try:
        took, err = timed(lambda: pve.transport.get("/nodes/pve3/status"))
        assert isinstance(err, NodeUnreachable) and took < 0.5 + MARGIN
        assert set(pve.transport.dead_nodes) == {"pve3"}
        assert pve.vms.list()                                              # pve1 still answers
    finally:
        sim.unhang_node("pve3")
        pve.close()


class HealthClock:
    """The clock of the transport's node health (`pvectl.http.health`): the wall clock plus what the
    test skipped, so a back-off ends when the test says so, not when a loaded machine gets to it."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def end_backoff(self, pve: Cluster, node: str) -> None:
        self.skipped += pve.transport.health.backoff_left(node)


@pytest.fixture
def health_clock(monkeypatch: pytest.MonkeyPatch) -> HealthClock:
    from pvectl.http import health

    clock = HealthClock()
    monkeypatch.setattr(health, "time", clock)
    return clock


def test_a_node_that_comes_back_is_used_again(sim: SimCluster, health_clock: HealthClock) -> None:
    """A node that stopped (or hung) is skipped for its back-off, then probed again and used again.
    The back-off lasts until the test ends it (a mark that ran out while a loaded machine was slow to
    answer on another node would prove nothing); a node that is not hung gets a generous 2 s."""
    pve = client(sim, reprobe_after=60)
    try:
        sim.stop_node("pve1")
        assert pve.transport.request("GET", "/version", raw=True).node == "pve2"
        assert "pve1" in pve.transport.dead_nodes
        sim.start_node("pve1")
        assert pve.transport.request("GET", "/version", raw=True).node == "pve2"     # still in its back-off
        health_clock.end_backoff(pve, "pve1")                                       # pve1 is probed again
        assert pve.transport.request("GET", "/version", raw=True).node == "pve1"
        assert pve.transport.dead_nodes == {}
        # and after one hang that is over, every node answers again
        sim.hang_node("pve1")
        pve.transport.read_timeout = 2.0
        assert pve.transport.request("GET", "/version", raw=True).node == "pve2"
        assert "pve1" in pve.transport.dead_nodes
        sim.unhang_node("pve1")
        health_clock.end_backoff(pve, "pve1")
        assert pve.transport.request("GET", "/version", raw=True).node == "pve1"
        assert pve.transport.dead_nodes == {}
        assert pve.transport.get("/nodes/pve1/status")["uptime"] >= 0
    finally:
        pve.close()


def test_eight_threads_share_one_cluster_while_a_node_stops_and_comes_back(sim: SimCluster) -> None:
    """Eight threads on one Cluster while pve1 stops and starts: cluster-wide reads never fail, reads
    of pve1 fail while it is down and succeed again once its back-off (at most 0.4 s) ends. Each step
    waits for what it needs to see (a loaded machine may give the threads no turn for a second)."""
    pve = client(sim, reprobe_after=0.2, reprobe_max=0.4)
    errors: list[BaseException] = []
    node_reads: list[tuple[float, float, bool]] = []         # (sent, answered, ok) of each read of pve1
    stop = threading.Event()
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            while not stop.is_set():
                assert len(pve.vms.list()) >= 6                  # any node answers: never fails
                assert pve.version()["version"]
                sent = time.monotonic()
                try:
                    pve.transport.get("/nodes/pve1/status")
                    ok = True
                except NodeUnreachable:
                    ok = False
                with lock:
                    node_reads.append((sent, time.monotonic(), ok))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    def seen(pred: Callable[[float, float, bool], bool], within: float = 30.0) -> bool:
        end = time.monotonic() + within
        while time.monotonic() < end and not errors:
            with lock:
                if any(pred(*r) for r in node_reads):
                    return True
            time.sleep(0.02)
        return False

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    try:
        assert seen(lambda sent, answered, ok: ok)
        sim.stop_node("pve1")
        down_at = time.monotonic()
        assert seen(lambda sent, answered, ok: sent > down_at and not ok)           # the stop was seen
        sim.start_node("pve1")
        up_at, up_wall = time.monotonic(), time.time()
        assert seen(lambda sent, answered, ok: sent > up_at and ok)                 # pve1 is used again
        with lock:
            back_at = min(answered for sent, answered, ok in node_reads if sent > up_at and ok)
        assert seen(lambda sent, answered, ok: sent > back_at + 1.0)
    finally:
        stop.set()
        for th in threads:
            th.join(10)
        pve.close()
    assert errors == []
    assert all(ok for sent, answered, ok in node_reads if answered < down_at)
    # once pve1 answered again, a back-off left by a read that failed just before is at most 0.4 s
    after = [ok for sent, answered, ok in node_reads if sent > back_at + 0.5]
    assert after and all(after)
    assert any(e["time"] > up_wall for e in sim.requests_log(node="pve1"))


def test_refresh_credentials_reads_a_rotated_token(sim: SimCluster, tmp_path: Any) -> None:
    import yaml

    tokenid = "rotate@pve!t1"
    token_file = tmp_path / "token"
    token_file.write_text(f"{tokenid}\n{sim.add_token(tokenid)}\n")
    token_file.chmod(0o600)
    doc = yaml.safe_load(sim.config_path.read_text())
    doc["credentials"] = {"token_file": str(token_file)}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    with Cluster.from_config(str(cfg)) as pve:
        assert pve.version()["version"]
        token_file.write_text(f"{tokenid}\n{sim.add_token(tokenid)}\n")   # rotated: the old secret is gone
        with pytest.raises(AuthError):
            pve.transport.get("/version")
        pve.refresh_credentials()
        assert pve.version()["version"]
