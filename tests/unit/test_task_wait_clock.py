"""`Task.wait` on a virtual clock against a task served as pvedaemon serves it: a node that stops
answering without a deadline (given up after `LOST_GRACE`, with the UPID to resume with), a node
silent for a while (the wait goes on), progress lines that predict the end (no sleep past it, no busy
polling at 100 %), and the log endpoint's defaults (`limit` 50) for the lines a failed task reports.
No wall-clock time is measured here except in the two tests that bound a real hung read."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from test_deadline import Clock, clock  # noqa: F401  (clock: the virtual-clock fixture)
from test_http import FakePVE, answer_after, ca_tls, make, pki  # noqa: F401  (pki: the test CA fixture)

from pvectl.config import Node
from pvectl.deadline import Deadline
from pvectl.errors import DeadlineExceeded, NodeUnreachable, TaskFailed, TaskTimeout
from pvectl.tasks import Backoff, Progress, Task, TasksApi
from pvectl.upid import Upid

UPID = "UPID:pve1:0000A1B2:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:"
STATUS_PATH = "/nodes/pve1/tasks/UPID%3Apve1%3A0000A1B2%3A03B4C5D6%3A66F1E2D3%3Aqmclone%3A9000%3Aroot%40pam%3A/status"
EVERY_SECOND = Backoff(first=1.0, factor=1.0, cap=1.0)
EVERY_3S = Backoff(first=3.0, factor=1.0, cap=3.0)
GIVE_UP = 120.0         # virtual seconds: a wait still going by then has missed its end


class PveTask:
    """One task as pvedaemon serves it. Status: `running` until `ends_at` (virtual time), then stopped
    with `exitstatus`. Log (pve-semantics §1 row 2): `start` 0-based (default 0), `limit` default 50,
    `limit=0` to the end, `total` = every line, `start` past the end gives [] with the total, an empty
    log one `no content` line with total 1. `silent(t)` makes the node not answer at virtual time t."""

    def __init__(self, clock: Clock | None, *, ends_at: float = 0.0, exitstatus: str = "OK",
                 lines: Callable[[float], list[str]] | list[str] = (),  # type: ignore[assignment]
                 silent: Callable[[float], bool] = lambda t: False,
                 log_fails: bool = False) -> None:
        self.clock = clock
        self.start = clock.now if clock else 0.0
        self.ends_at, self.exitstatus, self.silent, self.log_fails = ends_at, exitstatus, silent, log_fails
        self._lines = lines
        self.status_polls: list[float] = []
        self.log_reads: list[dict[str, Any]] = []

    def elapsed(self) -> float:
        # rounded: sums of float sleeps land a hair before an instant they reach exactly
        return round(self.clock.now - self.start, 6) if self.clock else 0.0

    def lines(self) -> list[str]:
        return self._lines(self.elapsed()) if callable(self._lines) else list(self._lines)

    def bounded(self, deadline: Deadline) -> Any:
        return contextlib.nullcontext(deadline)

    def get(self, path: str, params: Any = None, **kw: Any) -> dict[str, Any]:
        assert path == STATUS_PATH and kw.get("node") == "pve1"
        t = self.elapsed()
        if t > GIVE_UP:
            raise AssertionError(f"still waiting after {t:.1f} virtual seconds")
        if self.silent(t):
            raise NodeUnreachable("node pve1 is not answering", attempts=[("pve1", "127.0.0.1:8006: timed out")],
                                  status=596, reason="Connection timed out", method="GET", path=path, node="pve1")
        self.status_polls.append(t)
        if t >= self.ends_at:
            return {"status": "stopped", "exitstatus": self.exitstatus}
        return {"status": "running"}

    def request(self, method: str, path: str, params: dict[str, Any], *, node: str | None = None,
                raw: bool = False) -> SimpleNamespace:
        assert (method, path.rsplit("/", 1)[1], node, raw) == ("GET", "log", "pve1", True)
        self.log_reads.append(dict(params))
        if self.log_fails:
            raise NodeUnreachable("node pve1 is not answering", node="pve1")
        lines = self.lines()
        start = params.get("start")
        limit = params.get("limit")
        start = 0 if start is None else int(start)
        limit = 50 if limit is None else int(limit)
        if not lines:
            return SimpleNamespace(data=[{"n": 1, "t": "no content"}], total=1)
        chunk = lines[start:] if limit == 0 else lines[start:start + limit]
        return SimpleNamespace(data=[{"n": start + i + 1, "t": t} for i, t in enumerate(chunk)], total=len(lines))



def _session(transport: Any) -> Any:
    """What Task needs of a Session: the transport, no progress callback, no default timeout."""
    from pvectl.deadline import Deadline

    return SimpleNamespace(transport=transport, on_event=None, deadline=lambda timeout=None: Deadline.of(timeout))

def task(transport: PveTask) -> Task:
    return Task(_session(transport), UPID)  # type: ignore[arg-type]


# -- a node that does not answer, without a deadline -------------------------------------------------

def test_without_a_deadline_a_silent_node_is_given_up_after_the_grace_with_the_upid(clock: Clock) -> None:
    t = PveTask(clock, ends_at=10**6, silent=lambda s: True)
    with pytest.raises(NodeUnreachable) as ei:
        task(t).wait(None, backoff=EVERY_SECOND)
    assert clock.now - t.start == pytest.approx(Task.LOST_GRACE)
    e = ei.value
    assert not isinstance(e, DeadlineExceeded) and e.exit_code == 5
    assert e.message == f"lost contact with pve1 while waiting for task {UPID}: node pve1 is not answering"
    assert e.hint == f"the task's outcome is unknown; once pve1 answers again: pvectl task wait {UPID}"
    assert e.upid == UPID and e.node == "pve1"  # type: ignore[attr-defined]
    # what failed, as the last poll saw it
    assert e.attempts == [("pve1", "127.0.0.1:8006: timed out")]
    assert (e.status, e.reason, e.method, e.path) == (596, "Connection timed out", "GET", STATUS_PATH)


def test_without_a_deadline_a_node_silent_for_a_while_does_not_end_the_wait(clock: Clock) -> None:
    """Two silences of 10 s each (22 s in all, each shorter than the grace): the wait goes on."""
    t = PveTask(clock, ends_at=30, silent=lambda s: 1 <= s < 11 or 13 <= s < 23)
    res = task(t).wait(None, backoff=EVERY_SECOND)
    assert res.exitstatus == "OK"
    assert t.status_polls[-1] == pytest.approx(30)


def test_a_deadline_that_cuts_a_poll_after_silence_says_the_state_is_unknown(clock: Clock) -> None:
    t = PveTask(clock, ends_at=10**6, silent=lambda s: s >= 1)
    real_get = t.get

    def get(path: str, params: Any = None, **kw: Any) -> dict[str, Any]:
        if t.elapsed() >= 3:
            raise DeadlineExceeded(f"GET {path}: no answer from pve1 before the deadline", node="pve1")
        return real_get(path, params, **kw)

    t.get = get  # type: ignore[method-assign]
    with pytest.raises(TaskTimeout) as ei:
        task(t).wait(Deadline(10), backoff=EVERY_SECOND)
    e = ei.value
    assert e.message == ("task qmclone on pve1: its state is unknown at the deadline, pve1 did not answer "
                         "(node pve1 is not answering)")
    assert e.exit_code == 4 and e.upid == UPID and e.node == "pve1"
    assert e.to_dict()["error"]["node"] == "pve1"


# -- progress: when to look again ---------------------------------------------------------------------

def copying(seconds: float, size_mib: float = 100.0) -> Callable[[float], list[str]]:
    """A qemu-img copy that takes `seconds`: one progress line per virtual second so far, then the
    task's end line."""
    def lines(t: float) -> list[str]:
        out = [f"transferred {size_mib * i / seconds:.1f} MiB of {size_mib:.1f} MiB ({100 * i / seconds:.2f}%)"
               for i in range(1, int(min(t, seconds)) + 1)]
        if t > 0 and t < seconds and t != int(t):
            f = t / seconds
            out.append(f"transferred {size_mib * f:.1f} MiB of {size_mib:.1f} MiB ({100 * f:.2f}%)")
        return out + (["TASK OK"] if t >= seconds else [])
    return lines


def test_progress_that_predicts_the_end_shortens_the_last_sleep(clock: Clock) -> None:
    """Polls every 3 s; the copy takes 9.5 s and the task ends with it. At 9 s the log says 94.74 %
    after 9 s: the next look is at the predicted end (~9.5 s), not 3 s later (12 s)."""
    t = PveTask(clock, ends_at=9.45, lines=copying(9.5))
    seen: list[Progress] = []
    res = task(t).wait(None, on_progress=seen.append, backoff=EVERY_3S)
    assert res.exitstatus == "OK"
    assert 9.45 <= t.status_polls[-1] <= 9.5 + 0.1
    assert len(t.status_polls) <= 6                     # 0, 3, 6, 9, ~9.5: no faster polling before that
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and 0.9 < fractions[-1] <= 1.0   # type: ignore[type-var]


def test_a_copy_at_100_percent_that_still_runs_is_not_polled_in_a_busy_loop(clock: Clock) -> None:
    """qemu-img reports 100 % at 2 s; the task writes its config and ends at 10 s."""
    t = PveTask(clock, ends_at=10, lines=lambda s: ["transferred 100.0 MiB of 100.0 MiB (100.00%)"] if s >= 2 else [])
    task(t).wait(None, on_progress=lambda p: None, backoff=EVERY_3S)
    assert len(t.status_polls) <= 6                     # 0, 3, 6, 9, 12


def test_each_new_line_goes_to_on_line_without_a_progress_callback(clock: Clock) -> None:
    t = PveTask(clock, ends_at=4, lines=lambda s: [f"step {i}" for i in range(int(s) + 1)])
    got: list[str] = []
    task(t).wait(None, on_line=got.append, backoff=EVERY_SECOND)
    assert got == [f"step {i}" for i in range(5)]


def test_migration_progress_carries_its_phase_and_bytes(clock: Clock) -> None:
    line = "migration active, transferred 1.0 GiB of 4.0 GiB VM-state, 399.1 MiB/s"
    t = PveTask(clock, ends_at=2, lines=[line])
    seen: list[Progress] = []
    task(t).wait(None, on_progress=seen.append, backoff=EVERY_SECOND)
    assert seen == [Progress(UPID, 0.25, 1024**3, 4 * 1024**3, line, "migrate")]


# -- the log: what a finished task reports ------------------------------------------------------------

def test_a_failed_task_with_a_long_log_reports_the_lines_before_its_error() -> None:
    """The log endpoint returns 50 lines unless told otherwise: the last lines of a 60-line log are read."""
    lines = [f"copy step {i}" for i in range(60)] + ["TASK ERROR: clone failed: no space left"]
    t = PveTask(None, exitstatus="clone failed: no space left", lines=lines)
    with pytest.raises(TaskFailed) as ei:
        task(t).wait(30)
    assert ei.value.log_tail == [f"copy step {i}" for i in range(52, 60)]


def test_the_tail_of_a_long_log_is_its_end() -> None:
    lines = [f"line {i}" for i in range(60)]
    assert task(PveTask(None, lines=lines)).tail(3) == ["line 57", "line 58", "line 59"]
    assert task(PveTask(None, lines=lines)).tail() == [f"line {i}" for i in range(50, 60)]


def test_a_log_read_without_a_window_gives_the_first_50_lines_and_the_total() -> None:
    lines = [f"line {i}" for i in range(60)]
    assert task(PveTask(None, lines=lines)).log() == (lines[:50], 60)


def test_new_lines_of_a_one_line_log_and_none_when_nothing_is_new() -> None:
    t = PveTask(None, lines=["starting clone of drive scsi0"])
    tk = task(t)
    assert tk.read_new_lines() == ["starting clone of drive scsi0"]
    assert tk.read_new_lines() == []                    # start past the end: [] with total 1


def test_a_finished_task_whose_log_cannot_be_read_still_reports_its_exit_status() -> None:
    res = task(PveTask(None, exitstatus="WARNINGS: 1", log_fails=True)).wait(30)
    assert (res.exitstatus, res.warnings) == ("WARNINGS: 1", [])
    with pytest.raises(TaskFailed) as ei:
        task(PveTask(None, exitstatus="clone failed", log_fails=True)).wait(30)
    assert ei.value.exitstatus == "clone failed" and ei.value.log_tail == []


def test_the_tail_after_a_failed_wait_uses_the_log_already_read() -> None:
    t = PveTask(None, exitstatus="boom", lines=["a", "b", "TASK ERROR: boom"])
    tk = task(t)
    with pytest.raises(TaskFailed):
        tk.wait(30)
    reads = len(t.log_reads)
    assert tk.tail(2) == ["b", "TASK ERROR: boom"]
    assert len(t.log_reads) == reads


def test_a_task_made_from_a_parsed_upid_keeps_its_text() -> None:
    lower = UPID.replace("0000A1B2", "0000a1b2")         # sent back exactly as Proxmox wrote it
    tk = Task(_session(PveTask(None)), Upid.parse(lower))  # type: ignore[arg-type]
    assert str(tk) == lower and tk.node == "pve1"


def test_tasks_api_get_gives_the_task_of_that_upid_on_the_cluster() -> None:
    t = PveTask(None, exitstatus="OK")
    session = _session(t)
    session.config = SimpleNamespace(has_node=lambda name: name == "pve1")   # pve1 is a configured node
    tk = TasksApi(session).get(UPID)  # type: ignore[arg-type]
    assert str(tk) == UPID and tk.node == "pve1"
    assert tk.status().exitstatus == "OK" and len(t.status_polls) == 1


# -- the deadline bounds each poll of a hung node (a real read against a server that does not answer) --

@pytest.fixture
def hung(pki: dict[str, Any]) -> Any:  # noqa: F811
    s = FakePVE(pki)
    s.script[("GET", "/api2/json" + STATUS_PATH)] = [answer_after(3)]
    yield s
    s.stop()


@pytest.fixture
def on_hung(hung: FakePVE, pki: dict[str, Any]) -> Any:  # noqa: F811
    transport = make([Node(name="pve1", host="127.0.0.1", port=hung.port)], ca_tls(pki), read_timeout=30)
    yield _session(transport)
    transport.close()


def test_a_wait_on_a_hung_node_ends_by_its_deadline(on_hung: Any) -> None:
    t0 = time.monotonic()
    with pytest.raises(TaskTimeout) as ei:
        Task(on_hung, UPID).wait(1.0)
    assert time.monotonic() - t0 < 1.0 + 1.0
    assert ei.value.exit_code == 4 and ei.value.upid == UPID


def test_a_wait_with_its_deadline_spent_still_ends_within_one_short_poll(on_hung: Any) -> None:
    t0 = time.monotonic()
    with pytest.raises(TaskTimeout):
        Task(on_hung, UPID).wait(Deadline(0))
    assert time.monotonic() - t0 < Task.MIN_ANSWER + 1.0
