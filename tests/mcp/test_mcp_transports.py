"""`pvectl mcp` as a process: over stdio, and over streamable HTTP on loopback behind a bearer token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcpharness import ok

from pvectl.errors import UsageError
from pvectl.mcp.http import parse_listen
from pvectl.sim.cluster import Cluster as SimCluster


def env() -> dict[str, str]:
    return {**os.environ, "PVECTL_AUDIT_LOG": os.environ["PVECTL_AUDIT_LOG"]}


def test_stdio(sim: SimCluster) -> None:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable, env=env(),
                                   args=["-m", "pvectl.cli.main", "mcp", "--config", str(sim.config_path),
                                         "--allow-writes"])

    async def go() -> tuple[set[str], dict[str, object]]:
        async with Client(params) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            return names, ok(await c.call_tool("vm_status", {"vm": "web-01"}))
    names, status = anyio.run(go)
    assert "vm_start" in names and "vm_delete" not in names
    assert status["vmid"] == 100


def test_http_needs_the_bearer_token(sim: SimCluster, tmp_path: Path) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    token_file = tmp_path / "mcp-token"
    token_file.write_text("s3cret-token-for-test\n")
    token_file.chmod(0o600)
    proc = subprocess.Popen([sys.executable, "-m", "pvectl.cli.main", "mcp", "--config", str(sim.config_path),
                             "--http", "127.0.0.1:0", "--token-file", str(token_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready[0] == "ready" and ready[1].startswith("http://127.0.0.1:"), ready
        url = ready[1]
        assert "s3cret" not in " ".join(ready)

        async def go() -> tuple[int, int, dict[str, object]]:
            async with httpx2.AsyncClient() as plain:
                none = (await plain.post(url, json={})).status_code
                wrong = (await plain.post(url, json={}, headers={"Authorization": "Bearer nope"})).status_code
            async with httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret-token-for-test"}) as authed:
                async with Client(streamable_http_client(url, http_client=authed)) as c:
                    return none, wrong, ok(await c.call_tool("cluster_status", {}))
        none, wrong, status = anyio.run(go)
        assert none == 401 and wrong == 401
        assert status["quorate"] is True
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@pytest.mark.parametrize("listen", ["0.0.0.0:8765", "192.168.1.5:80", "localhost:8765", "::1:8765", "127.0.0.1"])
def test_http_binds_only_loopback(listen: str) -> None:
    with pytest.raises(UsageError):
        parse_listen(listen)
    assert parse_listen("127.0.0.1:8765") == ("127.0.0.1", 8765)
