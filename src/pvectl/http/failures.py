"""Why one attempt on one node failed, before it becomes a public error (NodeUnreachable & co.).

The transport must know whether the request may have reached the server: nothing sent (any method
may go to another node) or possibly sent (a write is never resent).
"""

from __future__ import annotations

import socket
import ssl

from .conn import RemoteDisconnected

__all__ = ["ConnectFailed", "SendFailed", "reason"]


class Failed(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(reason(cause))
        self.timed_out = isinstance(cause, (socket.timeout, TimeoutError))


class ConnectFailed(Failed):
    """Nothing was sent: safe to try another node with any method."""


class SendFailed(Failed):
    """The request may have reached the server."""


def reason(e: BaseException) -> str:
    """A short lower-case text for a socket-level failure."""
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.gaierror):
        return f"name resolution failed ({e.strerror})"
    if isinstance(e, RemoteDisconnected):
        return "connection closed by the server"
    if isinstance(e, ssl.SSLError):
        return "connection closed during the TLS handshake"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower() if e.strerror[:1].isupper() and e.strerror[1:2].islower() else e.strerror
    return str(e) or type(e).__name__
