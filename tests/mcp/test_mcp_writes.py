"""Write tools (`--allow-writes`): one library call each, guards unchanged, every write audited via mcp."""

from __future__ import annotations

from typing import Any

import anyio
import mcpharness as harness
from mcpharness import connect, error, last_seq, make, ok, writes

from pvectl import audit
from pvectl.sim.cluster import Cluster as SimCluster


def calls(sim: SimCluster, *steps: tuple[str, dict[str, Any]]) -> list[Any]:
    return harness.calls(sim, "write", *steps)


def test_power_and_config(sim: SimCluster) -> None:
    started, again, rebooted, configured, down = calls(
        sim, ("vm_start", {"vm": "cache-01"}), ("vm_start", {"vm": 103}), ("vm_reboot", {"vm": "cache-01"}),
        ("vm_set_config", {"vm": "cache-01", "values": {"description": "set through mcp"}}),
        ("vm_shutdown", {"vm": "cache-01"}))
    assert ok(started)["outcome"] == "done" and ok(again)["outcome"] == "already"
    assert ok(rebooted)["outcome"] == "done" and ok(down)["outcome"] == "done"
    assert not configured.is_error
    vm = sim.backend.state.vms[103]
    assert vm.status == "stopped" and vm.config.get("description") == "set through mcp"
    entries = [e for e in audit.read() if e.get("event") == "write"]
    assert len(entries) == 4 and all(e["via"] == "mcp" for e in entries)


def test_library_guards_refuse_with_their_type(sim: SimCluster) -> None:
    since = last_seq(sim)
    shrink, running = calls(sim, ("vm_resize", {"vm": "cache-01", "disk": "scsi0", "size": "1G"}),
                            ("vm_resize", {"vm": "web-01", "cores": 4}))
    assert error(shrink)["type"] == "GuardRefused" and "shrink" in error(shrink)["message"]
    assert error(running)["type"] == "GuardRefused"
    assert writes(sim, since) == []
