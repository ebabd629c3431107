"""Two-phase destructive actions: a preview and a plan token first; executing needs the token and the
VM's current name (typed by the human through elicitation, else `confirm`), re-checked just before the
write. Every refusal leaves the simulator without a single write."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcpharness import Elicitor, answer, connect, error, last_seq, make, ok, writes
from mcp import Client

from pvectl.cluster import Cluster
from pvectl.sim.cluster import Cluster as SimCluster

Steps = Callable[[Client], Awaitable[Any]]


def run(sim: SimCluster, steps: Steps, *, elicit: Elicitor | None = None, plan_ttl: float | None = None,
        mode: str = "auto") -> Any:
    built, _ = make(sim, "destructive", plan_ttl=plan_ttl)

    async def go() -> Any:
        if mode == "auto":
            async with connect(built, elicit) as c:
                return await steps(c)
        try:
            async with Client(built.server, elicitation_callback=elicit, mode=mode) as c:  # type: ignore[arg-type]
                return await steps(c)
        finally:
            built.runtime.close()
    return anyio.run(go)


def exists(sim: SimCluster, vmid: int) -> bool:
    return vmid in sim.backend.state.vms


def other_client(sim: SimCluster) -> Cluster:
    return Cluster.from_config(str(sim.config_path))


def test_delete_without_confirmation_is_a_preview(sim: SimCluster) -> None:
    since = last_seq(sim)

    async def steps(c: Client) -> list[Any]:
        return [ok(await c.call_tool("vm_delete", {"vm": "cache-01"})),
                ok(await c.call_tool("vm_delete", {"vm": "103", "confirm": "cache-01"})),   # a name alone: preview
                ok(await c.call_tool("vm_delete", {"vm": "103"}))]                           # a bare VMID: preview
    previews = run(sim, steps)
    for p in previews:
        assert p["phase"] == "preview" and p["allowed"] is True and p["plan_token"]
        assert p["target"] == {"vmid": 103, "name": "cache-01", "node": "pve1", "status": "stopped"}
        assert [(w["method"], w["path"]) for w in p["planned"]] == [("DELETE", "/nodes/pve1/qemu/103")]
        assert any(g["verdict"] == "pass" for g in p["guards"])
    assert len({p["plan_token"] for p in previews}) == 3
    assert exists(sim, 103) and writes(sim, since) == []


def test_a_guard_refusal_is_previewed_without_a_token(sim: SimCluster) -> None:
    since = last_seq(sim)

    async def steps(c: Client) -> Any:
        return ok(await c.call_tool("vm_delete", {"vm": "web-01"}))
    p = run(sim, steps)
    assert p["allowed"] is False and p["plan_token"] is None
    assert [g["verdict"] for g in p["guards"]] == ["refused"] and "running" in p["guards"][0]["message"]
    assert writes(sim, since) == []


def preview_then(sim: SimCluster, execute: dict[str, Any], *, before: Callable[[str], None] | None = None,
                 elicit: Elicitor | None = None, plan_ttl: float | None = None) -> tuple[Any, list[Any]]:
    """Preview deleting cache-01, run `before(token)`, then call vm_delete with the token and `execute`."""
    state: dict[str, int] = {}

    async def steps(c: Client) -> Any:
        token = ok(await c.call_tool("vm_delete", {"vm": "cache-01"}))["plan_token"]
        if before:
            before(token)
        state["since"] = last_seq(sim)
        return await c.call_tool("vm_delete", {"vm": "cache-01", "plan_token": token, **execute})
    result = run(sim, steps, elicit=elicit, plan_ttl=plan_ttl)
    return result, writes(sim, state["since"])


def test_wrong_name_is_refused_and_the_token_used_up(sim: SimCluster) -> None:
    result, sent = preview_then(sim, {"confirm": "cache-02"})
    e = error(result)
    assert e["type"] == "GuardRefused" and "'cache-02'" in e["message"] and "'cache-01'" in e["message"]
    assert sent == [] and exists(sim, 103)

    async def steps(c: Client) -> Any:
        token = ok(await c.call_tool("vm_delete", {"vm": "cache-01"}))["plan_token"]
        await c.call_tool("vm_delete", {"vm": "cache-01", "plan_token": token, "confirm": "CACHE-01"})
        return await c.call_tool("vm_delete", {"vm": "cache-01", "plan_token": token, "confirm": "cache-01"})
    assert "already used" in error(run(sim, steps))["message"] and exists(sim, 103)


def test_missing_confirmation_is_refused(sim: SimCluster) -> None:
    result, sent = preview_then(sim, {})
    assert error(result)["type"] == "GuardRefused" and "confirm" in error(result)["message"]
    assert sent == [] and exists(sim, 103)


def test_expired_token_is_refused(sim: SimCluster) -> None:
    result, sent = preview_then(sim, {"confirm": "cache-01"}, before=lambda _: time.sleep(0.4), plan_ttl=0.2)
    assert "expired" in error(result)["message"]
    assert sent == [] and exists(sim, 103)


def test_token_is_for_one_action(sim: SimCluster) -> None:
    async def steps(c: Client) -> Any:
        token = ok(await c.call_tool("vm_delete", {"vm": "cache-01"}))["plan_token"]
        return await c.call_tool("vm_stop", {"vm": "cache-01", "plan_token": token, "confirm": "cache-01"})
    since = last_seq(sim)
    assert error(run(sim, steps))["type"] == "GuardRefused"
    assert writes(sim, since) == []


@pytest.mark.parametrize("change", ["rename", "config"])
def test_a_vm_changed_since_the_preview_is_refused(sim: SimCluster, change: str) -> None:
    def before(_: str) -> None:
        with other_client(sim) as pve:
            values = {"name": "cache-02"} if change == "rename" else {"description": "changed by someone else"}
            pve.transport.request("PUT", "/nodes/pve1/qemu/103/config", values, node="pve1")
    result, sent = preview_then(sim, {"confirm": "cache-01"}, before=before)
    e = error(result)
    assert e["type"] == "GuardRefused" and "changed since the preview" in e["message"]
    assert ("name" in e["message"]) == (change == "rename") and "config digest" in e["message"]
    assert sent == [] and exists(sim, 103)


def test_confirmed_delete_without_elicitation(sim: SimCluster) -> None:
    result, sent = preview_then(sim, {"confirm": "cache-01"})
    r = ok(result)
    assert r["phase"] == "executed" and r["result"]["outcome"] == "done"
    assert not exists(sim, 103)
    assert [(w["method"], w["path"]) for w in sent] == [("DELETE", "/api2/json/nodes/pve1/qemu/103")]


def test_elicitation_accepted(sim: SimCluster) -> None:
    answer.asked.clear()  # type: ignore[attr-defined]
    result, _ = preview_then(sim, {}, elicit=answer("cache-01"))
    assert ok(result)["phase"] == "executed" and not exists(sim, 103)
    assert len(answer.asked) == 1 and "VM 103 (cache-01) on pve1" in answer.asked[0]  # type: ignore[attr-defined]


@pytest.mark.parametrize("action", ["decline", "cancel"])
def test_elicitation_declined_or_cancelled(sim: SimCluster, action: str) -> None:
    # the agent passing confirm does not stand in for the human when the client can ask
    result, sent = preview_then(sim, {"confirm": "cache-01"}, elicit=answer(None, action))
    e = error(result)
    assert e["type"] == "GuardRefused" and f"{action}d" in e["message"]
    assert sent == [] and exists(sim, 103)


def test_elicitation_with_the_wrong_name(sim: SimCluster) -> None:
    result, sent = preview_then(sim, {"confirm": "cache-01"}, elicit=answer("cache-1"))
    assert error(result)["type"] == "GuardRefused" and sent == [] and exists(sim, 103)


def test_elicitation_on_a_handshake_era_connection(sim: SimCluster) -> None:
    # protocol <= 2025-11-25: the question is a server-to-client request in the middle of the call
    asked: list[str] = []

    async def human(ctx: Any, params: Any) -> Any:
        from mcp.types import ElicitResult

        asked.append(params.message)
        return ElicitResult(action="accept", content={"name": "cache-01"})

    async def steps(c: Client) -> Any:
        token = ok(await c.call_tool("vm_delete", {"vm": "cache-01"}))["plan_token"]
        return ok(await c.call_tool("vm_delete", {"vm": "cache-01", "plan_token": token}))
    r = run(sim, steps, elicit=human, mode="legacy")
    assert r["phase"] == "executed" and asked and not exists(sim, 103)


def test_stop_and_migrate_are_two_phase(sim: SimCluster) -> None:
    async def steps(c: Client) -> list[Any]:
        out = []
        for tool, args, name in (("vm_stop", {"vm": "api-01"}, "api-01"),
                                 ("vm_migrate", {"vm": "mq-01", "target": "pve3", "with_local_disks": True}, "mq-01")):
            p = ok(await c.call_tool(tool, args))
            assert p["phase"] == "preview" and p["plan_token"], p
            out.append(p)
            out.append(ok(await c.call_tool(tool, {**args, "plan_token": p["plan_token"], "confirm": name})))
        return out
    stop_preview, stopped, migrate_preview, migrated = run(sim, steps)
    assert [w["path"] for w in stop_preview["planned"]] == ["/nodes/pve3/qemu/105/status/stop"]
    # the migration check's findings are the preview's verdicts, one per rule
    checks = {g["check"]: g["verdict"] for g in migrate_preview["guards"]}
    assert {"target", "quorum", "lock", "memory", "local-disks"} <= set(checks) and set(checks.values()) == {"pass"}
    assert stopped["phase"] == migrated["phase"] == "executed"
    assert sim.backend.state.vms[105].status == "stopped"
    assert sim.backend.state.vms[104].node == "pve3"


def test_a_token_acts_only_on_the_vm_and_arguments_previewed(sim: SimCluster) -> None:
    since = last_seq(sim)

    async def steps(c: Client) -> list[Any]:
        token = ok(await c.call_tool("vm_delete", {"vm": "cache-01"}))["plan_token"]
        other = await c.call_tool("vm_delete", {"vm": "worker-01", "plan_token": token, "confirm": "cache-01"})
        token = ok(await c.call_tool("vm_migrate", {"vm": "mq-01", "target": "pve3"}))["plan_token"]
        moved = await c.call_tool("vm_migrate", {"vm": "mq-01", "target": "pve1", "plan_token": token,
                                                 "confirm": "mq-01"})
        return [other, moved]
    other, moved = run(sim, steps)
    assert "not for 'worker-01'" in error(other)["message"]
    assert "target" in error(moved)["message"]
    assert writes(sim, since) == [] and exists(sim, 103) and exists(sim, 106)


def test_drain_is_two_phase_on_the_node_name(sim: SimCluster) -> None:
    async def steps(c: Client) -> tuple[Any, Any, Any]:
        args = {"node": "pve3", "with_local_disks": True}
        p = ok(await c.call_tool("node_drain", args))
        wrong = await c.call_tool("node_drain", {**args, "plan_token": p["plan_token"], "confirm": "pve2"})
        p2 = ok(await c.call_tool("node_drain", args))
        done = ok(await c.call_tool("node_drain", {**args, "plan_token": p2["plan_token"], "confirm": "pve3"}))
        return p, wrong, done
    since = last_seq(sim)
    p, wrong, done = run(sim, steps)
    assert p["phase"] == "preview" and p["target"]["node"] == "pve3" and p["plan_token"]
    assert sorted(g["check"] for g in p["guards"] if g["verdict"] == "pass") == [
        "VM 102 (app-01)", "VM 105 (api-01)", "VM 108 (monitor-01)", "VM 111 (dns-01)"]
    assert error(wrong)["type"] == "GuardRefused"
    assert done["phase"] == "executed" and done["result"]["ok"] is True, (done["result"]["moves"], done["result"]["remaining"])
    assert not [v for v in sim.backend.state.vms.values() if v.node == "pve3" and v.status == "running"]
    assert writes(sim, since)
