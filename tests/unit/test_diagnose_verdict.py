"""The verdict of `task diagnose` from evidence (no I/O): each case and its next commands."""

from __future__ import annotations

from typing import Any

from pvectl.diagnose import _verdict

UPID = "UPID:pve1:00001234:0000ABCD:66F1E2D3:qmigrate:100:root@pam:"
VZDUMP = "UPID:pve1:00002222:0000ABCD:66F1E2D3:vzdump:100:root@pam:"


def api(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"node": "pve1", "vmid": 100, "task": None, "log_tail": [], "running_tasks": [],
                            "lock": None, "snapshots": None}
    return base | kw


def task(elapsed: int = 30, usual: float | None = 20.0, status: str = "running") -> dict[str, Any]:
    return {"upid": UPID, "type": "qmigrate", "status": status, "exitstatus": None if status == "running" else "OK",
            "pid": 0x1234, "elapsed": elapsed, "usual_seconds": usual}


def ssh(process: dict[str, Any] | None = None, holders: list[int] | None = None, **kw: Any) -> dict[str, Any]:
    return {"host": "pve1", "login": "root@pve1", "connected": True, "process": process, "lock_holders": holders or [],
            "holder_processes": [], "config_lock": None} | kw


PROC = {"pid": 0x1234, "stat": "S", "etime": "00:30", "wchan": "do_select", "cmd": f"task {UPID}"}


def test_healthy_then_slow_by_the_nodes_history() -> None:
    running = [{"upid": UPID, "type": "qmigrate", "id": "100", "pid": 0x1234, "starttime": 1}]
    d = _verdict(api(task=task(), lock="migrate", running_tasks=running), ssh(PROC, [0x1234]))
    assert d.verdict == "healthy"
    d = _verdict(api(task=task(elapsed=600, usual=20), lock="migrate", running_tasks=running), ssh(PROC, [0x1234]))
    assert d.verdict == "slow" and any(c.startswith(f"pvectl task stop {UPID}") for c in d.next_commands)
    # a short usual duration does not call a task slow after a minute
    d = _verdict(api(task=task(elapsed=60, usual=5), lock="migrate", running_tasks=running), ssh(PROC, [0x1234]))
    assert d.verdict == "healthy"


def test_stale_lock_needs_no_holder_and_no_live_task() -> None:
    d = _verdict(api(task=task(status="stopped"), lock="migrate"), ssh(None, []))
    assert d.verdict == "stale-lock" and "process 4660 is gone" in d.summary
    assert d.next_commands[0].startswith("qm unlock 100")
    d = _verdict(api(lock="migrate"), ssh(None, [777]))
    assert d.verdict == "locked" and "777" in d.summary


def test_d_state_wins_over_everything_else() -> None:
    running = [{"upid": VZDUMP, "type": "vzdump", "id": "100", "pid": 0x2222, "starttime": 1}]
    proc = PROC | {"stat": "D", "wchan": "nfs_wait_bit_killable"}
    d = _verdict(api(task=task(), lock="backup", running_tasks=running), ssh(proc, [0x1234]))
    assert d.verdict == "storage-hang" and "nfs_wait_bit_killable" in d.summary
    assert d.next_commands[0] == "ssh root@pve1 cat /proc/4660/stack   # where in the kernel it waits"
    holder = {"pid": 0x2222, "stat": "D+", "etime": "10:00", "wchan": "io_schedule", "cmd": f"task {VZDUMP}"}
    d = _verdict(api(lock="backup", running_tasks=running), ssh(None, [0x2222], holder_processes=[holder]))
    assert d.verdict == "storage-hang" and str(0x2222) in d.summary


def test_unreachable_keeps_the_api_facts() -> None:
    d = _verdict(api(lock="backup"), {"host": "pve1", "login": "root@pve1", "connected": False,
                                   "error": "Connection refused"})
    assert d.verdict == "ssh-unreachable" and "Connection refused" in d.summary and "locked (backup)" in d.summary


def test_nothing_stuck() -> None:
    assert _verdict(api(), ssh()).verdict == "not-locked"
