"""An agent's session, scripted with the SDK client: find a template, provision two VMs, resize one,
migrate one, shut both down and delete both. Every destructive call without confirmation only
previews; the human types the names; nothing acts on the wrong VM; the audit log has every write,
`via: mcp`."""

from __future__ import annotations

from typing import Any

import anyio
from mcpharness import connect, make, ok
from mcp import Client
from mcp.types import ElicitResult

from pvectl import audit
from pvectl.sim.cluster import Cluster as SimCluster


def test_agent_scenario(sim: SimCluster) -> None:
    built, _ = make(sim, "destructive")
    questions: list[str] = []
    executed: list[tuple[str, dict[str, Any]]] = []
    previews: list[tuple[str, dict[str, Any]]] = []

    async def human(ctx: Any, params: Any) -> ElicitResult:
        # the user types the name shown in the question, and nothing else
        questions.append(params.message)
        return ElicitResult(action="accept", content={"name": params.message.split("Type the name '")[1].split("'")[0]})

    async def destructive(c: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        first = ok(await c.call_tool(tool, args))
        assert first["phase"] == "preview", first                 # never executes without confirmation
        previews.append((tool, first))
        again = ok(await c.call_tool(tool, {**args, "plan_token": first["plan_token"]}))
        assert again["phase"] == "executed"
        executed.append((tool, again))
        return again

    async def agent(c: Client) -> None:
        templates = ok(await c.call_tool("template_list", {}))["templates"]
        ubuntu = next(t for t in templates if t["name"].startswith("ubuntu"))
        for name in ("agent-a", "agent-b"):
            made = ok(await c.call_tool("vm_provision", {"template": ubuntu["vmid"], "name": name, "cores": 1,
                                                         "memory": "1G", "start": True}))
            assert made["name"] == name, made
        ok(await c.call_tool("vm_resize", {"vm": "agent-a", "disk": "scsi0", "size": "+1G"}))
        b = ok(await c.call_tool("vm_status", {"vm": "agent-b"}))
        target = next(n for n in ("pve1", "pve2", "pve3") if n != b["node"])
        await destructive(c, "vm_migrate", {"vm": "agent-b", "target": target, "with_local_disks": True})
        for name in ("agent-a", "agent-b"):
            down = ok(await c.call_tool("vm_shutdown", {"vm": name, "guest_timeout": 30}))
            assert down["outcome"] in ("done", "already"), down
        for name in ("agent-a", "agent-b"):
            await destructive(c, "vm_delete", {"vm": name})

    async def go() -> None:
        async with connect(built, human) as c:
            await agent(c)
    anyio.run(go)

    names = {v.config.get("name") for v in sim.backend.state.vms.values()}
    assert "agent-a" not in names and "agent-b" not in names
    # the human was asked once per destructive action, about the VM the agent named
    assert [t for t, _ in executed] == ["vm_migrate", "vm_delete", "vm_delete"]
    assert [e["target"]["name"] for _, e in executed] == ["agent-b", "agent-a", "agent-b"]
    assert len(questions) == 3 and all(f"({e['target']['name']})" in q for q, (_, e) in zip(questions, executed))
    # the audit log: every write made through the server, marked via mcp
    entries = [e for e in audit.read() if e.get("event") == "write"]
    assert entries and all(e.get("via") == "mcp" for e in entries), entries
    methods = [(e["method"], e["path"].rsplit("/", 1)[-1]) for e in entries]
    assert ("POST", "clone") in methods and ("PUT", "resize") in methods and ("POST", "migrate") in methods
    assert sum(1 for m, _ in methods if m == "DELETE") == 2
