"""Transport: each node is verified by its own TLS mode even when one Transport mixes them, and answers
that are not the usual `{"data": ...}` (an empty body, a JSON value that is not an object, no JSON at
all). Against the small HTTPS server of test_http.py."""

from __future__ import annotations

from typing import Any

import pytest
from test_http import (  # noqa: F401  (pki, server: fixtures; _close_transports: autouse)
    FakePVE,
    _close_transports,
    ca_tls,
    make,
    pki,
    server,
)

from pvectl.config import Node, Tls
from pvectl.errors import PvectlError, TlsError
from pvectl.http import Result


def test_a_pinned_node_does_not_lend_its_unverified_context_to_a_ca_checked_one(
        server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    """pve1 is pinned (its certificate is checked by fingerprint, not by a CA); pve2 must be verified
    against tls.ca_file, here a CA that did not sign the server's certificate."""
    tls = Tls(ca_file=pki["other_ca"], fingerprints={"pve1": pki["fp"]})
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port),
              Node(name="pve2", host="127.0.0.1", port=server.port)], tls)
    assert t.get("/nodes/pve1/status", node="pve1") is None
    with pytest.raises(TlsError) as ei:
        t.get("/nodes/pve2/status", node="pve2")
    assert str(ei.value).startswith(f"TLS verification of pve2 (127.0.0.1:{server.port}) failed: ")
    assert [r["path"] for r in server.requests] == ["/api2/json/nodes/pve1/status"]


def one(server: FakePVE, pki: dict[str, Any]) -> Any:  # noqa: F811
    return make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))


def test_an_empty_answer_is_no_data(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("PUT", "/api2/json/nodes/pve1/qemu/100/config")] = [(200, "OK", b"")]
    t = one(server, pki)
    assert t.put("/nodes/pve1/qemu/100/config", {"onboot": 1}) is None


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null"])
def test_a_json_answer_that_is_not_an_object_is_no_data(server: FakePVE, pki: dict[str, Any], body: bytes) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/version")] = [(200, "OK", body)]
    t = one(server, pki)
    assert t.get("/version") is None
    res = t.get("/version", raw=True)
    assert isinstance(res, Result) and (res.data, res.total, res.status) == (None, None, 200)


def test_an_answer_that_is_not_json_is_an_error_naming_the_request(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/version")] = [(200, "OK", b"<html>proxy login</html>")]
    with pytest.raises(PvectlError) as ei:
        one(server, pki).get("/version")
    assert str(ei.value) == "GET /version: pve1 answered 200 with a body that is not JSON"
    assert ei.value.exit_code == 1


def test_a_ca_file_that_is_not_a_certificate_is_refused_with_a_hint(tmp_path: Any) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    t = make([Node(name="pve1", host="127.0.0.1", port=8006)], Tls(ca_file=str(bad)))
    with pytest.raises(TlsError) as ei:
        t.get("/version")
    assert str(ei.value).startswith(f"cannot load tls.ca_file {bad}: ")
    assert ei.value.hint == "tls.ca_file must be the cluster CA in PEM (/etc/pve/pve-root-ca.pem)"
    assert ei.value.exit_code == 5


def _answer_raw(data: bytes) -> Any:
    def answer(handler: Any) -> None:
        handler.wfile.write(data)
        handler.wfile.flush()
        handler.close_connection = True
    return answer


@pytest.mark.parametrize("garbage", [
    b"\x00\xff garbage\r\n",
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"\x1b[2J\x07 first line\rsecond line\x85\xe2\x80\xa8 third " + b"x" * 500 + b"\r\n",
])
def test_an_answer_that_is_not_http_is_one_readable_line(server: FakePVE, pki: dict[str, Any],  # noqa: F811
                                                          garbage: bytes) -> None:
    server.script[("GET", "/api2/json/version")] = [_answer_raw(garbage)]
    with pytest.raises(PvectlError) as ei:
        one(server, pki).get("/version")
    message = str(ei.value)
    assert "not HTTP" in message, message
    assert message.isprintable() and message.isascii(), repr(message)     # no raw control character, one line
    excerpt = message[message.index("not HTTP"):]
    assert len(excerpt) < 120, message                                     # a short excerpt, not the whole line


def test_a_reason_phrase_with_control_characters_is_escaped(server: FakePVE, pki: dict[str, Any]) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/version")] = [_answer_raw(
        b"HTTP/1.1 500 VM 100 \x1b[31mnot\x07 running\x85\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")]
    with pytest.raises(PvectlError) as ei:
        one(server, pki).get("/version")
    assert "VM 100 \\x1b[31mnot\\x07 running\\x85" in str(ei.value)
    assert str(ei.value).isprintable()


@pytest.mark.parametrize("size", [b"zz", b"-1", b"\xb2"])
def test_a_chunk_size_that_is_not_hex_is_an_answer_error(server: FakePVE, pki: dict[str, Any], size: bytes) -> None:  # noqa: F811
    server.script[("GET", "/api2/json/version")] = [_answer_raw(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + size + b"\r\n{}\r\n0\r\n\r\n")]
    with pytest.raises(PvectlError) as ei:
        one(server, pki).get("/version")
    assert "bad chunk size" in str(ei.value) and str(ei.value).isprintable()
