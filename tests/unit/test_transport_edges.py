"""Transport: the edges of an answer (not 2xx, broken chunked framing), a node that closes during the
TLS handshake, the system CA store, the token source (read once by threads that start together,
read again at once by `refresh_auth`), `bounded(None)`, the debug lines of a TLS mode and of a
reconnect, and the node-health and pool helpers. Against the small HTTPS server of test_http.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_http import AUTH, FakePVE, _close_transports, answer_after, ca_tls, make, pki, server  # noqa: F401

from pvectl.config import Node, Tls
from pvectl.errors import ApiError, NodeUnreachable
from pvectl.http import Transport
from pvectl.http import conn as httpconn
from pvectl.http.failures import reason
from pvectl.http.health import NodeHealth
from pvectl.http.pool import dropped


def node(server: FakePVE, name: str = "pve1") -> Node:  # noqa: F811
    return Node(name=name, host="127.0.0.1", port=server.port)


def _raw(data: bytes) -> Any:
    """A script entry: send `data` as the whole answer, then close."""
    def handler(h: Any) -> None:
        h.wfile.write(data)
        h.close_connection = True
    return handler


# -- answers ----------------------------------------------------------------------------------------

def test_a_chunk_size_that_is_not_hex_fails_the_node_not_the_program(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/version")] = [
        _raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n")]
    t = make([node(server)], ca_tls(pki), retries=0)
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/version")
    assert ei.value.attempts == [("pve1", f"127.0.0.1:{server.port}: bad chunk size 'zz'")]


def test_a_write_answered_with_a_cut_chunk_names_it(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("POST", "/api2/json/nodes/pve1/qemu/100/status/start")] = [
        _raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"data\"")]
    t = make([node(server)], ca_tls(pki))
    with pytest.raises(NodeUnreachable) as ei:
        t.post("/nodes/pve1/qemu/100/status/start")
    assert ei.value.uncertain and "(answer cut off in a chunk); it may or may not have been applied" in ei.value.message


@pytest.mark.parametrize("status", [300, 302])
def test_a_redirect_is_not_an_answer(server: FakePVE, pki: dict[str, Any], status: int) -> None:  # noqa: F811
    """A 3xx (a proxy in front of pveproxy) is an error, never read as the API's data."""
    server.script[("GET", "/api2/json/version")] = [(status, "Moved", {"data": {"version": "9.1.1"}})]
    with pytest.raises(ApiError) as ei:
        make([node(server)], ca_tls(pki)).get("/version")
    assert ei.value.status == status


def test_a_read_for_a_node_that_failed_behind_a_relay_probes_it_with_the_short_timeout(
        server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    """pve1 relayed a 595 for pve2: once pve2's back-off is over, the next read of a pve2 path (through
    the healthy pve1) is a re-probe and waits `probe_timeout`, not the read timeout."""
    server.script[("GET", "/api2/json/nodes/pve2/status")] = [(595, "Connection refused", b""), answer_after(1.1)]
    t = make([node(server)], ca_tls(pki), retries=0, read_timeout=1.0, probe_timeout=0.3, reprobe_after=0.1)
    with pytest.raises(NodeUnreachable):
        t.get("/nodes/pve2/status")
    time.sleep(0.15)
    t0 = time.monotonic()
    with pytest.raises(NodeUnreachable):
        t.get("/nodes/pve2/status")
    assert time.monotonic() - t0 < 0.3 + 0.4


# -- TLS --------------------------------------------------------------------------------------------

@pytest.fixture
def closes_in_handshake() -> Iterator[int]:
    """A TCP listener that reads the ClientHello and closes (a pveproxy restarting)."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            c.settimeout(1)
            try:
                c.recv(4096)
            except OSError:
                pass
            c.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    yield srv.getsockname()[1]
    stop.set()
    th.join()
    srv.close()


def test_a_node_closing_during_the_handshake_is_a_failed_connect(closes_in_handshake: int,
                                                                  server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    t = make([Node(name="pve1", host="127.0.0.1", port=closes_in_handshake), node(server, "pve2")], ca_tls(pki))
    assert t.get("/version") is None                       # pve2 answered
    assert t.dead_nodes == {"pve1": "connection closed during the TLS handshake"}


def test_the_system_store_is_used_without_tls_settings(server: FakePVE, pki: dict[str, Any],  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", pki["ca"])           # OpenSSL's default store, read per context
    lines: list[str] = []
    t = Transport([node(server)], auth=lambda: AUTH, log=lines.append)
    try:
        assert t.get("/version") is None
    finally:
        t.close()
    assert f"connected to pve1 (127.0.0.1:{server.port}), TLS system" in lines


def test_the_debug_line_names_the_pin_mode(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    lines: list[str] = []
    make([node(server)], Tls(fingerprints={"pve1": pki["fp"]}), log=lines.append).get("/version")
    assert f"connected to pve1 (127.0.0.1:{server.port}), TLS pin" in lines


# -- the token source -------------------------------------------------------------------------------

def test_threads_starting_together_read_the_token_once(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    calls: list[int] = []

    def slow_auth() -> str:
        calls.append(1)
        time.sleep(0.1)                                     # `pass show` decrypting
        return AUTH

    t = make([node(server)], ca_tls(pki))
    t._auth = slow_auth
    threads = [threading.Thread(target=t.get, args=("/version",)) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert calls == [1] and len(server.requests) == 4
    assert {r["headers"]["Authorization"] for r in server.requests} == {AUTH}


def test_refresh_auth_reads_the_token_at_once_and_keeps_the_old_one_when_it_cannot(
        server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    answers: list[Any] = [AUTH, AUTH + "2", OSError("pass: gpg failed")]
    calls: list[int] = []

    def auth() -> str:
        calls.append(1)
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return str(a)

    t = make([node(server)], ca_tls(pki))
    t._auth = auth
    t.get("/version")
    t.refresh_auth()
    assert len(calls) == 2                                  # read now, not at the next request
    with pytest.raises(OSError, match="gpg failed"):
        t.refresh_auth()
    t.get("/version")
    assert [r["headers"]["Authorization"] for r in server.requests] == [AUTH, AUTH + "2"]


# -- scopes, debug lines ----------------------------------------------------------------------------

def test_bounded_none_is_a_scope_without_a_limit(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    t = make([node(server)], ca_tls(pki))
    with t.bounded(None) as d:
        assert d.remaining() is None and t.time_left() is None
        assert t.get("/version") is None


def test_the_debug_log_says_when_a_kept_alive_get_reconnects(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    def hang_up(h: Any) -> None:
        h.close_connection = True

    server.script[("GET", "/api2/json/version")] = [(200, "OK", {"data": None}), hang_up, (200, "OK", {"data": 1})]
    lines: list[str] = []
    t = make([node(server)], ca_tls(pki), retries=0, log=lines.append)
    t.get("/version")
    assert t.get("/version") == 1
    assert "GET -> pve1: kept-alive connection closed by the server, reconnecting" in lines


# -- health, pool, failure texts --------------------------------------------------------------------

def test_an_answer_clears_an_unresponsive_mark() -> None:
    h = NodeHealth(reprobe_after=5)
    h.unresponsive("pve2", "596 timed out via pve1")
    assert h.suspect("pve2") and h.skip_target("pve2") is not None
    h.answered("pve2")
    assert not h.suspect("pve2") and h.skip_target("pve2") is None and h.skipped() == {}


def test_backoff_left_is_zero_for_a_healthy_node_and_at_most_the_back_off_for_a_failed_one() -> None:
    h = NodeHealth(reprobe_after=5)
    assert h.backoff_left("pve1") == 0.0
    h.unreachable("pve1", "connection refused")
    assert 4.0 < h.backoff_left("pve1") <= 5.0


def test_a_closed_socket_counts_as_dropped() -> None:
    a, b = socket.socketpair()
    try:
        assert not dropped(a)                               # idle, open: nothing to read
        b.close()
        assert dropped(a)                                   # the peer closed it
    finally:
        a.close()
    assert dropped(a)                                       # closed here: select() refuses it


def test_a_failure_without_a_text_is_named_by_its_type() -> None:
    assert reason(httpconn.IncompleteRead()) == "IncompleteRead"


def test_reads_carry_no_body_headers_and_writes_a_form(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    t = make([node(server)], ca_tls(pki))
    t.get("/version", {"a": 1})
    t.delete("/nodes/pve1/qemu/100", {"purge": 1})
    t.put("/nodes/pve1/qemu/100/config", {"memory": 2048})
    get, delete, put = (r["headers"] for r in server.requests)
    for h in (get, delete):
        assert "Content-Length" not in h and "Content-Type" not in h
    assert (put["Content-Type"], put["Content-Length"]) == ("application/x-www-form-urlencoded", "11")


def test_the_debug_log_names_a_failed_send(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    def hang_up(h: Any) -> None:
        h.close_connection = True

    server.script[("GET", "/api2/json/version")] = [hang_up]
    lines: list[str] = []
    t = make([node(server)], ca_tls(pki), retries=0, log=lines.append)
    with pytest.raises(NodeUnreachable):
        t.get("/version")
    assert f"GET /version -> pve1 (127.0.0.1:{server.port}): connection closed by the server" in lines


def test_a_write_cut_after_sending_carries_the_request_and_what_happened(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    def hang_up(h: Any) -> None:
        h.close_connection = True

    server.script[("POST", "/api2/json/nodes/pve1/qemu/100/status/start")] = [hang_up]
    with pytest.raises(NodeUnreachable) as ei:
        make([node(server)], ca_tls(pki)).post("/nodes/pve1/qemu/100/status/start")
    e = ei.value
    assert e.uncertain and (e.method, e.path, e.node) == ("POST", "/nodes/pve1/qemu/100/status/start", "pve1")
    assert e.attempts == [("pve1", f"127.0.0.1:{server.port}: connection closed by the server")]


def test_a_read_without_an_answer_in_time_names_the_node_asked_or_the_relay(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/nodes/pve1/status")] = [answer_after(0.5)]
    server.script[("GET", "/api2/json/nodes/pve2/status")] = [answer_after(0.5)]
    t = make([node(server)], ca_tls(pki), retries=0, read_timeout=0.2)
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/nodes/pve1/status")
    assert ei.value.attempts == [("pve1", f"127.0.0.1:{server.port}: no answer within 0.2 s")]
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/nodes/pve2/status")
    assert ei.value.attempts == [("pve2", "via pve1: no answer within 0.2 s")]


# -- node health bookkeeping ----------------------------------------------------------------------------

def test_a_relayed_answer_clears_the_node_in_the_path_and_is_sent_once(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/nodes/pve2/status")] = [(595, "Connection refused", b""), (200, "OK", {"data": 1})]
    t = make([node(server)], ca_tls(pki), retries=0, reprobe_after=0.1)
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/nodes/pve2/status")
    assert (ei.value.method, ei.value.path) == ("GET", "/nodes/pve2/status") and t.health.suspect("pve2")
    time.sleep(0.15)                                        # pve2's back-off is over
    assert t.get("/nodes/pve2/status") == 1
    assert len(server.requests) == 2
    assert not t.health.suspect("pve2") and not t.health.suspect("pve1")


def _mark_pve1_silent(t: Transport) -> None:
    with pytest.raises(NodeUnreachable):
        t.get("/nodes/pve1/status")                         # no answer in time: pve1 is marked
    assert t.health.suspect("pve1")
    time.sleep(0.15)                                        # its back-off is over


def test_a_relay_that_relays_a_595_has_answered(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/nodes/pve1/status")] = [answer_after(0.4)]
    server.script[("GET", "/api2/json/nodes/pve2/status")] = [(595, "Connection refused", b"")]
    t = make([node(server)], ca_tls(pki), retries=0, read_timeout=0.2, reprobe_after=0.1)
    _mark_pve1_silent(t)
    with pytest.raises(NodeUnreachable):
        t.get("/nodes/pve2/status")
    assert not t.health.suspect("pve1") and t.health.suspect("pve2")


def test_a_node_that_answers_a_cluster_wide_read_is_cleared(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/nodes/pve1/status")] = [answer_after(0.4)]
    t = make([node(server)], ca_tls(pki), retries=0, read_timeout=0.2, reprobe_after=0.1)
    _mark_pve1_silent(t)
    assert t.get("/version") is None
    assert not t.health.suspect("pve1") and t.health.failures("pve1") == 0


def test_a_595_on_every_try_is_the_error_of_the_last_answer(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/version")] = [(595, "Connection refused", b"")]
    with pytest.raises(NodeUnreachable) as ei:
        make([node(server)], ca_tls(pki), retries=1).get("/version")
    assert len(server.requests) == 2
    assert ei.value.attempts == [("pve1", "595 Connection refused")]


# -- settings, the last error, a GET sent again --------------------------------------------------------

def test_the_defaults_are_the_documented_ones() -> None:
    """The module docstring's numbers: connect 3 s, read 30 s, two retries from a 0.2 s pause, a
    back-off of 2 s doubling to 30 s, a re-probe given 5 s, a cluster-wide read moved on after 5 s."""
    tls = Tls(insecure=True)
    t = Transport([Node(name="pve1", host="127.0.0.1", port=1)], tls=tls)
    assert (t.connect_timeout, t.read_timeout, t.retries, t.backoff) == (3.0, 30.0, 2, 0.2)
    assert (t.health.reprobe_after, t.health.reprobe_max, t.probe_timeout, t.failover_after) == (2.0, 30.0, 5.0, 5.0)
    assert t.tls is tls
    assert (NodeHealth().reprobe_after, NodeHealth().reprobe_max) == (2.0, 30.0)


def test_the_back_off_cap_given_to_a_transport_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import pvectl.http.health as health

    clock = [100.0]
    monkeypatch.setattr(health, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    t = Transport([Node(name="pve1", host="127.0.0.1", port=1)], tls=Tls(insecure=True),
                  reprobe_after=1.0, reprobe_max=1.5)
    waits = []
    for _ in range(3):
        t.health.unreachable("pve1", "connection refused")
        waits.append(t.health.backoff_left("pve1"))
        clock[0] += waits[-1]                                # the back-off ends: the next failure doubles it
    assert waits == [1.0, 1.5, 1.5]                          # 1, 2, 4 without the cap


def test_no_node_reachable_names_the_request(pki: dict[str, Any]) -> None:  # noqa: F811
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                            # nothing listens there
    t = make([Node(name="pve1", host="127.0.0.1", port=port)], ca_tls(pki), retries=0)
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/cluster/resources", {"type": "vm"})
    assert (ei.value.method, ei.value.path) == ("GET", "/cluster/resources")
    assert str(ei.value).startswith("no node reachable: pve1 (127.0.0.1:")


def test_a_get_sent_again_on_a_new_connection_carries_its_headers(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    def hang_up(h: Any) -> None:
        h.close_connection = True

    server.script[("GET", "/api2/json/version")] = [(200, "OK", {"data": None}), hang_up, (200, "OK", {"data": 1})]
    t = make([node(server)], ca_tls(pki), retries=0, user_agent="pvectl-test/1")
    t.get("/version")
    assert t.get("/version") == 1
    sent_again = server.requests[-1]["headers"]
    assert (sent_again["Authorization"], sent_again["User-Agent"], sent_again["Accept"]) == (
        AUTH, "pvectl-test/1", "application/json")
