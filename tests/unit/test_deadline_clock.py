"""`Deadline` and `earliest` on a frozen virtual clock: the instant a deadline expires, which of several
deadlines bounds a request, and what a deadline shows of itself."""

from __future__ import annotations

import pytest

import pvectl.deadline as pdeadline
from pvectl.deadline import Deadline, earliest


class FrozenClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 500.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    c = FrozenClock()
    monkeypatch.setattr(pdeadline, "time", c)
    return c


def test_a_deadline_has_expired_at_the_very_instant_its_time_runs_out(clock: FrozenClock) -> None:
    d = Deadline(5)
    clock.now += 4.999
    assert not d.expired()
    clock.now += 0.001
    assert d.remaining() == pytest.approx(0.0)
    assert d.expired()                 # no time left is expired: nothing more may be sent
    assert Deadline(0).expired()       # `--timeout 0` is spent before the first request


def test_without_a_limit_nothing_expires(clock: FrozenClock) -> None:
    d = Deadline(None)
    clock.now += 10**9
    assert not d.expired() and d.remaining() is None


def test_a_deadline_keeps_the_length_it_was_given(clock: FrozenClock) -> None:
    assert Deadline(5).seconds == 5
    assert Deadline.of(2.5).seconds == 2.5
    assert Deadline.of(None).seconds is None
    d = Deadline(7)
    assert Deadline.of(d) is d         # an existing deadline is shared, not restarted


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2), (2, 0, 3, 1)])
def test_the_earliest_limited_deadline_bounds_a_request_whatever_the_order(
        clock: FrozenClock, order: tuple[int, ...]) -> None:
    """An unlimited deadline (None or `Deadline(None)`) next to limited ones never hides them."""
    pool: list[Deadline | None] = [Deadline(8), None, Deadline(3), Deadline(None)]
    clock.now += 1
    assert earliest([pool[i] for i in order]) == pytest.approx(2.0)


def test_earliest_without_any_limit_is_none(clock: FrozenClock) -> None:
    assert earliest([]) is None
    assert earliest([None, Deadline(None), None]) is None


def test_earliest_of_two_equal_deadlines_is_their_time_left(clock: FrozenClock) -> None:
    assert earliest([Deadline(4), Deadline(4)]) == pytest.approx(4.0)


def test_a_deadline_shows_the_time_left_or_that_it_has_no_limit(clock: FrozenClock) -> None:
    d = Deadline(5)
    clock.now += 1.5
    assert repr(d) == "Deadline(3.500 s left)"
    assert repr(Deadline(None)) == "Deadline(None)"
