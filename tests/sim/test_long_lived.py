"""One long-lived `pvectl.Cluster` (a service, a notebook, the MCP server) against the simulator:
shared by threads while a node's pveproxy stops and comes back, nodes re-probed after a back-off,
kept-alive connections the server closed, and a rotated API token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pvectl
from pvectl.errors import AuthError, NodeUnreachable, PvectlError
from pvectl.sim.cluster import Cluster as SimCluster

# a node that failed is skipped this long, then probed again (doubling up to REPROBE_MAX)
REPROBE_AFTER = 0.2
REPROBE_MAX = 0.4


@pytest.fixture
def sim3() -> Iterator[SimCluster]:
    with SimCluster(nodes=3, vms=12, templates=2, bind="127.0.0.1", port=0, time_scale=0.02) as s:
        yield s


_open: list[pvectl.Cluster] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def long_lived(sim: SimCluster, **options: Any) -> pvectl.Cluster:
    options.setdefault("reprobe_after", REPROBE_AFTER)
    options.setdefault("reprobe_max", REPROBE_MAX)
    options.setdefault("connect_timeout", 2.0)
    options.setdefault("read_timeout", 5.0)
    pve = pvectl.Cluster.from_config(str(sim.config_path), **options)
    _open.append(pve)
    return pve


def direct_requests(sim: SimCluster, node: str, since: int) -> list[dict[str, Any]]:
    """API requests a client sent straight to `node` (not relayed by another node) after `since`."""
    return [e for e in sim.requests_log(since=since, node=node)
            if not e["forwarded"] and e["path"].startswith("/api2/")]


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


# ----------------------------------------------------------------------------- threads


def test_eight_threads_share_one_cluster_while_a_node_stops_and_comes_back(sim3: SimCluster) -> None:
    pve = long_lived(sim3)
    on_pve1 = next(v for v in pve.vms.list() if v.node == "pve1")
    reads: list[tuple[str, Callable[[], Any]]] = [
        ("vms.list", pve.vms.list), ("status", pve.status), ("nodes.list", pve.nodes.list),
        ("vms.status", lambda: pve.vms.status(on_pve1.vmid)),
    ]
    stop = threading.Event()
    lock = threading.Lock()
    ok: dict[str, int] = {}
    typed: dict[str, int] = {}
    other: list[BaseException] = []
    slowest = [0.0]

    def worker(i: int) -> None:
        n = i
        while not stop.is_set():
            name, read = reads[n % len(reads)]
            n += 1
            t0 = time.monotonic()
            try:
                result = read()
                assert result is not None
                key, table = name, ok
            except PvectlError as e:          # the typed errors: NodeUnreachable, DeadlineExceeded, ...
                key, table = type(e).__name__, typed
            except BaseException as e:  # noqa: BLE001 - anything else fails the test
                with lock:
                    other.append(e)
                return
            with lock:
                table[key] = table.get(key, 0) + 1
                slowest[0] = max(slowest[0], time.monotonic() - t0)

    threads = [threading.Thread(target=worker, args=(i,), name=f"reader-{i}") for i in range(8)]
    try:
        for th in threads:
            th.start()
        time.sleep(0.3)
        sim3.stop_listener("pve1")                  # pveproxy down: refused, open connections closed
        time.sleep(1.0)
        down_ok = dict(ok)
        back = sim3.server.requests.last_seq
        sim3.start_listener("pve1")
        # after its back-off pve1 is probed again and, being first in the config, used again
        used_again = wait_for(lambda: len(direct_requests(sim3, "pve1", back)) >= 8, 10.0)
        time.sleep(0.3)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=30)
    assert not [th.name for th in threads if th.is_alive()], "a reader hung"
    assert not other, f"untyped errors: {other[:3]!r}"
    assert used_again, "pve1 was not used again after its listener came back"
    assert sum(down_ok.values()) > 0 and {"vms.list", "status", "nodes.list"} <= set(ok)
    assert set(typed) <= {"NodeUnreachable", "DeadlineExceeded"}, typed
    assert slowest[0] < 10.0                         # connect 2 s, read 5 s: nothing waits longer
    # kept-alive connections are reused, not one per call: at most one per node and thread at a time,
    # again after the simulator closes one (after 100 requests, as pveproxy does; pve1's when it stopped)
    calls = sum(ok.values()) + sum(typed.values())
    assert calls > 200 and pve.transport.connections_opened <= 2 * 8 * 3 + calls / 50
    # once back, pve1 answers reads of its own VM again, and no node is skipped any more
    assert pve.vms.status(on_pve1.vmid).vmid == on_pve1.vmid
    assert wait_for(lambda: not pve.transport.dead_nodes, 2.0)


# ----------------------------------------------------------------------------- re-probe


def test_a_failed_node_is_probed_again_after_its_back_off_not_skipped_for_good(sim3: SimCluster) -> None:
    lines: list[str] = []
    backoff = 1.0                                     # long enough for the calls below on a loaded machine
    pve = long_lived(sim3, log=lines.append, reprobe_after=backoff, reprobe_max=2 * backoff)
    sim3.stop_listener("pve1")
    assert pve.version()                              # pve1 refused: pve2 answered
    assert "pve1" in pve.transport.dead_nodes
    lines.clear()
    for _ in range(5):                                # within the back-off pve1 is not tried at all
        assert pve.version()
    assert not [ln for ln in lines if "pve1" in ln and "connect" in ln]
    time.sleep(pve.transport.health.backoff_left("pve1") + 0.05)
    lines.clear()
    assert pve.version()                              # back-off over: probed again, still refused
    assert [ln for ln in lines if "-> pve1" in ln and "connect failed" in ln]
    assert pve.transport.health.failures("pve1") == 2  # the back-off doubled
    sim3.start_listener("pve1")
    since = sim3.server.requests.last_seq
    assert wait_for(lambda: pve.version() is not None and bool(direct_requests(sim3, "pve1", since)), 5.0)
    assert "pve1" not in pve.transport.dead_nodes
    assert pve.transport.health.failures("pve1") == 0  # an answer clears the record


def test_a_node_that_stops_answering_fails_fast_then_is_probed_again(sim3: SimCluster) -> None:
    pve = long_lived(sim3, read_timeout=0.5, probe_timeout=0.5, reprobe_after=1.0, reprobe_max=1.0)
    vm = next(v for v in pve.vms.list() if v.node == "pve1")
    sim3.hang_node("pve1")                            # accepts requests, answers none
    try:
        t0 = time.monotonic()
        with pytest.raises(NodeUnreachable):
            pve.vms.status(vm.vmid)
        assert time.monotonic() - t0 < 5.0
        held = sim3.faults.held("pve1")
        t0 = time.monotonic()
        with pytest.raises(NodeUnreachable, match="not answering"):
            pve.vms.status(vm.vmid)                    # within the back-off: nothing is sent to pve1
        assert time.monotonic() - t0 < 0.5 and sim3.faults.held("pve1") == held
        assert len(pve.vms.list()) == 14               # cluster-wide reads: the other nodes answer
    finally:
        sim3.unhang_node("pve1")
    assert wait_for(lambda: not pve.transport.dead_nodes, 5.0)
    assert pve.vms.status(vm.vmid).status in ("running", "stopped")


# ----------------------------------------------------------------------------- kept-alive connections


@pytest.fixture
def sim_idle() -> Iterator[SimCluster]:
    # pveproxy closes a connection after 5 s without a request; 0.2 s here
    with SimCluster(nodes=1, vms=3, templates=0, bind="127.0.0.1", port=0, time_scale=0.02,
                    idle_timeout=0.2) as s:
        yield s


def test_a_kept_alive_connection_the_server_closed_is_reopened_for_a_get(sim_idle: SimCluster) -> None:
    pve = long_lived(sim_idle, retries=0)
    assert pve.version()
    time.sleep(0.5)                                   # the server closed the idle connection
    assert pve.version()
    assert pve.transport.connections_opened == 2


def test_a_get_on_a_closed_connection_is_resent_on_a_new_one_and_a_write_is_not(
        sim_idle: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # The race: the server closes the idle connection just as the request goes out (the pool's
    # check before sending sees nothing yet). A GET is sent again on a new connection; a write is
    # not, because it may have been carried out.
    from pvectl.http import pool

    monkeypatch.setattr(pool, "dropped", lambda sock: False)
    monkeypatch.setattr(pool, "WRITE_REUSE_IDLE", 60.0)
    pve = long_lived(sim_idle, retries=0)            # the reopen is not a retry: it needs none
    vm = pve.vms.list()[0]
    time.sleep(0.5)
    since = sim_idle.server.requests.last_seq
    assert pve.vms.status(vm.vmid).vmid == vm.vmid    # a GET: transparently reopened
    assert pve.transport.connections_opened == 2
    time.sleep(0.5)
    since = sim_idle.server.requests.last_seq
    with pytest.raises(NodeUnreachable) as ei:
        pve.transport.put(f"/nodes/{vm.node}/qemu/{vm.vmid}/config", {"description": "rotated"})
    assert ei.value.uncertain and "may or may not have been applied" in str(ei.value)
    assert not [e for e in sim_idle.requests_log(since=since) if e["method"] == "PUT"], "the write was resent"
    assert "rotated" not in str(sim_idle.backend.state.vms[vm.vmid].config.get("description", ""))
    assert pve.transport.connections_opened == 2      # nothing was opened to send it again


def test_a_write_after_a_long_idle_takes_a_new_connection_and_is_sent_once(
        sim_idle: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    from pvectl.http import pool

    monkeypatch.setattr(pool, "dropped", lambda sock: False)   # only the idle limit protects the write
    monkeypatch.setattr(pool, "WRITE_REUSE_IDLE", 0.1)
    pve = long_lived(sim_idle)
    vm = pve.vms.list()[0]
    time.sleep(0.5)
    since = sim_idle.server.requests.last_seq
    pve.transport.put(f"/nodes/{vm.node}/qemu/{vm.vmid}/config", {"description": "fresh"})
    assert [e["method"] for e in sim_idle.requests_log(since=since)] == ["PUT"]
    assert sim_idle.backend.state.vms[vm.vmid].config["description"] == "fresh"


# ----------------------------------------------------------------------------- token rotation


def test_the_token_is_read_once_and_refresh_credentials_reads_the_rotated_one(
        sim3: SimCluster, tmp_path: Path) -> None:
    token_file = Path(sim3.token_path)
    pve = long_lived(sim3)
    assert pve.version()
    old = sim3.token_secret
    new = "0b7e3a52-4f4e-4c1e-9d55-2f1f6c3b9a10"
    assert new != old
    # rotation: the new secret on disk, the old one revoked on the cluster
    token_file.write_text(f"{sim3.token_id}\n{new}\n")
    sim3.add_token(sim3.token_id, new)
    with pytest.raises(AuthError) as ei:              # still the token read at the start
        pve.version()
    assert old not in str(ei.value) and new not in str(ei.value)
    pve.refresh_credentials()
    assert pve.version()
    assert pve.vms.list()
    # and the file is not read again per call: a second rotation goes unnoticed until refreshed
    newer = "5c1f9e7d-8a2b-4c3d-9e0f-1a2b3c4d5e6f"
    token_file.write_text(f"{sim3.token_id}\n{newer}\n")
    assert pve.version()
    sim3.add_token(sim3.token_id, newer)
    with pytest.raises(AuthError):
        pve.version()
    pve.refresh_credentials()
    assert pve.version()


def test_threads_starting_together_read_the_token_once(sim3: SimCluster) -> None:
    from pvectl.config import load_config
    from pvectl.http import Transport

    header = f"PVEAPIToken={sim3.token_id}={sim3.token_secret}"
    reads: list[int] = []

    def auth() -> str:
        reads.append(1)
        time.sleep(0.1)                                # `pass show` takes a while to decrypt
        return header

    t = Transport.from_config(load_config(str(sim3.config_path)), auth=auth)
    barrier = threading.Barrier(8)
    answers: list[Any] = []

    def first_call() -> None:
        barrier.wait()
        answers.append(t.get("/version"))

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    t.close()
    assert len(answers) == 8 and all(answers)
    assert len(reads) == 1



def test_a_node_that_closes_during_the_tls_handshake_is_failed_over_not_a_tls_error(sim3: SimCluster) -> None:
    # pveproxy going down (or restarting) can take a connection and close it before the handshake ends:
    # the client sees EOF, not a certificate. Nothing was sent, so another node answers; a TLS error
    # (never failed over) would stop a long-lived client at the first node that restarts.
    import socket

    from pvectl.config import Node, load_config
    from pvectl.http import Transport

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def take_hello_and_close() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                conn.recv(65536)                       # the ClientHello, read in full: a clean EOF, no RST

    server = threading.Thread(target=take_hello_and_close, daemon=True)
    server.start()
    config = load_config(str(sim3.config_path))
    closing = Node(name="pve1", host="127.0.0.1", port=listener.getsockname()[1])
    header = f"PVEAPIToken={sim3.token_id}={sim3.token_secret}"
    t = Transport([closing, *config.nodes[1:]], tls=config.tls, auth=lambda: header, retries=0)
    try:
        result = t.request("GET", "/version", raw=True)
        assert result.node == "pve2"
        assert "pve1" in t.dead_nodes
    finally:
        t.close()
        stop.set()
        server.join(timeout=5)
        listener.close()
