"""Plan tokens: single use, short-lived, bound to one action and cluster."""

from __future__ import annotations

import pytest

from pvectl.errors import GuardRefused
from pvectl.mcp.plans import PlanStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def issue(store: PlanStore) -> str:
    return store.issue(action="delete", cluster=None, node="pve1", vmid=105, name="web-5", digest="abc").token


def test_single_use() -> None:
    store = PlanStore(60)
    token = issue(store)
    assert store.peek(token, "delete") is not None
    plan = store.take(token, "delete", None)
    assert (plan.vmid, plan.name, plan.node, plan.digest) == (105, "web-5", "pve1", "abc")
    with pytest.raises(GuardRefused, match="unknown or already used"):
        store.take(token, "delete", None)


def test_expires() -> None:
    clock = Clock()
    store = PlanStore(60, clock=clock)
    token = issue(store)
    clock.now += 61
    assert store.peek(token, "delete") is None
    with pytest.raises(GuardRefused, match="expired"):
        store.take(token, "delete", None)


def test_bound_to_action_and_cluster() -> None:
    store = PlanStore(60)
    with pytest.raises(GuardRefused, match="not for stop"):
        store.take(issue(store), "stop", None)
    with pytest.raises(GuardRefused, match="not for delete"):
        store.take(issue(store), "delete", "other")
    assert store.peek(issue(store), "stop") is None


def test_tokens_are_unguessable() -> None:
    store = PlanStore(60)
    tokens = {issue(store) for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 24 for t in tokens)
