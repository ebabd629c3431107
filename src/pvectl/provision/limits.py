"""Bounded concurrency for bulk provisioning: per node, per storage, per pveproxy."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..http import Transport


class _Limits:
    """Bounded concurrency for bulk work: clone tasks per node and per target storage (pain point #2:
    the storage lock is taken per allocation with a 10 s timeout)."""

    def __init__(self, max_per_node: int, max_per_storage: int) -> None:
        self.max_per_node = max(1, max_per_node)
        self.max_per_storage = max(1, max_per_storage)
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = {}

    def sem(self, key: str, n: int) -> threading.BoundedSemaphore:
        with self._lock:
            s = self._sems.get(key)
            if s is None:
                s = self._sems[key] = threading.BoundedSemaphore(n)
            return s


class _LimitedTransport:
    """Keeps at most `per_node` requests in flight per node from this process (pveproxy and pvedaemon
    run 3 workers per node: pve-semantics C14). Everything else is the wrapped Transport's."""

    def __init__(self, inner: Transport, per_node: int = 3) -> None:
        self._inner = inner
        self._per_node = per_node
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = {}

    def _sem(self, node: str | None) -> threading.BoundedSemaphore:
        key = node or self._inner.nodes[0].name
        with self._lock:
            s = self._sems.get(key)
            if s is None:
                s = self._sems[key] = threading.BoundedSemaphore(self._per_node)
            return s

    def request(self, method: str, path: str, params: Mapping[str, Any] | None = None, *, node: str | None = None,
                raw: bool = False) -> Any:
        with self._sem(node):
            return self._inner.request(method, path, params, node=node, raw=raw)

    def get(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("GET", path, params, **kw)

    def post(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("POST", path, params, **kw)

    def put(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("PUT", path, params, **kw)

    def delete(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("DELETE", path, params, **kw)

    def close(self) -> None:      # the wrapped transport belongs to the caller's Cluster
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


