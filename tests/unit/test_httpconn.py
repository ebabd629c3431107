"""The minimal HTTP/1.1 connection: framing, keep-alive and errors, on canned byte streams."""

from __future__ import annotations

import io
from typing import Any

import pytest

from pvectl.http import conn as httpconn


class _Sock:
    def __init__(self) -> None:
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        pass


def _conn(reply: bytes, *, port: int = 8006) -> tuple[httpconn.Connection, _Sock]:
    c = httpconn.Connection("127.0.0.1", port, timeout=1.0, context=None)  # type: ignore[arg-type]
    sock = _Sock()
    c.sock = sock  # type: ignore[assignment]
    c._rfile = io.BytesIO(reply)  # type: ignore[assignment]
    return c, sock


def _roundtrip(reply: bytes, method: str = "GET", body: bytes | None = None) -> tuple[Any, bytes]:
    c, sock = _conn(reply)
    c.request(method, "/api2/json/version", body, {"Authorization": "PVEAPIToken=a@pam!t=s"})
    return c.getresponse(), sock.sent


def test_request_line_headers_and_content_length() -> None:
    r, sent = _roundtrip(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", "POST", b"a=1")
    assert sent == (b"POST /api2/json/version HTTP/1.1\r\nHost: 127.0.0.1:8006\r\nAccept-Encoding: identity\r\n"
                    b"Authorization: PVEAPIToken=a@pam!t=s\r\nContent-Length: 3\r\n\r\na=1")
    assert (r.status, r.reason, r.read(), r.will_close) == (200, "OK", b"{}", False)


def test_a_post_without_body_sends_content_length_zero() -> None:
    _, sent = _roundtrip(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "POST")
    assert b"Content-Length: 0\r\n" in sent


def test_reason_phrase_is_the_proxmox_message() -> None:
    # pveproxy puts the error text in the reason phrase (spec/pve-semantics.md §12.3)
    r, _ = _roundtrip(b"HTTP/1.1 500 VM 100 is running - destroy failed\r\nContent-Length: 13\r\n"
                      b"Connection: close\r\n\r\n{\"data\":null}")
    assert (r.status, r.reason, r.read(), r.will_close) == (500, "VM 100 is running - destroy failed",
                                                           b'{"data":null}', True)


def test_chunked_body_with_trailer() -> None:
    r, _ = _roundtrip(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"4\r\n{\"da\r\nA;ext=1\r\nta\":null}\n\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert r.read() == b'{"data":null}\n'


def test_body_framed_by_close_and_http10() -> None:
    r, _ = _roundtrip(b"HTTP/1.0 200 OK\r\n\r\nabc")
    assert (r.read(), r.will_close) == (b"abc", True)


def test_empty_bodies() -> None:
    r, _ = _roundtrip(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert r.read() == b""
    r, _ = _roundtrip(b"HTTP/1.1 401 No ticket\r\nContent-Length: 0\r\n\r\n")
    assert (r.status, r.reason, r.read()) == (401, "No ticket", b"")


def test_repeated_headers_are_joined() -> None:
    r, _ = _roundtrip(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 0\r\n\r\n")
    assert r.getheader("x-a") == "1, 2" and r.getheader("missing", "d") == "d"


@pytest.mark.parametrize("reply,error", [
    (b"", httpconn.RemoteDisconnected),
    (b"garbage\r\n\r\n", httpconn.BadStatusLine),
    (b"HTTP/1.1 abc OK\r\n\r\n", httpconn.BadStatusLine),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", httpconn.IncompleteRead),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", httpconn.HTTPException),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", httpconn.IncompleteRead),
])
def test_broken_answers_raise(reply: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        _roundtrip(reply)


def test_an_idle_connection_closed_by_the_server_is_a_remote_disconnect() -> None:
    # what a keep-alive connection looks like after pveproxy's idle timeout: EOF before a status line
    err = httpconn.RemoteDisconnected("x")
    assert isinstance(err, ConnectionResetError) and isinstance(err, httpconn.HTTPException)


def test_the_transport_does_not_import_http_client() -> None:
    import subprocess
    import sys

    code = "import sys, pvectl.http; print('http.client' in sys.modules, 'email.parser' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_form_and_path_encoding_match_urllib() -> None:
    # the transport's own percent-encoding must give byte-for-byte what urllib.parse gives
    from urllib.parse import quote, urlencode

    from hypothesis import given
    from hypothesis import strategies as st

    from pvectl.http import encode_params, quote_path

    @given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=40), max_size=6))
    def form(params: dict[str, str]) -> None:
        assert encode_params(params) == urlencode(params)

    @given(st.text(max_size=60))
    def path(text: str) -> None:
        assert quote_path(text) == quote(text, safe="/:@!$&'()*+,;=-._~%")

    form()
    path()
