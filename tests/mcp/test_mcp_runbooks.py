"""Prompts for the seed's runbooks (a hung task, emptying a node) and the task-log resource template."""

from __future__ import annotations

from typing import Any

import anyio
from mcpharness import connect, make

from pvectl.sim.cluster import Cluster as SimCluster


def prompts(sim: SimCluster, tier: str) -> dict[str, Any]:
    built, _ = make(sim, tier)

    async def go() -> dict[str, Any]:
        async with connect(built) as c:
            listed = {p.name for p in (await c.list_prompts()).prompts}
            templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
            hung = await c.get_prompt("hung_task", {"target": "UPID:pve1:x"})
            drain = await c.get_prompt("drain_node", {"node": "pve2"})
            return {"listed": listed, "templates": templates, "hung": hung.messages[0].content.text,
                    "drain": drain.messages[0].content.text}
    return anyio.run(go)


def test_runbook_prompts_follow_the_tier(sim: SimCluster) -> None:
    read = prompts(sim, "read")
    assert read["listed"] == {"hung_task", "drain_node"}
    assert read["templates"] == {"pve://tasks/{upid}/log"}
    assert "task_diagnose" in read["hung"] and "task_log" in read["hung"] and "data" in read["hung"]
    assert "drain_plan node='pve2'" in read["drain"] and "cannot execute a drain" in read["drain"]
    full = prompts(sim, "destructive")
    assert "node_drain without plan_token" in full["drain"] and "vm_stop (two-phase" in full["hung"]
