"""The library's public surface against the in-process simulator: `import pvectl` and `pvectl.sim`
only (no module below them is imported by these tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import pvectl
import pvectl.sim


@pytest.fixture(autouse=True)
def _client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "PVECTL_CONFIG"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def sim() -> Iterator[pvectl.sim.Cluster]:
    with pvectl.sim.Cluster(nodes=3, vms=12, templates=2, bind="127.0.0.1", port=0, time_scale=0.02) as s:
        yield s


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    return tmp_path / "library-audit.jsonl"


@pytest.fixture
def pve(sim: pvectl.sim.Cluster, audit_file: Path) -> Iterator[pvectl.Cluster]:
    with pvectl.Cluster.from_config(str(sim.config_path), audit=str(audit_file), timeout=30) as c:
        yield c

