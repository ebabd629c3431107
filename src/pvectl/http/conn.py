"""A minimal HTTP/1.1 client connection over `ssl`, for the transport's start-up budget.

`http.client` imports the `email` package to parse headers: 13–20 ms of every command's start on
our machines (bench/RESULTS.md), more than the rest of pvectl's own modules together. The Proxmox API
needs only a small part of HTTP/1.1: one request at a time on a keep-alive connection, status line,
headers, and a body framed by Content-Length (pveproxy always sends it) or, from other servers,
chunked or closed. This module implements exactly that, with the same interface the transport used
from `http.client.HTTPSConnection` (`connect`, `sock`, `request`, `getresponse`, `close`).
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import BinaryIO

_MAX_LINE = 65536
_MAX_HEADERS = 200


class HTTPException(Exception):
    """The server's answer could not be read as HTTP."""


class RemoteDisconnected(ConnectionResetError, HTTPException):
    """The server closed the connection before answering (typically an idle keep-alive one)."""


class BadStatusLine(HTTPException):
    pass


class IncompleteRead(HTTPException):
    pass


def excerpt(data: bytes, limit: int = 40) -> str:
    """The start of `data` for an error message: one quoted line of printable ASCII, each character
    that is not printable ASCII escaped as in a repr (`\\x00`, `\\r`), at most `limit` characters
    before the closing quote (then `...`)."""
    pieces: list[str] = []
    size = 0
    for c in data.decode("latin-1"):
        piece = ascii(c)[1:-1]
        if size + len(piece) > limit:
            return "'" + "".join(pieces) + "'..."
        pieces.append(piece)
        size += len(piece)
    return "'" + "".join(pieces) + "'"


def printable(text: str) -> str:
    """`text` with each character that is not printable escaped (`\\x1b`, `\\r`): it stays one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class Response:
    __slots__ = ("status", "reason", "headers", "body", "will_close")

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes, will_close: bool) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers          # names lower-cased
        self.body = body
        self.will_close = will_close

    def read(self) -> bytes:
        return self.body

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


class Connection:
    """One HTTPS connection: `request()` then `getresponse()`, repeated while keep-alive lasts."""

    def __init__(self, host: str, port: int, *, timeout: float, context: ssl.SSLContext) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.context = context
        self.sock: ssl.SSLSocket | None = None
        self._rfile: BinaryIO | None = None
        self._method = "GET"

    def connect(self) -> None:
        # bytes skip the IDNA encoding that getaddrinfo and ssl apply to a str name (encodings.idna:
        # ~3 ms to import); a name that is not ASCII still goes through it
        name: str | bytes = self.host.encode("ascii") if self.host.isascii() else self.host
        raw = socket.create_connection((name, self.port), timeout=self.timeout)  # type: ignore[arg-type]
        try:
            self.sock = self.context.wrap_socket(raw, server_hostname=name)
        except BaseException:
            raw.close()
            raise
        self._rfile = self.sock.makefile("rb")

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> None:
        if self.sock is None:
            self.connect()
        host = self.host if self.port == 443 else f"{self.host}:{self.port}"
        if ":" in self.host and not self.host.startswith("["):
            host = f"[{self.host}]:{self.port}"
        lines = [f"{method} {url} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._method = method
        assert self.sock is not None
        self.sock.sendall(head + (body or b""))

    def getresponse(self) -> Response:
        rfile = self._rfile
        if rfile is None:
            raise RemoteDisconnected("not connected")
        line = rfile.readline(_MAX_LINE + 1)
        if not line:
            raise RemoteDisconnected("Remote end closed connection without response")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not (len(parts[1]) == 3 and parts[1].isascii()
                                                                       and parts[1].isdigit()):
            # another service on the port (ssh, a plain-text banner) or a broken proxy: a short escaped
            # excerpt, never the raw bytes (control characters, line breaks) in the error message
            start = excerpt(line.rstrip(b"\r\n"))
            raise BadStatusLine(f"answered with something that is not HTTP (another service on this port?): {start}")
        version, status = parts[0], int(parts[1])
        reason = printable(parts[2]) if len(parts) > 2 else ""      # it may end up in an error message
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            h = rfile.readline(_MAX_LINE + 1)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        else:
            raise HTTPException("too many headers")
        conn_header = headers.get("connection", "").lower()
        will_close = "close" in conn_header or (version == "HTTP/1.0" and "keep-alive" not in conn_header)
        if self._method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise HTTPException(f"bad Content-Length {excerpt(headers['content-length'].encode('latin-1'))}") from None
            body = rfile.read(length)
            if len(body) < length:
                raise IncompleteRead(f"{len(body)} of {length} bytes")
        else:
            body = rfile.read()          # framed by the end of the connection
            will_close = True
        return Response(status, reason, headers, body, will_close)

    def _read_chunked(self) -> bytes:
        rfile = self._rfile
        assert rfile is not None
        out = bytearray()
        while True:
            size_line = rfile.readline(_MAX_LINE + 1)
            if not size_line:
                raise IncompleteRead("chunked body cut off")
            size_field = size_line.split(b";", 1)[0].strip() or b"0"
            try:
                size = int(size_field, 16) if size_field.isalnum() else -1     # (int() takes '-1', '1_0')
            except ValueError:
                size = -1
            if size < 0:
                raise HTTPException(f"bad chunk size {excerpt(size_field)}")
            if size == 0:
                while rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass                 # trailers
                return bytes(out)
            chunk = rfile.read(size)
            if len(chunk) < size:
                raise IncompleteRead("chunk cut off")
            out += chunk
            rfile.readline(_MAX_LINE + 1)

    def close(self) -> None:
        if self._rfile is not None:
            self._rfile.close()
            self._rfile = None
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
