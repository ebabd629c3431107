"""The minimal HTTP/1.1 connection, continued: where one answer ends and the next begins on a
keep-alive connection (bodiless statuses, HEAD, chunked bodies with trailers, bare-LF line ends),
the HTTP/1.0 keep-alive rules, the Host and Content-Length headers sent, and the texts of broken
answers (they end up in the transport's error messages). On canned byte streams."""

from __future__ import annotations

import io
from typing import Any

import pytest
from test_httpconn import _conn, _Sock

from pvectl.http import conn as httpconn

NEXT = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"     # the answer after the one under test


def _answers(stream: bytes, first_method: str = "GET") -> tuple[Any, Any]:
    """Two request/answer rounds on one kept-alive connection."""
    c, _ = _conn(stream)
    c.request(first_method, "/api2/json/version")
    first = c.getresponse()
    c.request("GET", "/api2/json/version")
    return first, c.getresponse()


def _sent(host: str, port: int, method: str, body: bytes | None = None) -> bytes:
    c = httpconn.Connection(host, port, timeout=1.0, context=None)  # type: ignore[arg-type]
    sock = _Sock()
    c.sock = sock  # type: ignore[assignment]
    c.request(method, "/api2/json/version", body)
    return sock.sent


# -- where an answer ends ---------------------------------------------------------------------------

@pytest.mark.parametrize("method,head", [
    ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ("GET", b"HTTP/1.1 304 Not Modified\r\n\r\n"),
    ("GET", b"HTTP/1.1 100 Continue\r\n\r\n"),
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
])
def test_a_bodiless_answer_leaves_the_connection_open_for_the_next(method: str, head: bytes) -> None:
    first, second = _answers(head + NEXT, method)
    assert (first.read(), first.will_close) == (b"", False)
    assert (second.status, second.read()) == (200, b"{}")


def test_chunked_answers_with_trailers_follow_each_other_on_one_connection() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"10;a=1;b=2\r\n{\"data\":\"0123\"} \r\n0\r\nX-Trailer: 1\r\n\r\n")
    first, second = _answers(chunked + NEXT)
    assert first.read() == b'{"data":"0123"} '           # 0x10 = 16 bytes, two chunk extensions
    assert (second.status, second.read()) == (200, b"{}")


def test_answers_with_bare_lf_line_ends_are_read() -> None:
    stream = (b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\n{}\n0\nX-Trailer: 1\n\n"
              b"HTTP/1.1 200 OK\nContent-Length: 4\n\nnull")
    first, second = _answers(stream)
    assert (first.read(), second.read()) == (b"{}", b"null")


def test_a_chunked_answer_whose_trailers_are_cut_off_keeps_its_body() -> None:
    c, _ = _conn(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: 1\r\n")
    c.request("GET", "/")
    assert c.getresponse().read() == b"{}"


def test_a_chunk_size_that_is_not_hex_is_an_http_error() -> None:
    with pytest.raises(httpconn.HTTPException, match="bad chunk size 'zz'"):
        _conn(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n")[0].getresponse()


@pytest.mark.parametrize("reply,error,text", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", httpconn.IncompleteRead, "answer cut off in its chunked body"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", httpconn.IncompleteRead, "answer cut off in a chunk"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", httpconn.IncompleteRead, "5 of 10 bytes"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", httpconn.HTTPException, "bad Content-Length 'x'"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 250 + b"\r\n", httpconn.HTTPException, "too many headers"),
    (b"HTTP/1.1\r\n\r\n", httpconn.BadStatusLine, "HTTP/1.1"),
])
def test_a_broken_answer_says_what_is_wrong(reply: bytes, error: type[Exception], text: str) -> None:
    with pytest.raises(error) as ei:
        _conn(reply)[0].getresponse()
    assert text in str(ei.value)


# -- status line and headers ------------------------------------------------------------------------

def test_a_status_line_without_a_reason_phrase() -> None:
    r = _conn(b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n{}")[0].getresponse()
    assert (r.status, r.reason, r.read()) == (200, "", b"{}")


def test_http10_closes_unless_keep_alive_is_asked_for() -> None:
    r = _conn(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}")[0].getresponse()
    assert (r.read(), r.will_close) == (b"{}", True)
    r = _conn(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n{}")[0].getresponse()
    assert (r.read(), r.will_close) == (b"{}", False)


def test_a_header_value_may_hold_colons() -> None:
    r = _conn(b"HTTP/1.1 200 OK\r\nLocation: https://pve1:8006/\r\nContent-Length: 0\r\n\r\n")[0].getresponse()
    assert r.getheader("Location") == "https://pve1:8006/"


def test_a_closed_connection_is_not_read_from_and_reconnects() -> None:
    c, _ = _conn(b"")
    c.close()
    assert c.sock is None
    with pytest.raises(httpconn.RemoteDisconnected):
        c.getresponse()


# -- what is sent -----------------------------------------------------------------------------------

@pytest.mark.parametrize("host,port,expected", [
    ("127.0.0.1", 443, b"Host: 127.0.0.1\r\n"),
    ("127.0.0.1", 8006, b"Host: 127.0.0.1:8006\r\n"),
    ("::1", 8006, b"Host: [::1]:8006\r\n"),
    ("[::1]", 8006, b"Host: [::1]:8006\r\n"),
])
def test_the_host_header(host: str, port: int, expected: bytes) -> None:
    assert expected in _sent(host, port, "GET")


def test_content_length_is_sent_with_writes_only() -> None:
    assert b"Content-Length" not in _sent("127.0.0.1", 8006, "GET")
    assert b"Content-Length" not in _sent("127.0.0.1", 8006, "DELETE")
    assert b"\r\nContent-Length: 0\r\n" in _sent("127.0.0.1", 8006, "PUT")
    assert b"\r\nContent-Length: 0\r\n" in _sent("127.0.0.1", 8006, "POST")
    assert _sent("127.0.0.1", 8006, "PUT", b"a=1").endswith(b"\r\nContent-Length: 3\r\n\r\na=1")


def test_a_stream_is_read_only_up_to_the_answer() -> None:
    # nothing of the next answer is consumed by the one before it
    rfile = io.BytesIO(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" + NEXT)
    c, _ = _conn(b"")
    c._rfile = rfile  # type: ignore[assignment]
    c.getresponse()
    assert rfile.read() == NEXT


def test_a_closed_connection_can_be_closed_again() -> None:
    c, _ = _conn(b"")
    c.close()
    c.close()
    assert (c.sock, c._rfile) == (None, None)


def test_a_host_name_that_is_not_ascii_is_passed_on_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ASCII name goes to the socket layer as bytes (no IDNA codec import); any other name is
    left to Python's IDNA encoding, never a UnicodeEncodeError of our own."""
    seen: list[Any] = []

    def refuse(address: Any, timeout: float) -> Any:
        seen.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(httpconn.socket, "create_connection", refuse)
    for host in ("pve1", "pvé1"):
        with pytest.raises(ConnectionRefusedError):
            httpconn.Connection(host, 8006, timeout=1.0, context=None).connect()  # type: ignore[arg-type]
    assert seen == [(b"pve1", 8006), ("pvé1", 8006)]


@pytest.mark.parametrize("size", [b"1_0", b"+10", b" -1"])
def test_a_chunk_size_int_would_take_is_still_not_hex(size: bytes) -> None:
    # int(x, 16) accepts '1_0', '+10' and '-1'; HTTP's chunk-size is hex digits only (RFC 9112 §7.1)
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"
    with pytest.raises(httpconn.HTTPException, match="bad chunk size"):
        _conn(reply)[0].getresponse()


def test_an_empty_chunk_size_line_is_the_last_chunk() -> None:
    c, _ = _conn(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n\r\n")
    assert c.getresponse().read() == b"{}"


# -- texts that quote what a server sent ------------------------------------------------------------

@pytest.mark.parametrize("data,expected", [
    (b"SSH-2.0-OpenSSH_9.2\r\n\x00\x7f", "'SSH-2.0-OpenSSH_9.2\\r\\n\\x00\\x7f'"),
    (b"\xb2\xe9", "'\\xb2\\xe9'"),
    (b"a" * 40, "'" + "a" * 40 + "'"),                      # exactly the limit: all of it
    (b"a" * 41, "'" + "a" * 40 + "'..."),
    (b"a" * 37 + b"\x00", "'" + "a" * 37 + "'..."),         # an escape is not split
    (b"a" * 36 + b"\x00", "'" + "a" * 36 + "\\x00'"),
    (b"", "''"),
])
def test_an_excerpt_is_one_quoted_printable_line(data: bytes, expected: str) -> None:
    assert httpconn.excerpt(data) == expected


def test_an_excerpt_may_be_given_its_own_limit() -> None:
    assert httpconn.excerpt(b"abcdef", limit=3) == "'abc'..."


@pytest.mark.parametrize("text,expected", [
    ("VM 100 is running", "VM 100 is running"),
    ("café \x1b[31mnot\x07 running\r\n", "café \\x1b[31mnot\\x07 running\\r\\n"),
    ("\x85ünï", "\\x85ünï"),
])
def test_printable_escapes_only_what_is_not_printable(text: str, expected: str) -> None:
    assert httpconn.printable(text) == expected
