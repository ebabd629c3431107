"""Driving `pvectl mcp` in-process: build the server on a simulator, talk to it with the SDK's
in-memory `Client`, and count the writes the simulator received."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client
from mcp.types import CallToolResult, ElicitResult

from pvectl.mcp.runtime import Runtime
from pvectl.mcp.server import Built, Options, build
from pvectl.sim.cluster import Cluster as SimCluster

Elicitor = Callable[[Any, Any], Awaitable[ElicitResult]]


def make(sim: SimCluster, tier: str = "read", *, tools: list[str] | None = None, plan_ttl: float | None = None,
         check_permissions: bool = True) -> tuple[Built, str]:
    """The server and what it logged at start-up."""
    log = io.StringIO()
    rt = Runtime(str(sim.config_path), **({"plan_ttl": plan_ttl} if plan_ttl else {}))
    built = build(Options(tier=tier, tools=tools, check_permissions=check_permissions, log=log), rt)
    return built, log.getvalue()


@asynccontextmanager
async def connect(built: Built, elicit: Elicitor | None = None) -> AsyncIterator[Client]:
    try:
        async with Client(built.server, elicitation_callback=elicit) as client:
            yield client
    finally:
        built.runtime.close()


def answer(name: str | None, action: str = "accept") -> Elicitor:
    """An elicitation callback: a human who types `name` (or declines / cancels)."""
    async def callback(ctx: Any, params: Any) -> ElicitResult:
        answer.asked.append(params.message)  # type: ignore[attr-defined]
        if action != "accept":
            return ElicitResult(action=action)  # type: ignore[arg-type]
        return ElicitResult(action="accept", content={"name": name})
    return callback


answer.asked = []  # type: ignore[attr-defined]


def error(result: CallToolResult) -> dict[str, Any]:
    """The JSON error object of an error result."""
    assert result.is_error, result.structured_content
    payload: dict[str, Any] = json.loads(result.content[0].text)  # type: ignore[union-attr]
    return payload["error"]  # type: ignore[no-any-return]


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


def writes(sim: SimCluster, since: int = 0) -> list[dict[str, Any]]:
    """Every non-GET request the simulator's nodes received (after request number `since`)."""
    return [e for e in sim.requests_log(since=since) if e["method"] != "GET"]


def last_seq(sim: SimCluster) -> int:
    return int(sim.summary()["requests"])


def calls(sim: SimCluster, tier: str, *steps: tuple[str, dict[str, Any]]) -> list[CallToolResult]:
    """Call the tools in order on a fresh server of `tier`; their results."""
    import anyio

    built, _ = make(sim, tier)

    async def go() -> list[CallToolResult]:
        async with connect(built) as c:
            return [await c.call_tool(name, args) for name, args in steps]
    return anyio.run(go)
