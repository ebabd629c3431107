"""tools/list over the SDK's in-memory client: per tier, annotations on the wire, output schemas, and
the tools the token cannot use left out (and logged) at start-up."""

from __future__ import annotations

from pathlib import Path

import anyio
from mcpharness import connect, make
from test_mcp_catalog import ANNOTATIONS, DESTRUCTIVE, READ, WRITE

from pvectl.mcp.runtime import Runtime
from pvectl.mcp.server import Options, build
from pvectl.sim.cluster import Cluster as SimCluster


def listed(sim: SimCluster, tier: str, **kw: object) -> dict[str, object]:
    built, _ = make(sim, tier, **kw)  # type: ignore[arg-type]

    async def go() -> dict[str, object]:
        async with connect(built) as c:
            return {t.name: t for t in (await c.list_tools()).tools}
    return anyio.run(go)


def test_tiers_on_the_wire(sim: SimCluster) -> None:
    assert set(listed(sim, "read")) == READ
    assert set(listed(sim, "write")) == READ | WRITE
    tools = listed(sim, "destructive")
    assert set(tools) == READ | WRITE | DESTRUCTIVE
    for name, t in tools.items():
        a = t.annotations  # type: ignore[attr-defined]
        assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint) == ANNOTATIONS[name]
        assert t.output_schema and t.output_schema["type"] == "object", name  # type: ignore[attr-defined]
        assert t.description, name  # type: ignore[attr-defined]
        props = t.input_schema["properties"]  # type: ignore[attr-defined]
        assert "cluster" in props, name
        assert "answer" not in props and "ctx" not in props, name     # injected, never the agent's to set


def test_read_only_server_offers_no_write(sim: SimCluster) -> None:
    tools = listed(sim, "read")
    assert all(t.annotations.read_only_hint for t in tools.values())  # type: ignore[attr-defined]


def test_tools_option_limits_the_list(sim: SimCluster) -> None:
    assert set(listed(sim, "write", tools=["vm_list", "vm_start"])) == {"vm_list", "vm_start"}


def test_token_without_privileges_loses_those_tools(sim: SimCluster, tmp_path: Path) -> None:
    from cliharness import token_config  # tests/cli helper: a config with a limited token

    cfg = token_config(sim, tmp_path, "auditor", {"/vms": ["VM.Audit"], "/nodes": ["Sys.Audit"]})
    import io

    log = io.StringIO()
    built = build(Options(tier="destructive", log=log), Runtime(str(cfg)))
    try:
        got = {t.name for t in built.tools}
    finally:
        built.runtime.close()
    assert {"vm_list", "vm_status", "node_status"} <= got
    assert not got & {"vm_delete", "vm_start", "vm_provision", "vm_migrate", "cluster_status"}
    text = log.getvalue()
    assert "tool vm_delete left out: the API token lacks VM.Allocate" in text
    assert "tool vm_start left out: the API token lacks VM.PowerMgmt" in text
