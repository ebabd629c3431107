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
from .connect import open_cluster
from .output import ToolFailure, cut_text, failure
from .plans import DEFAULT_TTL, PlanStore

T = TypeVar("T")

DEFAULT_WAIT = 120.0        # seconds a tool waits for its task before answering with the UPID
MAX_WAIT = 600.0


class Runtime:
    def __init__(self, config_path: str | None = None, *, cluster: str | None = None,
                 plan_ttl: float = DEFAULT_TTL, factory: Callable[[str | None], Cluster] | None = None,
                 connected: Cluster | None = None) -> None:
        self.config_path = config_path
        self.default_cluster = cluster
        self.plans = PlanStore(plan_ttl)
        self._factory = factory or self._from_config
        self._clusters: dict[str | None, Cluster] = {} if connected is None else {cluster: connected}
        self._dry: dict[str | None, Cluster] = {}
        self._lock = threading.Lock()

    def _from_config(self, name: str | None) -> Cluster:
        return open_cluster(self.config_path, name)

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
        out = dict(result.to_dict())
        out.setdefault("outcome", "done")       # the task ended OK (a failed one raised TaskFailed)
        return out


def event_sender(ctx: Context | None) -> Callable[[dict[str, Any]], None] | None:
    """An `on_event` callback for the library's multi-step operations (provision, drain): each event
    becomes one MCP progress notification, its fields as the message."""
    if ctx is None:
        return None
    send = _progress_sender(ctx)
    shown = ("event", "name", "vmid", "node", "step", "state", "target", "outcome", "line", "message")

    def on_event(event: dict[str, Any]) -> None:
        text = " ".join(f"{k}={event[k]}" for k in shown if event.get(k) not in (None, ""))
        fraction = event.get("fraction")
        send(_Step(fraction if isinstance(fraction, int | float) else None, text))

    return on_event


class _Step:
    __slots__ = ("fraction", "line")

    def __init__(self, fraction: float | None, line: str) -> None:
        self.fraction = fraction
        self.line = line


def _progress_sender(ctx: Context) -> Callable[[Any], None]:
    """An `on_progress` callback for a worker thread: each call becomes one MCP progress notification
    (a no-op when the client sent no progress token).

    MCP progress must increase with every notification, but a task's log can run several phases that
    each go 0-100 % (each disk copy, then the RAM of a live migration). The first phase reports
    percent of 100; from the second on, the value is 100 per finished phase plus the current percent,
    with no total. Lines without a percentage count up by one."""
    state = {"phase": 0, "last_pct": -1.0, "sent": -1.0}

    def send(p: Any) -> None:
        fraction = getattr(p, "fraction", None)
        if fraction is None:
            value = state["sent"] + 1
            total = None
        else:
            pct = round(float(fraction) * 100, 1)
            if pct < state["last_pct"]:
                state["phase"] += 1         # a new phase started over from 0 %
            state["last_pct"] = pct
            value = state["phase"] * 100 + pct
            total = 100.0 if state["phase"] == 0 else None
        if value <= state["sent"]:
            return
        state["sent"] = value
        try:
            anyio.from_thread.run(ctx.report_progress, value, total, cut_text(str(getattr(p, "line", "")), 200))
        except Exception:  # noqa: BLE001, S110 - progress is best effort: a closed client must not fail the wait
            pass

    return send
