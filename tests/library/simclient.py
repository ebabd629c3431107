"""For the clone, migration, drain and task tests: `pve` here is a client from `sim.client()` (it
overrides conftest's) whose `on_event` collects every event into `events`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import pvectl
import pvectl.sim

TEMPLATE = "ubuntu-24.04-cloud"      # VMID 9000 on pve1 in the generated cluster


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def pve(sim: pvectl.sim.Cluster, events: list[dict[str, Any]]) -> Iterator[pvectl.Cluster]:
    with sim.client(timeout=60, on_event=events.append) as c:
        yield c


def writes(sim: pvectl.sim.Cluster, since: int = 0) -> list[tuple[str, str]]:
    """The writes the simulated nodes received (a request relayed to another node counts once)."""
    return [(r["method"], r["path"]) for r in sim.requests_log(since=since)
            if r.get("method") != "GET" and not r.get("forwarded")]
