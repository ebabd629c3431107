"""Transport, public behaviour not pinned elsewhere: what a cut or failed request reports (exact texts
and fields a caller acts on), a retry's pause cut to the deadline, nested `bounded()` scopes, the grace
of `reporting()`, a rotated token, and the keywords of `post`/`put`/`delete`/`from_config`. Against
the small HTTPS server of test_http.py; time is bounded generously, never compared exactly."""

from __future__ import annotations

import errno
import socket
import time
from types import SimpleNamespace
from typing import Any

import pytest
from test_http import AUTH, FakePVE, _close_transports, answer_after, ca_tls, make, pki, server  # noqa: F401

from pvectl.config import Node
from pvectl.deadline import Deadline
from pvectl.errors import DeadlineExceeded, NodeUnreachable
from pvectl.http import Result, Transport


def one(server: FakePVE, pki: dict[str, Any], **kw: Any) -> Transport:  # noqa: F811
    return make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), **kw)


def addr(server: FakePVE) -> str:  # noqa: F811
    return f"127.0.0.1:{server.port}"


# -- what a failed or cut request says ---------------------------------------------------------------

def test_a_write_the_server_hung_up_on_says_so(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    def hang_up(h: Any) -> None:
        h.close_connection = True

    server.script[("POST", "/api2/json/nodes/pve1/qemu/9000/clone")] = [hang_up]
    with pytest.raises(NodeUnreachable) as ei:
        one(server, pki).post("/nodes/pve1/qemu/9000/clone", {"newid": 101})
    assert ei.value.message == (f"POST /nodes/pve1/qemu/9000/clone: connection to pve1 ({addr(server)}) failed after "
                                "the request was sent (connection closed by the server); it may or may not have "
                                "been applied")


def test_a_write_answered_with_garbage_names_what_came_back(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    def garbage(h: Any) -> None:
        h.wfile.write(b"HELLO\r\n\r\n")
        h.close_connection = True

    server.script[("POST", "/api2/json/nodes/pve1/qemu/100/status/start")] = [garbage]
    with pytest.raises(NodeUnreachable) as ei:
        one(server, pki).post("/nodes/pve1/qemu/100/status/start")
    assert ei.value.uncertain
    assert ei.value.message.startswith(f"POST /nodes/pve1/qemu/100/status/start: connection to pve1 ({addr(server)}) "
                                       "failed after the request was sent (")
    assert "HELLO" in ei.value.message


@pytest.mark.parametrize(("error", "shown"), [
    (OSError(errno.EHOSTUNREACH, "No route to host"), "no route to host"),     # a sentence: lower case
    (OSError(errno.EIO, "I/O error"), "I/O error"),                            # an acronym stays
])
def test_a_connect_error_is_shown_in_the_message_case(monkeypatch: pytest.MonkeyPatch, error: OSError,
                                                      shown: str) -> None:
    def unreachable(*a: Any, **kw: Any) -> socket.socket:
        raise error

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with Transport([Node(name="pve1", host="127.0.0.1", port=8006)], auth=lambda: AUTH) as t, \
            pytest.raises(NodeUnreachable) as ei:
        t.get("/version")
    assert ei.value.message == f"no node reachable: pve1 (127.0.0.1:8006: {shown})"


def test_a_read_cut_by_the_deadline_names_the_node_and_request(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/nodes/pve1/status")] = [answer_after(3)]
    with pytest.raises(DeadlineExceeded) as ei:
        one(server, pki, deadline=Deadline(0.5)).get("/nodes/pve1/status")
    e = ei.value
    assert e.message == "GET /nodes/pve1/status: no answer from pve1 before the deadline"
    assert e.attempts == [("pve1", f"{addr(server)}: no answer before the deadline")]
    assert (e.method, e.path, e.node, e.uncertain) == ("GET", "/nodes/pve1/status", "pve1", False)


def test_a_write_cut_by_the_deadline_says_it_may_have_been_applied(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("POST", "/api2/json/nodes/pve1/qemu/100/status/start")] = [answer_after(3)]
    with pytest.raises(DeadlineExceeded) as ei:
        one(server, pki, deadline=Deadline(0.5)).post("/nodes/pve1/qemu/100/status/start")
    assert ei.value.message == ("POST /nodes/pve1/qemu/100/status/start: no answer from pve1 before the deadline; "
                                "the request was sent and may or may not have been applied")
    assert ei.value.uncertain


# -- deadlines: retries, nested scopes, the reporting grace -------------------------------------------

def test_a_retry_does_not_pause_past_the_deadline(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    """A 595 is retried after `backoff` (5 s here); the deadline (0.3 s) comes first and ends it."""
    server.script[("GET", "/api2/json/version")] = [(595, "Connection refused", b"")]
    t = one(server, pki, backoff=5.0, deadline=Deadline(0.3))
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded) as ei:
        t.get("/version")
    assert time.monotonic() - t0 < 0.3 + 0.6
    assert "nothing was sent" in ei.value.message and len(server.requests) == 1


def test_an_inner_scope_does_not_lift_an_outer_deadline(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    t = one(server, pki)
    with t.bounded(Deadline(0)):
        with t.bounded(Deadline(None)), pytest.raises(DeadlineExceeded):
            t.get("/version")
        with t.bounded(None), pytest.raises(DeadlineExceeded):
            t.get("/version")
        with pytest.raises(DeadlineExceeded):
            t.get("/version")                  # the outer deadline still holds after the inner block
    assert t.get("/version") is None
    assert server.requests == [server.requests[0]]


def test_reporting_reads_get_a_grace_after_the_deadline_also_when_nested(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    t = one(server, pki, deadline=Deadline(0))
    with pytest.raises(DeadlineExceeded):
        t.get("/version")
    with t.reporting():
        assert t.get("/version") is None
        with t.reporting():
            assert t.get("/version") is None
        assert t.get("/version") is None      # the outer grace is back after the inner block
    with pytest.raises(DeadlineExceeded):
        t.get("/version")                      # and the spent deadline after the outer one
    assert len(server.requests) == 3


def test_the_reporting_grace_bounds_a_hung_read(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/nodes/pve1/qemu/100/status/current")] = [answer_after(3)]
    t = one(server, pki, deadline=Deadline(0))
    t0 = time.monotonic()
    with t.reporting(0.5), pytest.raises(DeadlineExceeded):
        t.get("/nodes/pve1/qemu/100/status/current")
    assert time.monotonic() - t0 < 0.5 + 1.0


# -- the keywords every verb passes on; a rotated token ----------------------------------------------

def test_post_put_delete_pass_node_and_raw_on(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    t = one(server, pki)
    for verb in (t.post, t.put, t.delete):
        res = verb("/nodes/pve1/qemu/100/config", {"description": "x"}, node="pve1", raw=True)
        assert isinstance(res, Result) and (res.node, res.status) == ("pve1", 200)
    assert [r["method"] for r in server.requests] == ["POST", "PUT", "DELETE"]


def test_from_config_passes_the_options_on(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    cfg = SimpleNamespace(nodes=[Node(name="pve1", host="127.0.0.1", port=server.port)], tls=ca_tls(pki))
    with Transport.from_config(cfg, auth=lambda: AUTH, deadline=Deadline(0)) as t:  # type: ignore[arg-type]
        with pytest.raises(DeadlineExceeded):
            t.get("/version")
    assert server.requests == []


def test_a_rotated_token_is_used_after_refresh_auth(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    tokens = iter([AUTH, AUTH.replace("pvectl=", "pvectl2=")])
    with Transport([Node(name="pve1", host="127.0.0.1", port=server.port)], tls=ca_tls(pki),
                   auth=lambda: next(tokens)) as t:
        t.get("/version")
        t.refresh_auth()
        t.get("/version")
    assert [r["headers"]["Authorization"] for r in server.requests] == [AUTH, AUTH.replace("pvectl=", "pvectl2=")]
    Transport([Node(name="pve1", host="127.0.0.1", port=server.port)]).refresh_auth()   # no token source: a no-op
