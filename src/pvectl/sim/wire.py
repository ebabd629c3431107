"""The seam between the simulator's HTTP listeners (`server`) and its API (`routes`).

A listener turns each HTTP request into a `Request`, hands it to `Api.handle(local_node, request)` and
writes back the `Response`, or relays the request to another node when it gets a `ProxyTo` (pveproxy
forwards `/nodes/{node}/...` requests for other nodes: pve-manager `PVE/HTTPServer.pm::rest_handler`,
`spec/pve-semantics.md` §12.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
