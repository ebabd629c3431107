"""Read tools against the simulator: results, pages, errors as JSON tool errors, nothing written."""

from __future__ import annotations

from typing import Any

import anyio
import mcpharness as harness
from mcpharness import connect, error, last_seq, make, ok, writes

from pvectl.sim.cluster import Cluster as SimCluster


def calls(sim: SimCluster, *steps: tuple[str, dict[str, Any]]) -> list[Any]:
    return harness.calls(sim, "read", *steps)


def test_reads_answer_and_write_nothing(sim: SimCluster) -> None:
    since = last_seq(sim)
    status, nodes, node, vms, vm, templates = calls(
        sim, ("cluster_status", {}), ("node_list", {}), ("node_status", {"node": "pve2"}), ("vm_list", {}),
        ("vm_status", {"vm": "web-01"}), ("template_list", {}))
    assert ok(status)["quorate"] is True and [n["name"] for n in ok(status)["nodes"]] == ["pve1", "pve2", "pve3"]
    assert len(ok(nodes)["nodes"]) == 3 and ok(node)["name"] == "pve2"
    listed = ok(vms)
    assert listed["total"] == 12 and listed["returned"] == 12 and not listed["truncated"]
    assert set(listed["vms"][0]) == {"vmid", "name", "node", "status"}        # concise by default
    assert ok(vm)["name"] == "web-01" and ok(vm)["vmid"] == 100
    assert {t["name"] for t in ok(templates)["templates"]} == {"ubuntu-24.04-cloud", "debian-12-cloud"}
    assert writes(sim, since) == []


def test_vm_list_pages_with_a_cursor(sim: SimCluster) -> None:
    built, _ = make(sim, "read")

    async def go() -> list[int]:
        seen: list[int] = []
        cursor = None
        async with connect(built) as c:
            for _ in range(10):
                page = ok(await c.call_tool("vm_list", {"limit": 5, "cursor": cursor, "fields": ["name", "tags"]}))
                assert set(page["vms"][0]) == {"vmid", "name", "tags"}
                seen += [v["vmid"] for v in page["vms"]]
                cursor = page["next_cursor"]
                if not page["truncated"]:
                    assert cursor is None
                    break
        return seen
    seen = anyio.run(go)
    assert len(seen) == 12 and seen == sorted(set(seen))


def test_errors_are_typed_json(sim: SimCluster) -> None:
    missing, bad_cursor = calls(sim, ("vm_status", {"vm": "no-such-vm"}), ("vm_list", {"cursor": "zzz"}))
    e = error(missing)
    assert e["type"] == "NotFound" and "no-such-vm" in e["message"] and e["hint"]
    assert error(bad_cursor)["type"] == "UsageError"


def test_task_tools_and_log_resource(sim: SimCluster) -> None:
    from pvectl.cluster import Cluster

    # another client starts a task: a stopped VM's start (POST .../status/start answers a UPID)
    with Cluster.from_config(str(sim.config_path)) as pve:
        vm = pve.vms.list(status="stopped", templates=False)[0]
        upid = pve.transport.request("POST", f"/nodes/{vm.node}/qemu/{vm.vmid}/status/start", {}, node=vm.node)
    built, _ = make(sim, "read")

    async def go() -> tuple[Any, Any, Any, Any]:
        async with connect(built) as c:
            st = await c.call_tool("task_status", {"upid": upid})
            waited = await c.call_tool("task_wait", {"upid": upid, "timeout": 30})
            log = await c.call_tool("task_log", {"upid": upid})
            res = await c.read_resource(f"pve://tasks/{upid}/log")
            return st, waited, log, res
    st, waited, log, res = anyio.run(go)
    assert ok(st)["upid"] == upid
    assert ok(waited)["exitstatus"] == "OK"
    assert ok(log)["lines"] and ok(log)["total"] >= len(ok(log)["lines"])
    assert "TASK OK" in res.contents[0].text  # type: ignore[union-attr]
