"""Fixtures for the library tests: a simulated cluster and a library client of it (`sim.client()`),
with every progress event the client reports collected in `events`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import pvectl
import pvectl.sim

TEMPLATE = "ubuntu-24.04-cloud"      # VMID 9000 on pve1 in the generated cluster


@pytest.fixture
def sim() -> Iterator[pvectl.sim.Cluster]:
    with pvectl.sim.Cluster(nodes=3, bind="127.0.0.1", port=0, time_scale=0.01) as s:
        yield s


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def pve(sim: pvectl.sim.Cluster, events: list[dict[str, Any]]) -> Iterator[pvectl.Cluster]:
    with sim.client(timeout=60, on_event=events.append) as c:
        yield c


def writes(sim: pvectl.sim.Cluster, since: int = 0) -> list[tuple[str, str]]:
    """The non-GET requests the simulated cluster received."""
    return [(r["method"], r["path"]) for r in sim.requests_log(since=since) if r.get("method") != "GET"]
