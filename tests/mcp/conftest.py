"""Fixtures of the MCP server tests: a simulator per test and the SDK's in-memory client (harness.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "cli"))

from pvectl.sim.cluster import Cluster as SimCluster  # noqa: E402


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with SimCluster(nodes=3, vms=12, templates=2, bind="127.0.0.1", port=0, time_scale=0.005) as s:
        yield s
