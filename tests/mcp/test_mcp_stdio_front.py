"""The stdio front: the handshake answered from the SDK's own earlier answers while the SDK loads."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pvectl.mcp.stdio import Cache, Front
from pvectl.sim.cluster import Cluster as SimCluster

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
CALL = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "x", "arguments": {}}}


def lines(*msgs: dict[str, Any]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(m).encode() + b"\n" for m in msgs))


def test_cached_handshake_is_answered_and_the_sdk_duplicate_dropped(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "c.json"))
    cache.put("2025-06-18", "initialize", {"protocolVersion": "2025-06-18", "serverInfo": {"name": "pvectl"}})
    cache.put("2025-06-18", "tools/list", {"tools": [{"name": "vm_list"}]})
    out = io.BytesIO()
    front = Front(Cache(cache.path), lines(INIT, LIST, CALL), out)
    front.read_loop()                                   # the SDK is not ready: answered from the cache
    answered = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [(a["id"], a["result"]) for a in answered] == [
        (1, {"protocolVersion": "2025-06-18", "serverInfo": {"name": "pvectl"}}), (2, {"tools": [{"name": "vm_list"}]})]
    # every message still reaches the SDK, in order
    queued = [front.lines.get_nowait() for _ in range(4)]
    assert [json.loads(q)["id"] for q in queued[:3]] == [1, 2, 3] and queued[3] is None  # type: ignore[arg-type]
    # the SDK's own answers to 1 and 2 are dropped; the answer to 3 goes out
    front.from_sdk(json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"x": 1}}))
    front.from_sdk(json.dumps({"jsonrpc": "2.0", "id": 2, "result": {"x": 2}}))
    front.from_sdk(json.dumps({"jsonrpc": "2.0", "id": 3, "result": {"x": 3}}))
    assert [json.loads(x)["id"] for x in out.getvalue().splitlines()] == [1, 2, 3]


def test_without_a_cache_the_sdk_answers_and_is_remembered(tmp_path: Path) -> None:
    out = io.BytesIO()
    front = Front(Cache(str(tmp_path / "c.json")), lines(INIT, LIST), out)
    front.read_loop()
    assert out.getvalue() == b""                        # nothing answered before the SDK
    front.from_sdk(json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"init": True}}))
    front.from_sdk(json.dumps({"jsonrpc": "2.0", "id": 2, "result": {"tools": []}}))
    assert len(out.getvalue().splitlines()) == 2
    again = Cache(str(tmp_path / "c.json"))
    assert again.get("2025-06-18", "initialize") == {"init": True}
    assert again.get("2025-06-18", "tools/list") == {"tools": []}
    assert again.get("2024-11-05", "initialize") is None       # another protocol version: not answered


def test_second_start_answers_what_the_sdk_answered(sim: SimCluster, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "vm_status",
                                                                          "arguments": {"vm": "100"}}}

    def session() -> list[dict[str, Any]]:
        p = subprocess.Popen([sys.executable, "-m", "pvectl.cli.main", "mcp", "--config", str(sim.config_path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in
                               (INIT, {"jsonrpc": "2.0", "method": "notifications/initialized"}, LIST, call)))
        p.stdin.flush()
        got = [json.loads(p.stdout.readline()) for _ in range(3)]
        p.stdin.close()
        assert p.wait(timeout=30) == 0
        p.stdout.close()
        return got
    first, second = session(), session()
    assert [m["id"] for m in first] == [m["id"] for m in second] == [1, 2, 3]
    assert first[0] == second[0] and first[1] == second[1]
    assert second[2]["result"]["structuredContent"]["vmid"] == 100
    assert list((tmp_path / "cache" / "pvectl").glob("mcp-*.json"))
