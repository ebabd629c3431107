"""In-process harness for the simulator's API: `wire.Request` objects straight into `Api.handle`.

No sockets, so the whole API suite runs in seconds. Durations are PVE seconds × `time_scale` (0.01):
tests wait for tasks by polling the task status endpoint, never by timing anything.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvectl.sim import wire
from pvectl.sim.backend import Backend
from pvectl.sim.models import State, generate_state
from pvectl.sim.routes import Api
from pvectl.schema import Schema

FULL = "admin@pve!full"
FULL_SECRET = "3f1c2b8e-0000-4000-8000-00000000f001"
AUDIT100 = "audit@pve!vm100"
AUDIT100_SECRET = "3f1c2b8e-0000-4000-8000-00000000a100"
DEADLINE = 10.0        # generous: a wait ends as soon as the condition holds


def auth(tokenid: str, secret: str) -> str:
    return f"PVEAPIToken={tokenid}={secret}"


@dataclass
class Reply:
    status: int
    reason: str
    body: bytes
    delay: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def data(self) -> Any:
        return self.json["data"]


class Client:
    """Builds `wire.Request`s the way pveproxy would receive them and runs them through `Api.handle`."""

    def __init__(self, api: Api, authorization: str | None) -> None:
        self.api = api
        self.authorization = authorization

    def as_token(self, tokenid: str, secret: str) -> Client:
        return Client(self.api, auth(tokenid, secret))

    def raw(self, method: str, path: str, *, query: str = "", body: bytes = b"", local: str | None = None,
            headers: dict[str, str] | None = None) -> wire.Response | wire.ProxyTo:
        hdrs = {} if self.authorization is None else {"authorization": self.authorization}
        hdrs.update(headers or {})
        if local is None:
            # the node named in the path answers (as if the client talked to it), else pve1
            parts = path.split("/")
            local = parts[2] if len(parts) > 2 and parts[1] == "nodes" and parts[2] in self.api.backend.state.nodes \
                else "pve1"
        return self.api.handle(local, wire.Request(method, "/api2/json" + path, query, hdrs, body))

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, *, body: bytes | None = None,
             query: str = "", local: str | None = None, headers: dict[str, str] | None = None) -> Reply:
        """params go to the query string for GET/DELETE and into a correctly encoded form body otherwise."""
        hdrs = dict(headers or {})
        if params:
            encoded = urllib.parse.urlencode(params)
            if method in ("GET", "DELETE"):
                query = f"{query}&{encoded}" if query else encoded
            else:
                body = encoded.encode()
                hdrs.setdefault("content-type", "application/x-www-form-urlencoded")
        resp = self.raw(method, path, query=query, body=body or b"", local=local, headers=hdrs)
        assert isinstance(resp, wire.Response), resp
        return Reply(resp.status, resp.reason, resp.body, resp.delay)

    def get(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.ok("GET", path, params, **kw)

    def ok(self, method: str, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        r = self.call(method, path, params, **kw)
        assert r.status == 200, (r.status, r.reason, r.body)
        return r.data

    def fail(self, method: str, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Reply:
        r = self.call(method, path, params, **kw)
        assert r.status != 200, r.body
        return r

    # ------------------------------------------------------------------ tasks
    def task_status(self, upid: str) -> dict[str, Any]:
        node = upid.split(":")[1]
        return self.get(f"/nodes/{node}/tasks/{urllib.parse.quote(upid, safe='')}/status")

    def wait(self, upid: str) -> dict[str, Any]:
        """Poll the status endpoint until the task stopped; return the final status."""
        deadline = time.monotonic() + DEADLINE
        while True:
            st = self.task_status(upid)
            if st["status"] == "stopped":
                return st
            assert time.monotonic() < deadline, f"task still running: {upid}"
            time.sleep(0.005)

    def log(self, upid: str) -> list[str]:
        node = upid.split(":")[1]
        lines = self.get(f"/nodes/{node}/tasks/{urllib.parse.quote(upid, safe='')}/log", {"limit": 0})
        return [line["t"] for line in lines]

    def run(self, method: str, path: str, params: dict[str, Any] | None = None, **kw: Any) -> tuple[str, list[str]]:
        """Start a task, wait for it; (exitstatus, log lines)."""
        upid = self.ok(method, path, params, **kw)
        st = self.wait(upid)
        return st["exitstatus"], self.log(upid)


TS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (.*)$")
DURATION = re.compile(r"\(duration \d\d:\d\d:\d\d\)")


def migration_log(lines: list[str]) -> list[str]:
    """The log without timestamps; asserts every line but the final TASK line has one (§2.2)."""
    out = []
    for line in lines[:-1]:
        m = TS.match(line)
        assert m, line
        out.append(DURATION.sub("(duration D)", m.group(1)))
    assert lines[-1].startswith("TASK ")
    return out + [lines[-1]]


def recorded(name: str) -> list[dict[str, Any]]:
    """The examples of a recorded real response in the shared spec/fixtures/errors (beside the repo)."""
    here = Path(__file__).resolve().parents[2]
    found = [p for p in (here.parent / "shared", Path("/work/shared")) if (p / "spec/fixtures/errors").is_dir()]
    assert found, f"spec/fixtures/errors not found beside {here}: the shared/ folder is needed"
    return json.loads((found[0] / "spec/fixtures/errors" / name).read_text())["examples"]


def wait_until(cond: Any, what: str = "condition") -> None:
    deadline = time.monotonic() + DEADLINE
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def make_state() -> State:
    state = generate_state(nodes=3, vms=12, templates=2, seed=0)
    for i, node in enumerate(state.nodes.values(), start=1):
        node.ip = f"10.0.0.{i}"
    return state


@contextmanager
def scaled(schema: Schema, time_scale: float) -> Iterator[tuple[Client, Backend]]:
    """A client (full rights) on a fresh backend whose PVE seconds last `time_scale` wall seconds."""
    b = Backend(make_state(), time_scale=time_scale)
    b.add_token(FULL, FULL_SECRET)
    try:
        yield Client(Api(b, schema), auth(FULL, FULL_SECRET)), b
    finally:
        b.close()


def vms_by(backend: Backend, *, running: bool | None = None, template: bool = False,
           protected: bool | None = None, agent: bool | None = None) -> list[int]:
    out = []
    for vm in sorted(backend.state.vms.values(), key=lambda v: v.vmid):
        if vm.is_template != template:
            continue
        if running is not None and (vm.status == "running") != running:
            continue
        is_protected = bool(int(vm.config.get("protection", 0) or 0))
        if protected is not None and is_protected != protected:
            continue
        if agent is not None and ("agent" in vm.config) != agent:
            continue
        out.append(vm.vmid)
    return out


