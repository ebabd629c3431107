"""`pve.vms.migration_check`, `pve.vms.migrate`, `pve.nodes.drain_plan` and `pve.nodes.drain`,
written only against the public surface (`import pvectl`, `pvectl.sim`), against the simulator.

What the cluster holds afterwards is read back through the library itself (or the simulator's
request log, for "nothing was sent")."""

from __future__ import annotations

from typing import Any

import pytest

import pvectl
import pvectl.sim
from simclient import TEMPLATE, events, pve, writes  # noqa: F401 - fixtures

# ---------------------------------------------------------------------------------------- migration
def test_migration_check_refusals_send_nothing(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    c = pve.vms.migration_check("web-01", "pve2")       # running, disks on local-lvm
    assert (c.allowed, c.verdict, c.mode, c.node, c.target) == (False, "refused", "live", "pve1", "pve2")
    assert [f.check for f in c.refusals] == ["local-disks"]
    assert pve.vms.migration_check("web-01", "pve2", with_local_disks=True).allowed
    off = pve.vms.migration_check("web-01", "pve2", online=False, with_local_disks=True)
    assert [f.check for f in off.refusals] == ["mode"]
    unknown = pve.vms.migration_check(100, "pve9")
    assert "target" in [f.check for f in unknown.refusals]
    sim.stop_node("pve3")
    down = pve.vms.migration_check(103, "pve3")
    assert not down.allowed and down.refusals[0].check == "target"
    with pytest.raises(pvectl.GuardRefused) as e:
        pve.vms.migrate("web-01", "pve2")
    assert e.value.exit_code == 3 and "local disks" in e.value.message
    assert writes(sim) == []


def test_migrate_live_with_local_disks_reports_progress(sim: pvectl.sim.Cluster, pve: pvectl.Cluster,
                                                        events: list[dict[str, Any]]) -> None:
    r = pve.vms.migrate("web-01", "pve2", online=True, with_local_disks=True, bwlimit="8G")
    assert isinstance(r, pvectl.MigrationResult)
    assert (r.outcome, r.mode, r.source, r.node, r.status, r.exitstatus) == \
        ("done", "live", "pve1", "pve2", "running", "OK")
    assert r.duration is not None and r.downtime_ms is not None
    assert pve.vms.resolve("web-01").node == "pve2" and pve.vms.status("web-01").status == "running"
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(e["upid"] == r.upid for e in progress)
    assert {e["phase"] for e in progress} == {"copy", "migrate"}       # the disks mirrored, then the memory
    assert [w for w in writes(sim) if w[1].endswith("/migrate")] == [("POST", "/api2/json/nodes/pve1/qemu/100/migrate")]


def test_migrate_auto_target_and_without_waiting(sim: pvectl.sim.Cluster, pve: pvectl.Cluster,
                                                 events: list[dict[str, Any]]) -> None:
    sim.set_node("pve3", mem_total=512 * 1024**3)       # the most free memory after the move
    c = pve.vms.migration_check(103, "auto")
    assert c.target == "pve3" and c.allowed
    task = pve.vms.migrate(103, "auto", wait=False)
    assert isinstance(task, pvectl.Task) and task.upid is not None
    assert task.preview is not None and task.preview.outcome == "started" and task.preview.target == "pve3"
    assert [e["target"] for e in events if e["event"] == "target"] == ["pve3"]
    r = task.wait()
    assert (r.outcome, r.node, r.status, r.exitstatus) == ("done", "pve3", "stopped", "OK")
    assert pve.vms.resolve(103).node == "pve3"


def test_migrate_dry_run_plans_and_sends_nothing(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    r = pve.with_options(dry_run=True).vms.migrate(103, "pve2", bwlimit=51200)
    assert (r.outcome, r.upid) == ("planned", None)
    [p] = r.to_dict()["planned"]
    assert (p["method"], p["path"], p["params"]) == ("POST", "/nodes/pve1/qemu/103/migrate",
                                                     {"target": "pve2", "online": 0, "bwlimit": 51200})
    assert writes(sim) == [] and pve.vms.resolve(103).node == "pve1"


# -------------------------------------------------------------------------------------------- drain
def test_drain_plan_then_drain_and_undo(sim: pvectl.sim.Cluster, pve: pvectl.Cluster,
                                        events: list[dict[str, Any]], tmp_path: Any) -> None:
    p = pve.nodes.drain_plan("pve3", with_local_disks=True)
    running = sorted(v.vmid for v in pve.vms.list(node="pve3", status="running"))
    assert sorted(m.vmid for m in p.moves) == running and not p.unmovable
    assert {m.target for m in p.moves} <= {"pve1", "pve2"}
    with pytest.raises(pvectl.GuardRefused, match="draining pve3 migrates 4 VM") as e:
        pve.nodes.drain("pve3", with_local_disks=True)
    assert e.value.exit_code == 3 and e.value.hint == "add --yes to run this plan"
    assert writes(sim) == []
    path = str(tmp_path / "drain.json")
    res = pve.nodes.drain("pve3", yes=True, with_local_disks=True, plan_file=path, parallel=2)
    assert res.ok and res.remaining == [] and res.plan_file == path
    assert {m.outcome for m in res.plan.moves} == {"moved"}
    assert pve.vms.list(node="pve3", status="running") == []
    kinds = [e["kind"] for e in events if e["event"] == "drain"]
    assert kinds.count("plan") == 2 and kinds.count("done") == len(running)
    back = pve.nodes.drain(undo=path, yes=True)
    assert back.ok and back.plan.kind == "undo"
    assert sorted(v.vmid for v in pve.vms.list(node="pve3", status="running")) == running


def test_drain_dry_run_returns_the_planned_migrations(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    res = pve.with_options(dry_run=True).nodes.drain("pve3", yes=True, with_local_disks=True)
    assert res.ok and {m.outcome for m in res.plan.moves} == {"planned"}
    planned = res.to_dict()["planned"]
    assert sorted(p["path"] for p in planned) == sorted(f"/nodes/pve3/qemu/{m.vmid}/migrate" for m in res.plan.moves)
    assert writes(sim) == []


def test_drain_usage_errors(pve: pvectl.Cluster) -> None:
    with pytest.raises(pvectl.UsageError, match="--undo PLANFILE"):
        pve.nodes.drain_plan()
    with pytest.raises(pvectl.UsageError, match="no such cluster node"):
        pve.nodes.drain_plan("pve9")
    with pytest.raises(pvectl.UsageError, match="--parallel must be at least 1"):
        pve.nodes.drain("pve3", yes=True, parallel=0)


def test_ctrl_c_while_migrating_names_the_task_that_runs_on(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    def interrupt(p: pvectl.Progress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(pvectl.MigrationInterrupted) as e:
        pve.vms.migrate("web-01", "pve2", with_local_disks=True, on_progress=interrupt)
    assert isinstance(e.value, KeyboardInterrupt) and e.value.vmid == 100
    [upid] = e.value.upids
    assert upid.split(":")[5:7] == ["qmigrate", "100"]
    assert pve.tasks.get(upid).wait(60).exitstatus == "OK"       # Proxmox ran it on
    assert pve.vms.resolve("web-01").node == "pve2"
