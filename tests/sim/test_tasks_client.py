"""pvectl.tasks against the simulator over HTTPS: Task.wait, Backoff, progress, incremental logs,
polling the task's own node first, and TasksApi.list.

Nothing is timed: polling is observed by counting the requests the client makes (a wrapper around
`Transport.request`) and the intervals an injected `Backoff` hands out. Tasks that must still be
running at a deadline are hung on purpose (`hold_lock`: a backup task that runs until released).
"""

from __future__ import annotations

from typing import Any

import pytest

from pvectl.cluster import Cluster
from pvectl.errors import TaskFailed, TaskTimeout
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.sim.tasks import TaskError as SimTaskError
from pvectl.tasks import Backoff, Deadline, Progress, Task, parse_progress

WAIT = 30.0          # generous deadline for tasks that end on their own; never reached


class Counting:
    """Wraps a Transport's `request` and records (method, path, params, node answered for, data)."""

    def __init__(self, cluster: Cluster) -> None:
        self.calls: list[dict[str, Any]] = []
        t = cluster.transport
        self._orig = t.request

        def request(method: str, path: str, params: Any = None, **kw: Any) -> Any:
            res = self._orig(method, path, params, **kw)
            data = res.data if kw.get("raw") else res
            self.calls.append({"method": method, "path": path, "params": dict(params or {}),
                               "node": kw.get("node"), "data": data})
            return res

        t.request = request  # type: ignore[method-assign]

    def of(self, suffix: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"].endswith(suffix)]


class RecordingBackoff(Backoff):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.handed_out: list[float] = []

    def intervals(self) -> Any:
        for interval in super().intervals():
            self.handed_out.append(interval)
            yield interval


def post(pvc: Cluster, path: str, params: dict[str, Any] | None = None) -> str:
    node = path.split("/")[2]
    upid = pvc.transport.request("POST", path, params or {}, node=node)
    assert isinstance(upid, str) and upid.startswith(f"UPID:{node}:")
    return upid


def engine_task(sim: SimCluster, node: str, work: Any, *, dtype: str = "vzdump", wid: str = "103") -> str:
    """A task of the simulator's engine running `work(ctx)` (for log shapes no API call produces)."""
    return sim.backend.engine.start(node, dtype, wid, "root@pam", work)


# ------------------------------------------------------------------------------------ outcomes
def test_wait_returns_on_ok_after_few_polls(sim: SimCluster, pvc: Cluster) -> None:
    assert sim.backend.state.vms[103].status == "stopped"
    counter = Counting(pvc)
    upid = post(pvc, "/nodes/pve1/qemu/103/status/start")
    res = Task(pvc, upid).wait(WAIT)
    assert (res.upid, res.exitstatus, res.warnings) == (upid, "OK", [])
    assert sim.backend.state.vms[103].status == "running"
    # a start takes 1.2 PVE-seconds (24 ms here): the first poll is immediate, the next after 0.1 s
    assert len(counter.of("/status")) == res.polls
    assert 1 <= res.polls <= 3
    assert counter.of("/log") == []          # no log is read for a plain OK without a progress callback


def test_a_5xx_answer_to_a_status_read_is_read_again_not_the_tasks_outcome(sim: SimCluster, pvc: Cluster) -> None:
    """`got timeout` (a 500: the cluster file system was busy) for one status read says nothing about the
    task: the wait reads again and reports how the task ended, not the failed read."""
    upid = post(pvc, "/nodes/pve1/qemu/103/status/start")
    sim.fail_next(2, status=500, message="got timeout", method="GET", path="/status$")
    res = Task(pvc, upid).wait(WAIT)
    assert (res.upid, res.exitstatus) == (upid, "OK")
    assert sim.faults.snapshot()["fail_next"] == []           # both failures were met
    # the same for a log read that shows progress
    upid = post(pvc, "/nodes/pve1/qemu/103/status/stop")
    sim.fail_next(1, status=500, message="got timeout", method="GET", path="/log$")
    seen: list[Progress] = []
    assert Task(pvc, upid).wait(WAIT, on_progress=seen.append).exitstatus == "OK"
    assert sim.faults.snapshot()["fail_next"] == []


def test_wait_succeeds_with_warnings_and_returns_them(sim: SimCluster, pvc: Cluster) -> None:
    def work(ctx: Any) -> None:
        ctx.log("INFO: starting new backup job: vzdump 103")
        ctx.warn("unable to connect to the guest agent - skipping fs-freeze")
        ctx.log("INFO: Finished Backup of VM 103")
        ctx.warn("storage is almost full")

    upid = engine_task(sim, "pve1", work)
    res = Task(pvc, upid).wait(WAIT)
    assert res.exitstatus == "WARNINGS: 2"
    assert res.warnings == ["WARN: unable to connect to the guest agent - skipping fs-freeze",
                            "WARN: storage is almost full"]
    assert Task(pvc, upid).status().ok


def test_failed_task_raises_task_failed_with_exitstatus(sim: SimCluster, pvc: Cluster) -> None:
    sim.backend.fail_task(type="qmstart", message="start failed: QEMU exited with code 1")
    upid = post(pvc, "/nodes/pve1/qemu/106/status/start")
    with pytest.raises(TaskFailed) as ei:
        Task(pvc, upid).wait(WAIT)
    e = ei.value
    assert (e.upid, e.exitstatus, e.node, e.exit_code) == (upid, "start failed: QEMU exited with code 1", "pve1", 1)
    assert e.message == f"task {upid} failed: start failed: QEMU exited with code 1"
    assert e.hint == f"pvectl task log {upid}"
    assert e.log_tail == []                  # the log holds only the TASK ERROR line
    assert sim.backend.state.vms[106].status == "stopped"


def test_failed_task_carries_the_last_log_lines(sim: SimCluster, pvc: Cluster) -> None:
    def work(ctx: Any) -> None:
        for i in range(12):
            ctx.log(f"line {i}")
        raise SimTaskError("command 'vzdump 103' failed: exit code 2")

    upid = engine_task(sim, "pve2", work)
    with pytest.raises(TaskFailed) as ei:
        Task(pvc, upid).wait(WAIT)
    assert ei.value.exitstatus == "command 'vzdump 103' failed: exit code 2"
    assert ei.value.log_tail == [f"line {i}" for i in range(4, 12)]    # the last 8, without TASK ERROR
    assert ei.value.node == "pve2"


def test_timeout_at_the_deadline_carries_the_upid(sim: SimCluster, pvc: Cluster) -> None:
    upid = sim.backend.hold_lock(104)        # a backup task on pve2 that runs until released
    try:
        counter = Counting(pvc)
        with pytest.raises(TaskTimeout) as ei:
            Task(pvc, upid).wait(Deadline(0.15))
        e = ei.value
        assert (e.upid, e.node, e.exit_code, e.retryable) == (upid, "pve2", 4, True)
        assert e.message == "task vzdump on pve2 is still running at the deadline"
        assert e.hint == f"resume with: pvectl task wait {upid}"
        assert e.to_dict()["error"]["upid"] == upid
        assert counter.of("/status") and sim.backend.state.vms[104].config.get("lock") == "backup"
        # an expired deadline still polls once: a task that has ended is reported, not timed out
        with pytest.raises(TaskTimeout):
            Task(pvc, upid).wait(Deadline(0))
    finally:
        sim.backend.release_lock(104)
    res = Task(pvc, upid).wait(Deadline(0))
    assert res.exitstatus == "OK"


# ------------------------------------------------------------------------------------ polling
def test_default_backoff_starts_fast_and_caps() -> None:
    it = Backoff().intervals()
    seq = [next(it) for _ in range(14)]
    assert seq[:3] == pytest.approx([0.1, 0.15, 0.225])
    assert all(a <= b for a, b in zip(seq, seq[1:]))
    assert seq[-1] == 3.0 and max(seq) == 3.0


def test_polling_backs_off_with_an_injected_backoff(sim: SimCluster, pvc: Cluster) -> None:
    upid = sim.backend.hold_lock(103)
    try:
        backoff = RecordingBackoff(first=0.01, factor=2.0, cap=0.04)
        counter = Counting(pvc)
        with pytest.raises(TaskTimeout):
            Task(pvc, upid).wait(Deadline(0.4), backoff=backoff)
    finally:
        sim.backend.release_lock(103)
    seq = backoff.handed_out
    assert seq[:4] == [0.01, 0.02, 0.04, 0.04]
    assert all(a <= b for a, b in zip(seq, seq[1:])) and max(seq) == 0.04
    # one status request per interval handed out (the last one is cut off by the deadline)
    assert len(counter.of("/status")) == len(seq)


# ------------------------------------------------------------------------------------ progress and log
def test_progress_of_a_clone_is_monotonic_and_ends_at_one(sim: SimCluster, pvc: Cluster) -> None:
    counter = Counting(pvc)
    upid = post(pvc, "/nodes/pve1/qemu/9000/clone", {"newid": 150, "name": "clone-150", "full": 1})
    events: list[Progress] = []
    lines: list[str] = []
    res = Task(pvc, upid).wait(WAIT, on_progress=events.append, on_line=lines.append)
    assert res.exitstatus == "OK"
    fractions = [e.fraction for e in events]
    assert len(fractions) >= 10
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(a <= b for a, b in zip(fractions, fractions[1:]))
    assert all(e.upid == upid and e.phase == "copy" and e.total_bytes == 32 * 1024**3 for e in events)
    assert events[-1].done_bytes == events[-1].total_bytes
    assert events[-1].line == "transferred 32.0 GiB of 32.0 GiB (100.00%)"

    # every line arrived exactly once, in order, and the log was read incrementally with start=
    logs = counter.of("/log")
    full, total = Task(pvc, upid).log(start=0, limit=0)
    assert lines == full and total == len(full) and full[-1] == "TASK OK"
    assert all(c["path"].startswith("/nodes/pve1/tasks/") and c["node"] == "pve1" for c in logs)
    # an empty log answers [{n: 1, t: "no content"}] (pve-semantics §2): that placeholder is not a line
    fetched = [0 if [x["t"] for x in c["data"]] == ["no content"] else len(c["data"]) for c in logs]
    starts = [c["params"]["start"] for c in logs]
    assert starts == [sum(fetched[:i]) for i in range(len(fetched))]
    assert sum(fetched) == total                 # no line fetched twice
    assert all(c["params"]["limit"] == 0 for c in logs)
    assert len(logs) == res.polls and res.polls < total
    assert sim.backend.state.vms[150].config["name"] == "clone-150"


@pytest.mark.parametrize(("line", "parsed"), [
    ("transferred 330.2 MiB of 32.0 GiB (1.01%)", (0.0101, int(330.2 * 1024**2), 32 * 1024**3, "copy")),
    ("drive-scsi0: transferred 1.1 GiB of 20.0 GiB (5.70%) in 4s", (0.057, int(1.1 * 1024**3), 20 * 1024**3, "copy")),
    ("2024-01-01 10:00:03 migration active, transferred 1.0 GiB of 4.0 GiB VM-state, 399.1 MiB/s",
     (0.25, 1024**3, 4 * 1024**3, "migrate")),
    ("create full clone of drive scsi0 (local-lvm:base-9000-disk-0)", None),
])
def test_parse_progress(line: str, parsed: Any) -> None:
    got = parse_progress(line)
    if parsed is None:
        assert got is None
    else:
        assert got is not None
        assert got[0] == pytest.approx(parsed[0]) and got[1:] == parsed[1:]


def test_the_upid_node_is_polled_first(sim: SimCluster, pvc: Cluster) -> None:
    # pve1 is the first node of the config; its pveproxy is down. A task on pve2 is polled on pve2
    # directly, so pve1 is never even tried.
    sim.stop_listener("pve1")
    counter = Counting(pvc)
    seq0 = sim.server.requests.last_seq
    upid = post(pvc, "/nodes/pve2/qemu/104/status/start")
    res = Task(pvc, upid).wait(WAIT, on_line=lambda _: None)
    assert res.exitstatus == "OK" and sim.backend.state.vms[104].status == "running"
    assert "pve1" not in pvc.transport.dead_nodes
    assert {c["node"] for c in counter.calls} == {"pve2"}
    served = sim.requests_log(since=seq0)
    assert served and {r["node"] for r in served} == {"pve2"}
    assert not any(r["forwarded"] or r["proxied_to"] for r in served)


# ------------------------------------------------------------------------------------ TasksApi.list
def test_tasks_list_filters(sim: SimCluster, pvc: Cluster) -> None:
    done = post(pvc, "/nodes/pve1/qemu/103/status/start")
    Task(pvc, done).wait(WAIT)
    held = sim.backend.hold_lock(106)
    other = post(pvc, "/nodes/pve2/qemu/104/status/start")
    Task(pvc, other).wait(WAIT)
    try:
        everything = pvc.tasks.list()
        assert {done, held, other} <= {t.upid for t in everything}
        assert [t.starttime for t in everything] == sorted((t.starttime for t in everything), reverse=True)
        on_pve1 = pvc.tasks.list(node="pve1")
        assert {t.node for t in on_pve1} == {"pve1"} and other not in {t.upid for t in on_pve1}
        running = pvc.tasks.list(running=True)
        assert [t.upid for t in running] == [held]
        assert running[0].status == "RUNNING" and running[0].endtime is None
        for_103 = pvc.tasks.list(vm=103)
        assert [t.upid for t in for_103] == [done]
        t = for_103[0]
        assert (t.type, t.id, t.user, t.status, t.node) == ("qmstart", "103", "root@pam!pvectl", "OK", "pve1")
        assert isinstance(t.endtime, int)
    finally:
        sim.backend.release_lock(106)
