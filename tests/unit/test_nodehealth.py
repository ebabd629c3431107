"""NodeHealth: which node is skipped for what, for how long, and when it is tried again."""

from __future__ import annotations

import pytest

import pvectl.http.health as nh
from pvectl.http.health import NodeHealth


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(nh, "time", c)
    return c


def test_unreachable_is_skipped_as_entry_but_reached_through_others(clock: Clock) -> None:
    h = NodeHealth(reprobe_after=2, reprobe_max=30)
    h.unreachable("pve1", "connection refused")
    assert h.skip_entry("pve1") == "connection refused"
    assert h.skip_target("pve1") is None                 # a relay may still reach it
    assert h.skipped() == {"pve1": "connection refused"}


def test_unresponsive_fails_its_paths_fast_and_is_no_entry(clock: Clock) -> None:
    h = NodeHealth(reprobe_after=2, reprobe_max=30)
    h.unresponsive("pve3", "596 Connection timed out via pve1")
    assert h.skip_target("pve3") == h.skip_entry("pve3") == "596 Connection timed out via pve1"
    assert h.skip_entry("pve1") is None                   # never the relay


def test_back_off_doubles_up_to_its_cap_then_the_node_is_probed_again(clock: Clock) -> None:
    h = NodeHealth(reprobe_after=2, reprobe_max=5)
    waits = []
    for _ in range(4):
        h.unreachable("pve1", "timed out")
        waits.append(h.backoff_left("pve1"))
        assert h.skip_entry("pve1") is not None
        clock.now += waits[-1]                             # the back-off ends: a re-probe
        assert h.skip_entry("pve1") is None and h.suspect("pve1")
    assert waits == [2, 4, 5, 5]
    h.answered("pve1")
    assert not h.suspect("pve1") and h.failures("pve1") == 0


def test_failures_during_a_back_off_do_not_lengthen_it(clock: Clock) -> None:
    h = NodeHealth(reprobe_after=2, reprobe_max=30)
    for _ in range(8):                                     # eight threads at the same moment
        h.unresponsive("pve2", "no answer within 1 s")
    assert h.failures("pve2") == 1 and h.backoff_left("pve2") == 2
