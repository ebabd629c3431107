"""Fixtures of the simulator suites: the API in-process (helpers: apiharness.py), and the library
against a running simulator (`sim`, `pvc`; helpers: libharness.py).

The API suite uses no sockets, so it runs in seconds. Durations are PVE seconds × `time_scale` (0.01):
tests wait for tasks by polling the task status endpoint, never by timing anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiharness import (
    AUDIT100,
    AUDIT100_SECRET,
    FULL,
    FULL_SECRET,
    Client,
    auth,
    make_state,
)

from pvectl import credentials
from pvectl.cluster import Cluster
from pvectl.sim.backend import Backend
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.sim.routes import Api
from pvectl.schema import Schema


@pytest.fixture(scope="session")
def schema() -> Schema:
    return Schema.load()


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend(make_state(), time_scale=0.01)
    b.add_token(FULL, FULL_SECRET)
    b.add_token(AUDIT100, AUDIT100_SECRET, privs={"/vms/100": ["VM.Audit"]})
    yield b
    b.close()


@pytest.fixture
def api(backend: Backend, schema: Schema) -> Api:
    return Api(backend, schema)


@pytest.fixture
def client(api: Api) -> Client:
    return Client(api, auth(FULL, FULL_SECRET))


@pytest.fixture
def audit(api: Api) -> Client:
    return Client(api, auth(AUDIT100, AUDIT100_SECRET))


# ---------------------------------------------------------------------- seed facts used by many tests


# ---------------------------------------------------------------- the library against a running simulator
@pytest.fixture(autouse=True)
def _client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "PVECTL_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    credentials.reset()


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with SimCluster(nodes=3, vms=12, templates=2, bind="127.0.0.1", port=0, time_scale=0.02) as s:
        yield s


@pytest.fixture
def pvc(sim: SimCluster) -> Iterator[Cluster]:
    c = Cluster.from_config(str(sim.config_path))
    try:
        yield c
    finally:
        c.close()
