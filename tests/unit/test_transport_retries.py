"""Transport: how often and how far apart a GET is sent again, a node that completes TCP but never
answers the TLS handshake (connect timeout, or the deadline first), a read's share of the time left,
and a node in the path that stopped answering: failed fast with the request named, and never asked
through another relay. Against the small HTTPS server of test_http.py and a TCP listener that never
accepts; times are bounded generously, never compared exactly."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_http import FakePVE, _close_transports, _free_port, answer_after, ca_tls, make, pki, server  # noqa: F401

from pvectl.config import Node
from pvectl.deadline import Deadline
from pvectl.errors import DeadlineExceeded, NodeUnreachable
from pvectl.http import Transport


def _hang_up(h: Any) -> None:
    h.close_connection = True                           # read the request, answer nothing, close


def test_a_get_is_sent_retries_plus_one_times_with_doubling_pauses(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    """Every connection is dropped after the request: sent 3 times (retries=2), pausing `backoff`
    (0.5 s) and then twice that (1 s) between the sends."""
    server.script[("GET", "/api2/json/version")] = [_hang_up]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), retries=2, backoff=0.5)
    t0 = time.monotonic()
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/version")
    took = time.monotonic() - t0
    assert len(server.requests) == 3
    assert 1.5 <= took < 1.5 + 0.45
    assert ei.value.attempts == [("pve1", f"127.0.0.1:{server.port}: connection closed by the server")]


# -- a node that accepts TCP but never answers the TLS handshake ---------------------------------------

@pytest.fixture
def silent() -> Iterator[int]:
    """A listener nobody accepts on: the kernel completes TCP, no ServerHello ever comes."""
    s = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield s.getsockname()[1]
    s.close()


def test_a_handshake_that_never_comes_fails_at_the_connect_timeout(silent: int, pki: dict[str, Any]) -> None:  # noqa: F811
    t = make([Node(name="pve1", host="127.0.0.1", port=silent)], ca_tls(pki), connect_timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/version")
    assert time.monotonic() - t0 < 0.3 + 0.5
    assert not isinstance(ei.value, DeadlineExceeded) and ei.value.exit_code == 5
    assert ei.value.attempts == [("pve1", f"127.0.0.1:{silent}: timed out")]


def test_a_handshake_cut_by_the_deadline_sent_nothing(silent: int, pki: dict[str, Any]) -> None:  # noqa: F811
    t = make([Node(name="pve1", host="127.0.0.1", port=silent)], ca_tls(pki), connect_timeout=3,
             deadline=Deadline(0.4))
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded) as ei:
        t.post("/nodes/pve1/qemu/100/status/start")
    assert time.monotonic() - t0 < 0.4 + 0.5
    e = ei.value
    assert e.message == ("POST /nodes/pve1/qemu/100/status/start: the deadline passed before the request could "
                         "be sent (nothing was sent)")
    assert not e.uncertain and (e.method, e.path, e.node) == ("POST", "/nodes/pve1/qemu/100/status/start", "pve1")
    assert e.attempts == []


def test_an_expired_deadline_names_the_request_it_did_not_send(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    with pytest.raises(DeadlineExceeded) as ei:
        make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki),
             deadline=Deadline(0)).get("/cluster/resources")
    assert ei.value.message == ("GET /cluster/resources: the deadline passed before the request could be sent "
                                "(nothing was sent)")


# -- a read's share of the time left --------------------------------------------------------------------

def test_a_read_waits_for_half_the_time_left_then_blames_the_node(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    """2 s left: the one read gets 1 s; the node did not answer in it (exit 5, not the deadline's 4),
    and the other second is left to the rest of the command."""
    server.script[("GET", "/api2/json/nodes/pve1/status")] = [answer_after(3)]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), retries=0,
             deadline=Deadline(2.0))
    t0 = time.monotonic()
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/nodes/pve1/status")
    assert time.monotonic() - t0 < 1.0 + 0.5
    assert not isinstance(ei.value, DeadlineExceeded)


# -- a node in the path that stopped answering -----------------------------------------------------------

def test_a_silenced_node_fails_fast_naming_the_request(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/nodes/pve2/status")] = [(595, "Connection refused", b"")]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), retries=0)
    with pytest.raises(NodeUnreachable):
        t.get("/nodes/pve2/status")
    sent = len(server.requests)
    with pytest.raises(NodeUnreachable) as ei:
        t.post("/nodes/pve2/qemu/100/status/start")
    e = ei.value
    assert len(server.requests) == sent
    assert e.message.startswith("POST /nodes/pve2/qemu/100/status/start: node pve2 is not answering (")
    assert (e.method, e.path, e.node) == ("POST", "/nodes/pve2/qemu/100/status/start", "pve2")
    assert [name for name, _ in e.attempts] == ["pve2"]


def test_a_node_that_did_not_answer_through_one_relay_is_not_asked_through_another(pki: dict[str, Any]) -> None:  # noqa: F811
    """pve1 relays a read for pve3 and gets no answer in time: pve3 is marked, and pve2 is not asked
    to wait for pve3 as well."""
    slow, other = FakePVE(pki), FakePVE(pki)
    try:
        slow.script[("GET", "/api2/json/nodes/pve3/status")] = [answer_after(2)]
        t = make([Node(name="pve1", host="127.0.0.1", port=slow.port), Node(name="pve2", host="127.0.0.1", port=other.port)],
                 ca_tls(pki), retries=0, read_timeout=0.3)
        with pytest.raises(NodeUnreachable) as ei:
            t.get("/nodes/pve3/status")
        assert other.requests == []
        assert ei.value.message.startswith("no node reachable: pve3 (via pve1: ")
        assert set(t.dead_nodes) == {"pve3"}
    finally:
        slow.stop()
        other.stop()


def test_a_transport_needs_a_node() -> None:
    with pytest.raises(ValueError, match=r"^Transport needs at least one node$"):
        Transport([])


# -- how long a write waits, a read to a node that failed before ------------------------------------------

def test_a_write_waits_for_its_answer_as_long_as_the_deadline_allows(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    """A read would give up after half the time left (1.25 s of 2.5 s); a write is never sent twice,
    so it waits for its answer (1.5 s) up to the deadline."""
    server.script[("POST", "/api2/json/nodes/pve1/qemu/100/status/start")] = [answer_after(1.5)]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), deadline=Deadline(2.5))
    assert t.post("/nodes/pve1/qemu/100/status/start") is None
    assert len(server.requests) == 1


def test_a_node_that_failed_before_is_probed_with_the_short_timeout_by_reads_only(
        server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/nodes/pve1/status")] = [answer_after(2)]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), retries=0, read_timeout=1.0,
             probe_timeout=0.3, reprobe_after=0.1)
    with pytest.raises(NodeUnreachable):
        t.get("/nodes/pve1/status")                      # no answer within 1 s: pve1 is marked
    time.sleep(0.15)                                     # its back-off is over: the next read probes it
    t0 = time.monotonic()
    with pytest.raises(NodeUnreachable):
        t.get("/nodes/pve1/status")
    assert time.monotonic() - t0 < 0.3 + 0.4
    time.sleep(0.35)                                     # the back-off doubled to 0.2 s
    server.script[("POST", "/api2/json/nodes/pve1/qemu/100/status/start")] = [answer_after(0.6)]
    assert t.post("/nodes/pve1/qemu/100/status/start") is None   # a write still gets the read timeout


# -- which nodes a request goes to -------------------------------------------------------------------------

def test_a_request_for_a_down_node_goes_on_to_the_others(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    down = _free_port()
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port), Node(name="pve2", host="127.0.0.1", port=down)],
             ca_tls(pki))
    assert t.request("GET", "/cluster/resources", node="pve2", raw=True).node == "pve1"
    assert t.request("GET", "/cluster/resources", node="pve9", raw=True).node == "pve1"   # not configured


def test_a_node_skipped_in_its_back_off_is_named_when_no_node_answers(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    down = _free_port()
    t = make([Node(name="pve1", host="127.0.0.1", port=down), Node(name="pve2", host="127.0.0.1", port=server.port)],
             ca_tls(pki), retries=0)
    assert t.get("/version") is None                     # pve1 refused: marked, pve2 answered
    server.script[("GET", "/api2/json/cluster/resources")] = [_hang_up]
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/cluster/resources")
    assert ei.value.message.startswith(f"no node reachable: pve1 (127.0.0.1:{down}: ")
    assert "(skipped)" in ei.value.message and f"pve2 (127.0.0.1:{server.port}: connection closed" in ei.value.message


def test_encode_params_takes_pairs_with_repeated_keys() -> None:
    from pvectl.http import encode_params

    assert encode_params([("tags", "a"), ("tags", "b c"), ("x", None)]) == "tags=a&tags=b+c"


def test_a_read_of_a_healthy_node_gets_the_read_timeout_not_the_probe_one(
        server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/nodes/pve1/status")] = [answer_after(0.4)]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), retries=0, read_timeout=3.0,
             probe_timeout=0.1)
    assert t.get("/nodes/pve1/status") is None


def test_a_cluster_wide_read_probing_a_failed_entry_node_gets_the_short_timeout(
        server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/version")] = [answer_after(0.6)]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), retries=0, read_timeout=3.0,
             probe_timeout=0.1, reprobe_after=0.05)
    t.health.unreachable("pve1", "connection refused")
    time.sleep(0.1)                                      # its back-off is over: this read is a re-probe
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/version")
    assert ei.value.attempts == [("pve1", f"127.0.0.1:{server.port}: no answer within 0.1 s")]
