"""`pve.tasks`: diagnose, stop, follow and get, written only against the public surface
(`import pvectl`, `pvectl.sim`), against the simulator.

What the cluster holds afterwards is read back through the library itself (or the simulator's
request log, for "nothing was sent")."""

from __future__ import annotations

import threading

import pytest

import pvectl
import pvectl.sim
from simclient import TEMPLATE, events, pve, writes  # noqa: F401 - fixtures

# -------------------------------------------------------------------------------------------- tasks
def test_diagnose_and_stop_a_task(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    upid = sim.hold_lock(100, kind="backup")
    d = pve.tasks.diagnose("web-01", use_ssh=False)
    assert d.verdict == "backup-lock" and d.upid == upid and d.vmid == 100
    assert [t.upid for t in pve.tasks.list(running=True, vm="web-01")] == [upid]
    with pytest.raises(pvectl.GuardRefused) as e:
        pve.tasks.stop(upid)
    assert e.value.exit_code == 3 and pve.tasks.get(upid).status().running
    dry = pve.with_options(dry_run=True).tasks.stop(upid, yes=True)
    assert dry.outcome == "planned" and dry.to_dict()["planned"][0]["method"] == "DELETE"
    assert pve.tasks.get(upid).status().running
    r = pve.tasks.stop(upid, yes=True)
    assert (r.outcome, r.exitstatus, r.node) == ("stopped", "received interrupt", "pve1")
    assert not pve.tasks.get(upid).status().running
    assert pve.tasks.stop(upid, yes=True).outcome == "already stopped"
    assert pve.tasks.diagnose(upid, use_ssh=False).verdict == "task-ended"


def test_follow_a_task_log_and_bad_upids(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    upid = sim.hold_lock(103, kind="backup")
    lines: list[str] = []
    threading.Timer(0.3, sim.release_lock, (103,)).start()       # the task ends while it is followed
    assert pve.tasks.follow(upid, lines.append) == "OK"
    assert lines and lines[-1] == "TASK OK"
    with pytest.raises(pvectl.UsageError) as e:
        pve.tasks.get("not-a-upid")
    assert e.value.exit_code == 2 and e.value.hint and "UPID:" in e.value.hint
    with pytest.raises(pvectl.UsageError, match="no node 'pve9'"):
        pve.tasks.get(upid.replace(":pve1:", ":pve9:"))
