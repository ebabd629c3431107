"""Listener-level faults: what a flaky network or a struggling node looks like to a client.

- stop/start a node's listener: pveproxy down, connections refused; open keep-alive connections
  are closed too. Requests proxied to it from other nodes get 595 `Connection refused` (§12.5).
- slow node: extra latency per request, spent inside a worker slot (an overloaded node).
- hang node: requests are read but not answered until `unhang_node` or the hang's time limit; a
  request relayed from another node then ends in 596 `Connection timed out` after the proxy's
  30 s inactivity timeout (`AnyEvent.pm::proxy_request`).
- fail the next N requests matching method and/or a path regex, with a status and PVE message,
  formatted like real errors (reason = first line, body `{"data":null,"message":"<msg>\\n"}`).
- drop the next N requests: the connection is closed without an answer.
- drop the answer of the next N requests: the request is carried out, then the connection is closed
  before the answer is written (the client cannot know whether its write happened).
- truncate the answer of the next N requests: the request is carried out, the status line and headers
  (with the full Content-Length) are written but only part of the body, then the connection closes
  (a connection broken mid-response).

Faults apply to the listener that receives a request, including requests relayed from another
node. The control API (`/_sim/...`) is never affected. All methods are thread-safe.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from . import wire


class Listeners(Protocol):
    """What faults switch on and off: the cluster's listeners (`server.SimServer`)."""

    def stop_listener(self, node: str) -> None: ...

    def start_listener(self, node: str) -> None: ...


@dataclass
class _Rule:
    count: int
    node: str | None
    method: str | None
    path: re.Pattern[str] | None
    status: int = 0
    message: str = ""

    def matches(self, node: str, method: str, path: str) -> bool:
        return (
            self.count > 0
            and (self.node is None or self.node == node)
            and (self.method is None or self.method == method)
            and (self.path is None or self.path.search(path) is not None)
        )

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"count": self.count, "node": self.node, "method": self.method,
                             "path": self.path.pattern if self.path else None}
        if self.status:
            d.update(status=self.status, message=self.message)
        return d


def _drop_rule(count: int, method: str | None, path: str | None, node: str | None) -> _Rule:
    if count < 1:
        raise ValueError("count must be >= 1")
    return _Rule(count, node, method.upper() if method else None, re.compile(path) if path else None)


# Statuses whose real answers carry no body: 401 (`AnyEvent.pm`, json format), and AnyEvent::HTTP's
# own 59x codes relayed by `proxy_request`.
_EMPTY_BODY = frozenset({401, 595, 596, 597, 598, 599})


def pve_error(status: int, message: str) -> wire.Response:
    """A response formatted like a real PVE error with this status and message."""
    return wire.plain_error(status, message, body=status not in _EMPTY_BODY)


class Faults:
    """Fault state of one simulated cluster, consulted by every listener for every request."""

    def __init__(self, server: Listeners | None = None) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._slow: dict[str, float] = {}
        self._hung: dict[str, float | None] = {}   # node -> monotonic deadline (None = until unhang)
        self._fail: list[_Rule] = []
        self._drop: list[_Rule] = []
        self._drop_answer: list[_Rule] = []
        self._truncate_answer: list[_Rule] = []
        self._held: dict[str, int] = {}             # node -> requests held by a hang right now

    # -- listener up/down ---------------------------------------------------------------------

    def _srv(self) -> Listeners:
        if self.server is None:
            raise RuntimeError("faults are not attached to running listeners")
        return self.server

    def stop_listener(self, node: str) -> None:
        """pveproxy down on `node`: new connections are refused, open ones are closed."""
        self._srv().stop_listener(node)

    def start_listener(self, node: str) -> None:
        self._srv().start_listener(node)

    # -- slow / hang ----------------------------------------------------------------------------

    def slow_node(self, node: str, seconds: float) -> None:
        """Add `seconds` of latency to every request `node` handles (0 clears it)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            if seconds:
                self._slow[node] = float(seconds)
            else:
                self._slow.pop(node, None)

    def latency(self, node: str) -> float:
        with self._lock:
            return self._slow.get(node, 0.0)

    def hang_node(self, node: str, seconds: float | None = None) -> None:
        """Accept requests on `node` but answer none until `unhang_node` (or `seconds` have passed)."""
        if seconds is not None and seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._cond:
            self._hung[node] = None if seconds is None else time.monotonic() + seconds
            self._cond.notify_all()

    def unhang_node(self, node: str | None = None) -> None:
        """Release a hung node (all nodes when `node` is None); held requests then proceed."""
        with self._cond:
            if node is None:
                self._hung.clear()
            else:
                self._hung.pop(node, None)
            self._cond.notify_all()

    def is_hung(self, node: str) -> bool:
        with self._lock:
            return self._hung_locked(node)

    def _hung_locked(self, node: str) -> bool:
        if node not in self._hung:
            return False
        deadline = self._hung[node]
        if deadline is not None and time.monotonic() >= deadline:
            del self._hung[node]
            return False
        return True

    def wait_if_hung(self, node: str, *, alive: Callable[[], bool] | None = None) -> None:
        """Block while `node` is hung (called by the listener after reading a request)."""
        with self._cond:
            if not self._hung_locked(node):
                return
            self._held[node] = self._held.get(node, 0) + 1
            try:
                while self._hung_locked(node):
                    if alive is not None and not alive():
                        return
                    deadline = self._hung.get(node)
                    wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                    self._cond.wait(wait)
            finally:
                self._held[node] -= 1

    def held(self, node: str) -> int:
        """How many requests a hang on `node` is holding right now."""
        with self._lock:
            return self._held.get(node, 0)

    # -- fail / drop next -----------------------------------------------------------------------

    def fail_next(self, count: int = 1, *, status: int = 500, message: str | None = None,
                  method: str | None = None, path: str | None = None, node: str | None = None) -> None:
        """Answer the next `count` matching requests with `status` and a PVE-style `message`.

        `path` is a regular expression searched in the request path (e.g. `r"/qemu/\\d+/clone$"`);
        `method` is matched exactly ("POST"); `node` limits it to one listener.
        """
        if count < 1:
            raise ValueError("count must be >= 1")
        if not 100 <= status <= 999:
            raise ValueError("status must be a 3-digit HTTP status")
        if message is None:
            try:
                message = HTTPStatus(status).phrase
            except ValueError:
                message = "error"
        rule = _Rule(count, node, method.upper() if method else None, re.compile(path) if path else None,
                     status, message)
        with self._lock:
            self._fail.append(rule)

    def drop_next(self, count: int = 1, *, method: str | None = None, path: str | None = None,
                  node: str | None = None) -> None:
        """Close the connection of the next `count` matching requests without answering."""
        with self._lock:
            self._drop.append(_drop_rule(count, method, path, node))

    def drop_answer_next(self, count: int = 1, *, method: str | None = None, path: str | None = None,
                         node: str | None = None) -> None:
        """Carry out the next `count` matching requests, then close the connection without the answer."""
        with self._lock:
            self._drop_answer.append(_drop_rule(count, method, path, node))

    def take_drop_answer(self, node: str, method: str, path: str) -> bool:
        return self._take(self._drop_answer, node, method, path) is not None

    def truncate_answer_next(self, count: int = 1, *, method: str | None = None, path: str | None = None,
                             node: str | None = None) -> None:
        """Carry out the next `count` matching requests, then write their answer's head (full
        Content-Length) and only part of its body before closing the connection."""
        with self._lock:
            self._truncate_answer.append(_drop_rule(count, method, path, node))

    def take_truncate_answer(self, node: str, method: str, path: str) -> bool:
        return self._take(self._truncate_answer, node, method, path) is not None

    def take_drop(self, node: str, method: str, path: str) -> bool:
        return self._take(self._drop, node, method, path) is not None

    def take_failure(self, node: str, method: str, path: str) -> wire.Response | None:
        rule = self._take(self._fail, node, method, path)
        return None if rule is None else pve_error(rule.status, rule.message)

    def _take(self, rules: list[_Rule], node: str, method: str, path: str) -> _Rule | None:
        if not rules:   # fast path, no lock: list truthiness is atomic
            return None
        with self._lock:
            for rule in rules:
                if rule.matches(node, method, path):
                    rule.count -= 1
                    if rule.count <= 0:
                        rules.remove(rule)
                    return rule
        return None

    # -- all ------------------------------------------------------------------------------------

    def clear(self, node: str | None = None) -> None:
        """Remove every fault (of one node, or all); hung requests are released."""
        with self._cond:
            if node is None:
                self._slow.clear()
                self._hung.clear()
                self._fail.clear()
                self._drop.clear()
                self._drop_answer.clear()
                self._truncate_answer.clear()
            else:
                self._slow.pop(node, None)
                self._hung.pop(node, None)
                self._fail[:] = [r for r in self._fail if r.node != node]
                self._drop[:] = [r for r in self._drop if r.node != node]
                self._drop_answer[:] = [r for r in self._drop_answer if r.node != node]
                self._truncate_answer[:] = [r for r in self._truncate_answer if r.node != node]
            self._cond.notify_all()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            return {
                "slow": dict(self._slow),
                "hung": {n: (None if d is None else round(max(0.0, d - now), 3)) for n, d in self._hung.items()},
                "fail_next": [r.describe() for r in self._fail],
                "drop_next": [r.describe() for r in self._drop],
                "drop_answer_next": [r.describe() for r in self._drop_answer],
                "truncate_answer_next": [r.describe() for r in self._truncate_answer],
                "held": {n: c for n, c in self._held.items() if c},
            }
