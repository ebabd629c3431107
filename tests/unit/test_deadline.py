"""When a deadline fires: `Task.wait` on a virtual clock (exact instants, no wall-clock timing), the
share of the time left that one read may use, and the transport's per-request bound against a small
HTTPS server that does not answer (see test_http.py for the server)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from test_http import FakePVE, answer_after, ca_tls, make, pki  # noqa: F401  (pki: the test CA fixture)

import pvectl.deadline as pdeadline
import pvectl.tasks.task as ptasks
from pvectl.config import Node
from pvectl.deadline import Deadline, read_slice
from pvectl.errors import DeadlineExceeded, NodeUnreachable, TaskTimeout
from pvectl.tasks import Backoff, Task

UPID = "UPID:pve1:0000A1B2:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:"


class Clock:
    """A virtual monotonic clock: `sleep` advances it; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[tuple[float, float]] = []      # (when, how long)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append((self.now, seconds))
        self.now += seconds


class RunningForever:
    """A transport whose task is always running; each poll takes `poll_cost` virtual seconds."""

    def __init__(self, clock: Clock, poll_cost: float = 0.0) -> None:
        self.clock = clock
        self.poll_cost = poll_cost
        self.polls: list[float] = []

    def get(self, path: str, params: Any = None, **kw: Any) -> dict[str, Any]:
        self.polls.append(self.clock.now)
        self.clock.now += self.poll_cost
        return {"status": "running", "type": "qmclone", "id": "9000"}

    def bounded(self, deadline: Deadline) -> Any:
        import contextlib

        return contextlib.nullcontext(deadline)


class FakeCluster:
    def __init__(self, transport: Any) -> None:
        self.transport = transport


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(ptasks, "time", c)
    monkeypatch.setattr(pdeadline, "time", c)
    return c


@pytest.mark.parametrize("seconds", [5.0, 2.0, 0.7, 12.5])
@pytest.mark.parametrize("poll_cost", [0.0, 0.03])
def test_wait_fires_at_its_deadline_not_before_not_after(clock: Clock, seconds: float, poll_cost: float) -> None:
    t = RunningForever(clock, poll_cost)
    start = clock.now
    with pytest.raises(TaskTimeout) as ei:
        Task(FakeCluster(t), UPID).wait(Deadline(seconds), backoff=Backoff(first=0.1, factor=1.5, cap=3.0))
    fired = clock.now - start
    assert seconds <= fired <= seconds + poll_cost + 1e-9
    assert ei.value.exit_code == 4 and ei.value.upid == UPID


def test_no_poll_sleeps_past_the_deadline(clock: Clock) -> None:
    """The 3 s poll interval is cut to the time left: with the cap removed, Deadline(5) fired at 7.5 s."""
    t = RunningForever(clock)
    start = clock.now
    with pytest.raises(TaskTimeout):
        Task(FakeCluster(t), UPID).wait(Deadline(5), backoff=Backoff(first=0.1, factor=1.5, cap=3.0))
    assert all(when + length <= start + 5 + 1e-9 for when, length in clock.sleeps)
    assert clock.sleeps[-1][1] < 3.0                    # the last interval was shortened
    assert t.polls[-1] == pytest.approx(start + 5)      # a last look at the deadline itself


def test_without_a_deadline_the_intervals_run_to_the_cap(clock: Clock) -> None:
    t = RunningForever(clock)
    seen: list[float] = []

    class Stop(Exception):
        pass

    def count(when: float, length: float) -> None:
        seen.append(length)
        if len(seen) == 12:
            raise Stop

    clock.sleep = lambda s: (count(clock.now, s), setattr(clock, "now", clock.now + s))  # type: ignore[method-assign]
    with pytest.raises(Stop):
        Task(FakeCluster(t), UPID).wait(None, backoff=Backoff(first=0.1, factor=1.5, cap=3.0))
    assert seen[0] == pytest.approx(0.1) and seen[-1] == pytest.approx(3.0)


def test_a_silent_node_keeps_the_wait_going_until_its_deadline(clock: Clock) -> None:
    """The task's node does not answer for a while: polling goes on, and the deadline ends it with
    exit 4, the UPID and the resume hint (not exit 5 at the first failed poll)."""
    t = RunningForever(clock)
    calls = []

    def get(path: str, params: Any = None, **kw: Any) -> dict[str, Any]:
        calls.append(clock.now)
        raise NodeUnreachable("node pve1 is not answering", node="pve1")

    t.get = get  # type: ignore[method-assign]
    start = clock.now
    with pytest.raises(TaskTimeout) as ei:
        Task(FakeCluster(t), UPID).wait(Deadline(4))
    assert clock.now - start == pytest.approx(4)
    assert len(calls) > 3
    e = ei.value
    assert e.exit_code == 4 and e.upid == UPID and e.hint == f"resume with: pvectl task wait {UPID}"
    assert "its state is unknown at the deadline" in e.message


def test_read_slice_takes_half_the_time_left_but_at_least_a_second() -> None:
    assert read_slice(30.0) == 15.0
    assert read_slice(5.0) == 2.5
    assert read_slice(2.0) == 1.0
    assert read_slice(1.5) == 1.0
    assert read_slice(0.4) == 0.4


# -- the transport's per-request bound ---------------------------------------------------------------

@pytest.fixture
def hung(pki: dict[str, Any]) -> Any:
    s = FakePVE(pki)
    yield s
    s.stop()


def _node(server: FakePVE) -> list[Node]:
    return [Node(name="pve1", host="127.0.0.1", port=server.port)]


def _slow_read(server: FakePVE, pki: dict[str, Any], *, after: float, read_timeout: float,
               deadline: float) -> tuple[float, NodeUnreachable]:
    """GET /version from a server that answers after `after` s; (seconds taken, the error)."""
    server.script[("GET", "/api2/json/version")] = [answer_after(after)]
    t = make(_node(server), ca_tls(pki), read_timeout=read_timeout, deadline=Deadline(deadline))
    t0 = time.monotonic()
    try:
        with pytest.raises(NodeUnreachable) as ei:
            t.get("/version")
    finally:
        t.close()
    return time.monotonic() - t0, ei.value


def test_a_read_ends_by_the_deadline_not_by_the_read_timeout(hung: FakePVE, pki: dict[str, Any]) -> None:
    took, err = _slow_read(hung, pki, after=3, read_timeout=30, deadline=0.6)
    assert isinstance(err, DeadlineExceeded)
    assert 0.5 <= took < 0.6 + 0.5
    assert err.exit_code == 4 and not err.uncertain
    assert len(hung.requests) == 1          # sent once: not retried into an expired deadline


def test_a_write_cut_by_the_deadline_is_uncertain_and_sent_once(hung: FakePVE, pki: dict[str, Any]) -> None:
    hung.script[("POST", "/api2/json/nodes/pve1/qemu/100/status/start")] = [answer_after(3)]
    t = make(_node(hung), ca_tls(pki), read_timeout=30)
    t0 = time.monotonic()
    with t.bounded(Deadline(0.5)), pytest.raises(DeadlineExceeded) as ei:
        t.post("/nodes/pve1/qemu/100/status/start")
    assert time.monotonic() - t0 < 0.5 + 0.5
    assert ei.value.uncertain and ei.value.exit_code == 4
    assert "may or may not have been applied" in ei.value.message
    assert [r["method"] for r in hung.requests] == ["POST"]
    t.close()


def test_an_expired_deadline_sends_nothing(hung: FakePVE, pki: dict[str, Any]) -> None:
    t = make(_node(hung), ca_tls(pki), deadline=Deadline(0))
    with pytest.raises(DeadlineExceeded) as ei:
        t.post("/nodes/pve1/qemu/100/status/start")
    assert not ei.value.uncertain and "nothing was sent" in ei.value.message
    assert hung.requests == []
    t.close()


def test_the_read_timeout_still_applies_when_it_is_shorter(hung: FakePVE, pki: dict[str, Any]) -> None:
    took, err = _slow_read(hung, pki, after=2, read_timeout=0.3, deadline=20)
    assert not isinstance(err, DeadlineExceeded) and err.exit_code == 5
    assert took < 0.3 + 0.5


def test_a_bounded_scope_is_per_thread(hung: FakePVE, pki: dict[str, Any]) -> None:
    hung.script[("GET", "/api2/json/version")] = [answer_after(0.5)]
    t = make(_node(hung), ca_tls(pki), read_timeout=5)
    other: list[Any] = []
    with t.bounded(Deadline(0)):
        th = threading.Thread(target=lambda: other.append(t.get("/version")))
        th.start()
        th.join(5)
        with pytest.raises(DeadlineExceeded):
            t.get("/version")
    assert other == [None]                   # the other thread was not bound by this thread's deadline
    assert t.get("/version") is None         # nor is this thread once the block has ended
    t.close()
