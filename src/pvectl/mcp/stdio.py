"""Serving over stdio, answering the handshake before the SDK has loaded.

Importing the MCP SDK (its protocol types for every spec version, pydantic) takes most of a second,
longer than the start-up budget (`pvectl mcp` ready to answer tools/list in under 600 ms). So the
first messages are answered here, from what the SDK itself answered the last time the same server
(pvectl and SDK version, tools) was started for a client of the same protocol version, while a worker
thread imports the SDK and builds the server:

- `initialize` and `tools/list` are answered from that cache, then also passed on to the SDK (its
  session must see the handshake; its answers to those two are dropped);
- every other message waits for the SDK, in order.

Without a cache entry (first start, another protocol version, a `server/discover` probe) nothing is
answered here: the SDK answers everything, and its answers to `initialize` and `tools/list` are
stored for next time. The wire is a private copy of fd 1; fd 1 itself points at stderr while serving,
so stray prints never corrupt it.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import threading
from typing import Any

CACHE_VERSION = 1


def cache_path(key_parts: list[str]) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256("\0".join([str(CACHE_VERSION), *key_parts]).encode()).hexdigest()[:24]
    return os.path.join(base, "pvectl", f"mcp-{key}.json")


def sdk_stamp() -> str:
    """Which SDK is installed, without importing it: the package directory and its mtime."""
    import importlib.util

    spec = importlib.util.find_spec("mcp")
    origin = spec.origin if spec and spec.origin else "?"
    try:
        return f"{origin}:{os.stat(origin).st_mtime_ns}"
    except OSError:
        return origin


def source_stamp() -> str:
    """The server's own modules (their schemas and texts), by size and mtime."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = []
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            st = os.stat(os.path.join(here, name))
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


class Cache:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, encoding="utf-8") as f:
                self.data: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            self.data = {}

    def get(self, version: str, what: str) -> Any:
        return self.data.get(version, {}).get(what)

    def put(self, version: str, what: str, result: Any) -> None:
        self.data.setdefault(version, {})[what] = result
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.data, f)
            os.replace(tmp, self.path)
        except OSError:
            pass                     # a cache that cannot be written only costs time


class Front:
    """Reads the wire, answers what it can from the cache, hands every line to the SDK in order."""

    def __init__(self, cache: Cache, wire_in: Any, wire_out: Any) -> None:
        self.cache = cache
        self.wire_in = wire_in
        self.wire_out = wire_out
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.write_lock = threading.Lock()
        self.drop: set[Any] = set()              # ids already answered here: the SDK's answers are dropped
        self.watch: dict[Any, str] = {}          # id -> what the SDK's answer is cached as
        self.version: str | None = None
        self.sdk_ready = threading.Event()

    def write(self, line: bytes) -> None:
        with self.write_lock:
            self.wire_out.write(line.rstrip(b"\n") + b"\n")
            self.wire_out.flush()

    def read_loop(self) -> None:
        for raw in iter(self.wire_in.readline, b""):
            if raw.strip():
                self._inspect(raw)
                self.lines.put(raw)
        self.lines.put(None)

    def _inspect(self, raw: bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if not isinstance(msg, dict) or "id" not in msg:
            return
        method = msg.get("method")
        if method == "initialize":
            self.version = str((msg.get("params") or {}).get("protocolVersion"))
            self._answer(msg, "initialize")
        elif method == "tools/list" and not (msg.get("params") or {}).get("cursor") and self.version:
            self._answer(msg, "tools/list")

    def _answer(self, msg: dict[str, Any], what: str) -> None:
        result = None if self.sdk_ready.is_set() else self.cache.get(self.version or "", what)
        if result is None:
            self.watch[msg["id"]] = what
            return
        self.drop.add(msg["id"])
        self.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result},
                              separators=(",", ":")).encode())

    def from_sdk(self, line: str) -> None:
        """An answer or notification from the SDK: dropped if answered already, stored if watched."""
        if self.drop or self.watch:
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {}
            msg_id = msg.get("id") if isinstance(msg, dict) else None
            if msg_id is not None and "method" not in msg:
                if msg_id in self.drop:
                    self.drop.discard(msg_id)
                    return
                what = self.watch.pop(msg_id, None)
                if what and "result" in msg and self.version:
                    self.cache.put(self.version, what, msg["result"])
        self.write(line.encode())


def serve(build_server: Any, cache_key: list[str]) -> None:
    """Serve stdio until EOF. `build_server()` (run in a worker thread) imports the SDK and returns the
    MCPServer."""
    wire_out = os.fdopen(os.dup(1), "wb")
    wire_in = os.fdopen(os.dup(0), "rb")
    os.dup2(2, 1)                     # stray output goes to stderr, never onto the wire
    sys.stdout = sys.stderr
    front = Front(Cache(cache_path(cache_key)), wire_in, wire_out)
    built: dict[str, Any] = {}

    def load() -> None:
        try:
            built["server"] = build_server()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            built["error"] = exc
        finally:
            front.sdk_ready.set()

    loader = threading.Thread(target=load, name="pvectl-mcp-load", daemon=True)
    loader.start()
    reader = threading.Thread(target=front.read_loop, name="pvectl-mcp-stdin", daemon=True)
    reader.start()
    front.sdk_ready.wait()
    if "error" in built:
        raise built["error"]
    _run_sdk(built["server"], front)


def _run_sdk(server: Any, front: Front) -> None:
    import anyio
    import anyio.to_thread
    import mcp_types as types
    from mcp.shared._context_streams import create_context_streams
    from mcp.shared.message import SessionMessage

    low = server._lowlevel_server

    async def main() -> None:
        read_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
        write_stream, write_reader = create_context_streams[SessionMessage](0)

        async def pump_in() -> None:
            async with read_writer:
                while True:
                    raw = await anyio.to_thread.run_sync(front.lines.get)
                    if raw is None:
                        return
                    try:
                        message = types.jsonrpc_message_adapter.validate_json(raw, by_name=False)
                    except Exception as exc:  # noqa: BLE001 - the SDK answers a malformed message
                        await read_writer.send(exc)
                        continue
                    await read_writer.send(SessionMessage(message))

        async def pump_out() -> None:
            async with write_reader:
                async for sm in write_reader:
                    front.from_sdk(sm.message.model_dump_json(by_alias=True, exclude_unset=True))

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump_in)
            tg.start_soon(pump_out)
            await low.run(read_stream, write_stream, low.create_initialization_options())
            tg.cancel_scope.cancel()

    anyio.run(main)
