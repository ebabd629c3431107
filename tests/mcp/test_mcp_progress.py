"""Long tasks: MCP progress from the task log, and the UPID with a resume hint at the deadline."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
from mcpharness import connect, make, ok

from pvectl.cluster import Cluster
from pvectl.sim.cluster import Cluster as SimCluster


def start_migration(sim: SimCluster) -> str:
    """Another client live-migrates a running VM (its task log prints `migration status` lines)."""
    with Cluster.from_config(str(sim.config_path)) as pve:
        vm = next(v for v in pve.vms.list(status="running", templates=False) if v.node == "pve1")
        upid: str = pve.transport.request("POST", f"/nodes/pve1/qemu/{vm.vmid}/migrate",
                                          {"target": "pve2", "online": 1, "with-local-disks": 1}, node="pve1")
    return upid


def test_task_wait_reports_progress(sim: SimCluster) -> None:
    upid = start_migration(sim)
    built, _ = make(sim, "read")
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    async def go() -> Any:
        async with connect(built) as c:
            return await c.call_tool("task_wait", {"upid": upid, "timeout": 120}, progress_callback=on_progress)
    result = ok(anyio.run(go))
    assert result["exitstatus"] == "OK"
    assert seen, "no progress notification"
    # MCP: progress increases with every notification, even across the task's phases (disk, then RAM)
    dones = [d for d, _, _ in seen]
    assert all(a < b for a, b in zip(dones, dones[1:])), dones
    assert any(m and "transferred" in m for _, _, m in seen)


def test_task_still_running_at_the_deadline_returns_upid_and_resume() -> None:
    with SimCluster(nodes=3, vms=12, templates=2, bind="127.0.0.1", port=0, time_scale=0.5) as slow:
        run_past_deadline(slow)


def run_past_deadline(sim: SimCluster) -> None:
    upid = start_migration(sim)       # minutes of copying at time scale 0.5
    built, _ = make(sim, "read")

    async def go() -> Any:
        async with connect(built) as c:
            with anyio.fail_after(20):
                return await c.call_tool("task_wait", {"upid": upid, "timeout": 0.5})
    result = ok(anyio.run(go))
    assert result["outcome"] == "running" and result["upid"] == upid
    assert f"task_wait with upid={upid}" in result["resume"]


def test_library_events_become_monotonic_progress() -> None:
    from pvectl.mcp.runtime import event_sender

    sent: list[tuple[float, float | None, str | None]] = []

    class Ctx:
        async def report_progress(self, done: float, total: float | None, message: str | None) -> None:
            sent.append((done, total, message))

    async def go() -> None:
        on_event = event_sender(Ctx())  # type: ignore[arg-type]
        assert on_event is not None
        events = [{"event": "provision", "name": "web-1", "step": "clone", "fraction": 0.5},
                  {"event": "provision", "name": "web-1", "step": "clone", "fraction": 1.0},
                  {"event": "provision", "name": "web-2", "step": "clone", "fraction": 0.2},   # a new phase
                  {"event": "provision", "name": "web-2", "step": "start", "state": "done"}]    # no fraction
        await anyio.to_thread.run_sync(lambda: [on_event(e) for e in events])
    anyio.run(go)
    assert [d for d, _, _ in sent] == [50.0, 100.0, 120.0, 121.0]
    assert [t for _, t, _ in sent] == [100.0, 100.0, None, None]
    assert sent[0][2] == "event=provision name=web-1 step=clone" and "state=done" in (sent[3][2] or "")
    assert event_sender(None) is None
