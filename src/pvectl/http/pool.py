"""Idle keep-alive connections per node, shared by the threads that use one `Transport`.

A thread takes a connection for one request and gives it back after reading the answer, so no two
threads ever share a connection at the same moment, and a few threads reuse a few connections.
"""

from __future__ import annotations

import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from .conn import Connection

__all__ = ["IdlePool", "dropped"]

# pveproxy closes a keep-alive connection after 5 s without a request (AnyEvent.pm::new `timeout => 5`);
# a write is never sent on a connection idle longer than this, so it cannot race the server's close
WRITE_REUSE_IDLE = 2.0
POOL_IDLE_MAX = 8      # idle connections kept per node (threads sharing a Transport each take one)


def dropped(sock: socket.socket) -> bool:
    """True when an idle connection was closed by the peer (readable at EOF) or broke."""
    import select

    try:
        r, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(r)  # an idle HTTP connection has nothing to read unless the server closed it


class IdlePool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[Connection, float]]] = {}

    def take(self, node: str, write: bool) -> Connection | None:
        """An idle connection to `node` that still looks open (None: open a new one)."""
        now = time.monotonic()
        stale = []
        found = None
        with self._lock:
            lst = self._idle.get(node)
            while lst:
                c, since = lst.pop()
                # A write never goes out on a connection that has idled long enough for pveproxy to
                # be closing it (a write is never resent, so it must not race the server's close).
                if c.sock is not None and not (write and now - since > WRITE_REUSE_IDLE) and not dropped(c.sock):
                    found = c
                    break
                stale.append(c)  # the server closed it while idle (pveproxy keep-alive timeout)
        for c in stale:
            c.close()
        return found

    def give(self, node: str, conn: Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(node, [])
            if len(idle) < POOL_IDLE_MAX:
                idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for lst in self._idle.values() for c, _ in lst]
            self._idle.clear()
        for c in conns:
            c.close()
