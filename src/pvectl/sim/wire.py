"""The seam between the simulator's HTTP listeners (`server`) and its API (`routes`).

A listener turns each HTTP request into a `Request`, hands it to `Api.handle(local_node, request)` and
writes back the `Response`, or relays the request to another node when it gets a `ProxyTo` (pveproxy
forwards `/nodes/{node}/...` requests for other nodes: pve-manager `PVE/HTTPServer.pm::rest_handler`,
`spec/pve-semantics.md` §12.5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


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
