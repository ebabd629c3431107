"""task diagnose without ssh (`--no-ssh`: what the API alone knows) and task stop, against the simulator."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import pytest

from pvectl.cluster import Cluster
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.sim.host import host_view
from pvectl.writes import Writer


def running_vm(sim: SimCluster) -> int:
    with sim.backend.mu:
        return min(v.vmid for v in sim.backend.state.vms.values() if v.status == "running"
                   and not v.config.get("protection"))


def test_no_ssh_reports_a_lock_without_a_task_as_probably_stale(sim: SimCluster, pvc: Cluster) -> None:
    vmid = running_vm(sim)
    host_view(sim.backend).set_lock(vmid, "backup")
    d = pvc.tasks.diagnose(vmid, use_ssh=False)
    assert d.verdict == "stale-lock" and "not confirmed over ssh" in d.summary and d.ssh is None
    from pvectl.errors import GuardRefused

    with pytest.raises(GuardRefused):            # never unlocked on the API's word alone
        pvc.tasks.diagnose(vmid, use_ssh=False, unlock=True, yes=True)
    assert sim.backend.state.vms[vmid].config["lock"] == "backup"


def test_no_ssh_backup_lock_and_a_finished_task(sim: SimCluster, pvc: Cluster) -> None:
    vmid = running_vm(sim)
    upid = sim.hold_lock(vmid, kind="backup")
    try:
        d = pvc.tasks.diagnose(str(vmid), use_ssh=False)
        assert d.verdict == "backup-lock" and upid in d.summary
    finally:
        sim.release_lock(vmid)
    d = pvc.tasks.diagnose(upid, use_ssh=False)
    assert d.verdict == "task-ended" and "OK" in d.summary


def test_no_ssh_snapshot_delete_lock(sim: SimCluster, pvc: Cluster) -> None:
    vmid = running_vm(sim)
    host_view(sim.backend).set_lock(vmid, "snapshot-delete")
    d = pvc.tasks.diagnose(vmid, use_ssh=False)
    assert d.verdict == "snapshot-delete" and "no task runs it" in d.summary
    assert any(c.startswith(f"qm delsnapshot {vmid}") for c in d.next_commands)


def test_task_stop_needs_yes_then_stops(sim: SimCluster, pvc: Cluster, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pvectl.cli.main import main

    vmid = running_vm(sim)
    upid = sim.hold_lock(vmid, kind="backup")
    argv = ["--config", str(sim.config_path)]
    monkeypatch.setattr(sys, "argv", ["pvectl"])
    assert main([*argv, "-o", "table", "task", "stop", upid]) == 3
    assert "--yes" in capsys.readouterr().err
    assert pvc.tasks.get(upid).status().running
    assert main([*argv, "-o", "json", "task", "stop", upid, "--yes"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert out["outcome"] == "stopped" and out["exitstatus"] == "received interrupt"
    assert not pvc.tasks.get(upid).status().running
    assert "lock" not in sim.backend.state.vms[vmid].config
    assert main([*argv, "-o", "json", "task", "stop", upid, "--yes"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "already stopped"


def test_task_stop_dry_run_sends_nothing(sim: SimCluster, pvc: Cluster) -> None:
    from pvectl.diagnose import stop_task

    vmid = running_vm(sim)
    upid = sim.hold_lock(vmid, kind="backup")
    try:
        out = io.StringIO()
        r = stop_task(pvc, upid, writer=Writer(pvc.config, pvc.transport, command="t", dry_run=True, out=out), yes=True)
        assert r["outcome"] == "planned" and "-X DELETE" in out.getvalue()
        assert pvc.tasks.get(upid).status().running
    finally:
        sim.release_lock(vmid)
