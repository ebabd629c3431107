"""What every tool call shares: one long-lived library `Cluster` per configured cluster, the plan
tokens, and the bridge from the library's blocking calls to the server's event loop.

Library calls run in worker threads (one `Cluster` is safe across threads), so a long task wait never
blocks other requests. Task progress parsed from the log (`Task.wait(on_progress=...)`) becomes MCP
progress notifications; a task still running at the deadline is returned with its UPID and how to
resume, not reported as a failure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context

from ..cluster import Cluster
from ..errors import ConfigError, DeadlineExceeded, PvectlError, TaskTimeout
from .output import ToolFailure, cut_text, failure
from .plans import DEFAULT_TTL, PlanStore

T = TypeVar("T")

DEFAULT_WAIT = 120.0        # seconds a tool waits for its task before answering with the UPID
MAX_WAIT = 600.0


class Runtime:
    def __init__(self, config_path: str | None = None, *, cluster: str | None = None,
                 plan_ttl: float = DEFAULT_TTL, factory: Callable[[str | None], Cluster] | None = None) -> None:
        self.config_path = config_path
        self.default_cluster = cluster
        self.plans = PlanStore(plan_ttl)
        self._factory = factory or self._from_config
        self._clusters: dict[str | None, Cluster] = {}
        self._dry: dict[str | None, Cluster] = {}
        self._lock = threading.Lock()

    def _from_config(self, name: str | None) -> Cluster:
        try:
            return Cluster.from_config(self.config_path, cluster=name, via="mcp")
        except TypeError:   # TEMPORARY until the library's `via` lands
            return Cluster.from_config(self.config_path, cluster=name)

    def name(self, cluster: str | None) -> str | None:
        return cluster if cluster is not None else self.default_cluster

    def cluster(self, cluster: str | None = None) -> Cluster:
        """The long-lived Cluster for `cluster` (None: the default one), created on first use."""
        key = self.name(cluster)
        with self._lock:
            pve = self._clusters.get(key)
            if pve is None:
                try:
                    pve = self._clusters[key] = self._factory(key)
                except ConfigError as exc:
                    raise ConfigError(exc.message, hint=exc.hint or "pass one of the config's cluster names") from None
            return pve

    def dry(self, cluster: str | None = None) -> Cluster:
        """The same cluster in dry-run mode: every read and guard, writes only planned."""
        key = self.name(cluster)
        pve = self.cluster(key)
        with self._lock:
            dry = self._dry.get(key)
            if dry is None:
                dry = self._dry[key] = pve.with_options(dry_run=True)
            return dry

    def close(self) -> None:
        with self._lock:
            clusters, self._clusters, self._dry = list(self._clusters.values()), {}, {}
        for pve in clusters:
            pve.close()

    async def call_raw(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking library call in a worker thread; its errors propagate unchanged."""
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking library call in a worker thread; a library error becomes a tool error
        carrying its JSON error object."""
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        except ToolFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - every error reaches the client as one JSON object
            raise failure(exc) from exc

    async def finish(self, ctx: Context | None, outcome: Any, timeout: float | None) -> dict[str, Any]:
        """The result of an operation started with `wait=False`: a `Task` is waited for (MCP progress
        from its log) until `timeout`; anything else is already the result."""
        from ..tasks import Task

        if not isinstance(outcome, Task):
            return dict(outcome.to_dict())
        return await self.wait(ctx, outcome, timeout)

    async def wait(self, ctx: Context | None, task: Any, timeout: float | None) -> dict[str, Any]:
        seconds = min(timeout or DEFAULT_WAIT, MAX_WAIT)
        on_progress = _progress_sender(ctx) if ctx is not None else None
        try:
            result = await anyio.to_thread.run_sync(lambda: task.wait(seconds, on_progress=on_progress))
        except (TaskTimeout, DeadlineExceeded) as exc:
            upid = str(getattr(exc, "upid", None) or task.upid)
            return {"outcome": "running", "upid": upid, "detail": exc.message,
                    "resume": f"call task_wait with upid={upid} (CLI: pvectl task wait {upid})"}
        except PvectlError as exc:
            raise failure(exc) from exc
        return dict(result.to_dict())


def _progress_sender(ctx: Context) -> Callable[[Any], None]:
    """An `on_progress` callback for a worker thread: each call becomes one MCP progress notification
    (a no-op when the client sent no progress token)."""
    step = [0]

    def send(p: Any) -> None:
        step[0] += 1
        fraction = getattr(p, "fraction", None)
        done = round(fraction * 100, 1) if fraction is not None else float(step[0])
        total = 100.0 if fraction is not None else None
        message = cut_text(str(getattr(p, "line", "")), 200)
        try:
            anyio.from_thread.run(ctx.report_progress, done, total, message)
        except Exception:  # noqa: BLE001, S110 - progress is best effort: a closed client must not fail the wait
            pass

    return send
