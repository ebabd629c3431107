"""No result over the size cap on a 5,000-VM cluster: lists are cut, marked, and go on by cursor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcpharness import connect, make, ok

from pvectl.mcp.output import MAX_CHARS, fit
from pvectl.sim.cluster import Cluster as SimCluster


@pytest.fixture(scope="module")
def big() -> Iterator[SimCluster]:
    with SimCluster(nodes=3, vms=5000, templates=2, bind="127.0.0.1", port=0, time_scale=0.005) as s:
        yield s


def wire_size(result: Any) -> int:
    return max(len(json.dumps(result.structured_content, separators=(",", ":"))), len(result.content[0].text))


def test_every_read_fits_the_cap(big: SimCluster) -> None:
    built, _ = make(big, "read")
    all_fields = ["vmid", "name", "node", "status", "template", "maxcpu", "maxmem", "mem", "cpu", "uptime",
                  "maxdisk", "tags", "lock"]

    async def go() -> list[Any]:
        async with connect(built) as c:
            out = [await c.call_tool("vm_list", {"limit": 500, "fields": all_fields}),
                   await c.call_tool("vm_list", {"limit": 500}),
                   await c.call_tool("vm_list", {}),
                   await c.call_tool("template_list", {"limit": 500}),
                   await c.call_tool("node_list", {}), await c.call_tool("cluster_status", {})]
            # a page deep in the list, from a cursor: the end is reached and marked as such
            tail = await c.call_tool("vm_list", {"limit": 500, "fields": all_fields, "cursor": "after:5060"})
            out.append(tail)
            return out
    results = anyio.run(go)
    for r in results:
        assert wire_size(r) <= MAX_CHARS, wire_size(r)
    rich = ok(results[0])
    assert rich["total"] == 5000 and rich["truncated"] and 0 < rich["returned"] < 500
    assert rich["next_cursor"] == f"after:{rich['vms'][-1]['vmid']}"
    concise = ok(results[2])
    assert concise["returned"] == 50 and concise["truncated"]
    assert ok(results[1])["truncated"] and ok(results[1])["returned"] < 500      # concise rows, still capped
    end = ok(results[-1])
    assert not end["truncated"] and end["next_cursor"] is None and end["vms"][0]["vmid"] == 5061 and end["vms"][-1]["vmid"] == 5099


def test_fit_keeps_the_longest_prefix_that_fits() -> None:
    items = [{"n": i, "pad": "x" * 100} for i in range(1000)]

    def build(kept: list[Any], cut: bool) -> dict[str, Any]:
        return {"items": kept, "truncated": cut}
    out = fit(items, build, 5_000)
    n = len(out["items"])
    assert out["truncated"] and n > 0
    assert len(json.dumps(build(items[:n], True), separators=(",", ":"))) <= 5_000
    assert len(json.dumps(build(items[:n + 1], True), separators=(",", ":"))) > 5_000
    assert fit(items[:3], build, 5_000) == {"items": items[:3], "truncated": False}


def test_results_that_are_not_pages_are_cut_too() -> None:
    from pvectl.mcp.output import enforce_cap

    plan = {"phase": "preview", "target": {"node": "pve1"},
            "guards": [{"check": f"VM {i}", "verdict": "pass", "message": "x" * 80} for i in range(2000)],
            "planned": [{"method": "POST", "curl": "curl " + "y" * 200} for _ in range(2000)],
            "result": {"moves": [{"vmid": i} for i in range(3000)]}}
    out = enforce_cap(plan, 20_000)
    assert len(json.dumps(out, separators=(",", ":"))) <= 20_000
    assert out["truncated"] is True and out["phase"] == "preview"
    assert set(out["truncated_lists"]) <= {"guards", "planned", "result.moves"}
    assert out["truncated_lists"]["planned"].endswith("of 2000 kept")
    assert len(plan["planned"]) == 2000                       # the caller's data is not changed
    small = {"a": [1, 2, 3]}
    assert enforce_cap(small, 20_000) is small
