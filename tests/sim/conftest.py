"""Fixtures of the simulator API suite (helpers: apiharness.py).

No sockets, so the whole API suite runs in seconds. Durations are PVE seconds × `time_scale` (0.01):
tests wait for tasks by polling the task status endpoint, never by timing anything.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pvectl.sim.backend import Backend
from pvectl.sim.routes import Api
from pvectl.sim.schema import Schema

from apiharness import AUDIT100, AUDIT100_SECRET, FULL, FULL_SECRET, Client, auth, make_state


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
