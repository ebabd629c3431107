"""Transport: the texts and fields of TLS refusals (a user acts on the hint), the insecure-mode warning
(once per Transport, never for a verified or pinned node), what the debug log and the server see of a
connection, and a keep-alive connection the server dropped: a GET goes out again once, on a new
connection, to the same path and within the read timeout. Against the small HTTPS server of test_http.py."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from test_http import FakePVE, _close_transports, answer_after, ca_tls, make, pki, server  # noqa: F401

from pvectl.config import Node, Tls
from pvectl.errors import NodeUnreachable, TlsError

INSECURE_WARNING = ("TLS verification is disabled (tls.insecure: true): anyone on the network path can read "
                    "the API token; set tls.ca_file or tls.fingerprints")


def node(server: FakePVE, name: str = "pve1") -> Node:  # noqa: F811
    return Node(name=name, host="127.0.0.1", port=server.port)


def test_a_certificate_no_ca_vouches_for_is_refused_with_the_node_and_what_to_set(
        server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    with pytest.raises(TlsError) as ei:
        make([node(server)], Tls(ca_file=pki["other_ca"])).get("/version")
    e = ei.value
    assert e.message == f"TLS verification of pve1 (127.0.0.1:{server.port}) failed: unable to get local issuer certificate"
    assert e.node == "pve1"
    assert e.hint == ("set tls.ca_file to the cluster CA (/etc/pve/pve-root-ca.pem) or pin the node in "
                      "tls.fingerprints")


def test_a_pin_mismatch_names_the_node_and_the_key_to_update(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    with pytest.raises(TlsError) as ei:
        make([node(server)], Tls(fingerprints={"pve1": ":".join(["AB"] * 32)})).get("/version")
    assert ei.value.node == "pve1"
    assert ei.value.hint == ("if pve1's certificate was renewed on purpose, update tls.fingerprints.pve1 "
                             "(pvenode cert info on the node)")


def test_a_node_that_does_not_speak_tls_fails_the_handshake_by_name() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_in_plain_http() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    th = threading.Thread(target=answer_in_plain_http)
    th.start()
    try:
        with pytest.raises(TlsError) as ei:
            make([Node(name="pve1", host="127.0.0.1", port=port)], Tls(insecure=True), warn=lambda m: None).get("/version")
    finally:
        th.join(5)
        listener.close()
    e = ei.value
    assert e.message.startswith(f"TLS handshake with pve1 (127.0.0.1:{port}) failed: ")
    assert "[SSL" not in e.message and "_ssl.c" not in e.message      # OpenSSL's reason, not the repr
    assert e.node == "pve1" and e.exit_code == 5


# -- the insecure-mode warning --------------------------------------------------------------------

def test_the_insecure_warning_is_given_once_for_many_connections(server: FakePVE) -> None:  # noqa: F811
    server.close_after_response = True                  # every request opens a new connection
    warnings: list[str] = []
    t = make([node(server)], Tls(insecure=True), warn=warnings.append)
    for _ in range(3):
        t.get("/version")
        time.sleep(0.05)
    assert t.connections_opened == 3
    assert warnings == [INSECURE_WARNING]


def test_verified_and_pinned_nodes_give_no_insecure_warning(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    warnings: list[str] = []
    make([node(server)], ca_tls(pki), warn=warnings.append).get("/version")
    # a pinned node is verified by its pin even where tls.insecure is the fallback for the others
    make([node(server)], Tls(insecure=True, fingerprints={"pve1": pki["fp"]}), warn=warnings.append).get("/version")
    assert warnings == []


# -- what the debug log and the server see ----------------------------------------------------------

def test_the_debug_log_names_each_connection_and_its_tls_mode(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    lines: list[str] = []
    t = make([node(server)], ca_tls(pki), log=lines.append)
    t.get("/version")
    assert f"connected to pve1 (127.0.0.1:{server.port}), TLS ca_file" in lines
    assert server.requests[0]["headers"]["User-Agent"].startswith("pvectl/")


# -- a keep-alive connection the server dropped --------------------------------------------------------

def _hang_up(h: Any) -> None:
    h.close_connection = True                           # read the request, answer nothing, close


def test_a_get_on_a_dropped_keep_alive_connection_goes_out_once_more_on_a_new_one(
        server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    """The server closes an idle keep-alive connection just as the next GET is sent (pveproxy's
    keep-alive timeout): the GET is sent again on a new connection, to the same path, without
    counting as a retry (`retries=0`)."""
    path = "/api2/json/nodes/pve1/qemu/100/status/current"
    server.script[("GET", path)] = [(200, "OK", {"data": {"status": "running"}}), _hang_up,
                                    (200, "OK", {"data": {"status": "stopped"}})]
    t = make([node(server)], ca_tls(pki), retries=0)
    assert t.get("/nodes/pve1/qemu/100/status/current", {"full": 1}) == {"status": "running"}
    assert t.get("/nodes/pve1/qemu/100/status/current", {"full": 1}) == {"status": "stopped"}
    assert [(r["path"], r["query"]) for r in server.requests] == [(path, "full=1")] * 3
    assert server.connections == 2 and t.connections_opened == 2


def test_the_get_sent_again_is_bounded_by_the_read_timeout(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    path = "/api2/json/version"
    server.script[("GET", path)] = [(200, "OK", {"data": None}), _hang_up, answer_after(3)]
    t = make([node(server)], ca_tls(pki), retries=0, read_timeout=0.3)
    t.get("/version")
    t0 = time.monotonic()
    with pytest.raises(NodeUnreachable):
        t.get("/version")
    assert time.monotonic() - t0 < 0.3 + 0.5
