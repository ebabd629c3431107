"""Registering a tool: its name, title, annotations and tier come from `catalog`, its description from
the function's docstring, its input schema from the signature and its output schema from the return
type."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from .catalog import BY_NAME, ToolSpec
from ..errors import PvectlError
from .output import ToolFailure, enforce_cap, failure


def tool_annotations(spec: ToolSpec) -> ToolAnnotations:
    return ToolAnnotations(title=spec.title, read_only_hint=spec.read_only, destructive_hint=spec.destructive,
                           idempotent_hint=spec.idempotent, open_world_hint=spec.open_world)


def add(srv: MCPServer, enabled: set[str], fn: Callable[..., Any]) -> None:
    """Register `fn` as the tool of the same name, if it is enabled."""
    spec = BY_NAME[fn.__name__]
    if spec.name not in enabled:
        return
    srv.add_tool(_answering_failures(fn), name=spec.name, title=spec.title, description=inspect.getdoc(fn),
                 annotations=tool_annotations(spec), structured_output=True)


def _answering_failures(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, with a `ToolFailure` answered as an error result holding only the JSON error object (the SDK
    would prefix a raised error's text with `Error executing tool NAME:`). Signature and annotations are
    kept (`functools.wraps`), so the schemas and the injected parameters stay those of `fn`."""

    @functools.wraps(fn)
    async def tool(*args: Any, **kwargs: Any) -> Any:
        try:
            result = await fn(*args, **kwargs)
        except ToolFailure as exc:
            return CallToolResult(content=[TextContent(type="text", text=exc.text)], is_error=True)
        except PvectlError as exc:          # raised outside Runtime.call (a bad cursor, an unknown cluster)
            return CallToolResult(content=[TextContent(type="text", text=failure(exc).text)], is_error=True)
        if isinstance(result, BaseModel):
            # the text block is the structured result as compact JSON (the SDK would indent it: ~60% more
            # characters for the same data, on the size cap's budget)
            data = enforce_cap(result.model_dump(mode="json"))
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)
        return result

    return tool
