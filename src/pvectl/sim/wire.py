"""The seam between the simulator's HTTP listeners (`server`) and its API (`routes`).

A listener turns each HTTP request into a `Request`, hands it to `Api.handle(local_node, request)` and
writes back the `Response`, or relays the request to another node when it gets a `ProxyTo` (pveproxy
forwards `/nodes/{node}/...` requests for other nodes: pve-manager `PVE/HTTPServer.pm::rest_handler`,
`spec/pve-semantics.md` §12.5).
"""

from __future__ import annotations

import email.utils
import json
import time
import zlib
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

SERVER_HEADER = "pve-api-daemon/3.0"                 # AnyEvent.pm::response
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"  # Formatter/Standard.pm (json)
GZIP_MIN = 1024             # AnyEvent.pm::response: gzip when content_length > 1024
GZIP_LEVEL = 1              # memGzip uses zlib's default (6); level 1 costs 0.48 ms instead of 1.42 ms


@dataclass(frozen=True, slots=True)
class Request:
    method: str                 # "GET", "POST", "PUT", "DELETE"
    path: str                   # the raw path without the query, e.g. "/api2/json/nodes/pve1/qemu"
    query: str                  # the raw query string, without "?"
    headers: dict[str, str]     # header names lower-cased
    body: bytes = b""
    client_ip: str = "127.0.0.1"


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    # Seconds the listener waits before it sends this answer, without holding a worker:
    # pveproxy delays every 401 by 3 s (pve-http-server `AnyEvent.pm::authenticate_and_handle_request`).
    delay: float = 0.0
    # A fault: write the head and only part of the body, then close (a connection broken mid-answer).
    truncate: bool = False


@dataclass(frozen=True, slots=True)
class ProxyTo:
    """Relay the request unchanged (plus `PVEDisableProxy: true`) to this node's listener."""

    node: str


def first_line(text: str) -> str:
    # AnyEvent.pm::response: `($msg) = $msg =~ m/^(.*)$/m` - the reason phrase is the first line
    return text.split("\n", 1)[0].rstrip("\r")


def plain_error(status: int, message: str, *, body: bool = True) -> Response:
    """An error as pve-http-server formats it: reason = first line of the message, JSON body
    `{"data":null,"message":"<msg>\\n"}` (`message` since libpve-http-server-perl 5.2.0, §12.3)."""
    if not body:
        return Response(status, first_line(message))
    msg = message if message.endswith("\n") else message + "\n"
    payload = json.dumps({"data": None, "message": msg}, separators=(",", ":")).encode()
    return Response(status, first_line(message), payload)


JSON_HEADERS = [("Content-Type", "application/json;charset=UTF-8")]


def error_response(status: int, message: str, errors: dict[str, str] | None = None, *,
                   newline: bool = True) -> Response:
    """PVE's error answer: the reason phrase is the message's first line; the body carries
    `message` (libpve-http-server-perl >= 5.2.0) and `errors` for parameter errors."""
    body: dict[str, Any] = {"data": None}
    if errors:
        body["errors"] = errors
    body["message"] = message + ("\n" if newline and not message.endswith("\n") else "")
    reason = message.split("\n", 1)[0]
    return Response(status, reason, json.dumps(body, separators=(",", ":")).encode(), list(JSON_HEADERS))


# Rendering responses (AnyEvent.pm::response)

_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        cached = (now, email.utils.formatdate(now, usegmt=True))
        _date_cache = cached
    return cached[1]


_STD_HEADERS = frozenset({
    "cache-control", "connection", "date", "pragma", "server", "content-length", "expires",
    "keep-alive", "transfer-encoding",
})


def render_response(
    status: int,
    reason: str,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
    *,
    proto: str = "HTTP/1.1",
    keep_alive: bool = True,
    accept_gzip: bool = False,
    compression: bool = True,
) -> bytes:
    """The bytes pveproxy writes for one answer (AnyEvent.pm::response).

    Header order follows HTTP::Headers (general, response, entity headers). `Date`/`Expires`/
    `Cache-Control`/`Pragma`/`Server`/`Connection`/`Content-Length` are always set here; a relayed
    answer keeps its `Content-Type`, `Content-Encoding` and other headers.
    """
    try:
        std = HTTPStatus(status).phrase
    except ValueError:
        std = ""
    msg = first_line(reason) if reason else std
    if 100 <= status < 200 or status in (204, 304):
        body = b""  # AnyEvent.pm::response: no content for 1xx/204/304
    content_type: str | None = None
    encoding: str | None = None
    location: str | None = None
    others: list[tuple[str, str]] = []
    for name, value in headers or ():
        low = name.lower()
        if low == "content-type":
            content_type = value
        elif low == "content-encoding":
            encoding = value
        elif low == "location":
            location = value
        elif low not in _STD_HEADERS:
            others.append((name, value))
    if body and content_type is None:
        content_type = JSON_CONTENT_TYPE
    if body and encoding is None and compression and accept_gzip and len(body) > GZIP_MIN:
        body = _gzip(body)
        encoding = "gzip"
    date = _http_date()
    parts = [
        f"{proto} {status} {msg}\r\n",
        "Cache-Control: max-age=0\r\n",
        "Connection: Keep-Alive\r\n" if keep_alive else "Connection: close\r\n",
        f"Date: {date}\r\n",
        "Pragma: no-cache\r\n",
    ]
    if location is not None:
        parts.append(f"Location: {location}\r\n")
    parts.append(f"Server: {SERVER_HEADER}\r\n")
    if encoding is not None:
        parts.append(f"Content-Encoding: {encoding}\r\n")
    # AnyEvent.pm removes Content-Length for an empty answer (the connection then closes after it);
    # an empty keep-alive answer still needs `Content-Length: 0` to be framed.
    if body or keep_alive:
        parts.append(f"Content-Length: {len(body)}\r\n")
    if content_type is not None:
        parts.append(f"Content-Type: {content_type}\r\n")
    parts.append(f"Expires: {date}\r\n")
    for name, value in others:
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    head = "".join(parts).encode("utf-8", "replace")
    return head + body if body else head


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)   # 31 = gzip container, like memGzip
    return c.compress(data) + c.flush()
