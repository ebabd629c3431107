"""What a chaos run saw: every request the simulated API carried out (with the API token that sent
it), every operation a client ran and what it reported, the audit log, and the cluster's VMs.

Each operation runs with an API token of its own (`root@pam!op<N>`), so a request, an audit line and
a task (its UPID names the token) can be traced back to the one command that caused it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pvectl.sim import wire

WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})
# parameters that never identify a write (they change on every attempt or hold secrets)
_VOLATILE = frozenset({"digest", "cipassword", "password"})


@dataclass
class Received:
    """One request the simulated API carried out (faults that refuse or drop it come before this)."""

    seq: int
    time: float
    node: str
    method: str
    path: str                        # relative to /api2/json, unquoted
    params: dict[str, Any]
    token: str | None                # the API token id, never its secret
    status: int
    upid: str | None = None          # the task the write started, if any
    carried_out: float = 0.0         # time.monotonic() when carried out (the clock of OpRecord.started)

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def identity(self) -> tuple[Any, ...]:
        """What makes two requests the same write."""
        params = tuple(sorted((k, str(v)) for k, v in self.params.items() if k not in _VOLATILE))
        return (self.token, self.method, self.path, params)


@dataclass
class OpRecord:
    """One operation of one client: what it was asked, how it ended, what it printed."""

    op_id: int
    kind: str                        # clone, clone-bulk, clone-race, clone-retry, power, resize, set, ...
    via: str                         # cli | lib
    token: str
    argv: list[str]
    names: list[str] = field(default_factory=list)   # VM names it was asked to make
    target_vmid: int | None = None                   # the VM it acts on (power, delete, ...)
    deadline: float | None = None                    # seconds
    started: float = 0.0
    ended: float = 0.0
    exit_code: int | None = None                     # CLI exit code, or the library error's exit_code
    stdout: str = ""
    stderr: str = ""
    error_type: str | None = None
    untyped: str | None = None                       # a non-pvectl exception (library) with its traceback
    interrupted: bool = False                        # SIGINT was sent
    killed: bool = False                             # the harness had to kill it (far past its deadline)
    result: Any = None                               # the parsed JSON result (CLI) or to_dict() (library)

    @property
    def elapsed(self) -> float:
        return self.ended - self.started

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr

    def summary(self) -> str:
        return f"op {self.op_id} ({self.via} {self.kind}: {' '.join(self.argv)})"


@dataclass
class VmState:
    vmid: int
    name: str | None
    node: str
    lock: str | None
    template: bool
    tags: str = ""
    status: str = "stopped"


@dataclass
class TaskState:
    upid: str
    status: str
    exitstatus: str | None


@dataclass
class History:
    ops: list[OpRecord] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    initial_vms: dict[int, VmState] = field(default_factory=dict)
    final_vms: dict[int, VmState] = field(default_factory=dict)
    snapshots: list[tuple[float, dict[int, VmState]]] = field(default_factory=list)
    after_op: dict[int, dict[int, VmState]] = field(default_factory=dict)   # op id -> VMs right after it
    tasks: dict[str, TaskState] = field(default_factory=dict)
    name_prefix: str = "cx-"
    injector_tokens: frozenset[str] = frozenset()


class RecordingApi:
    """Wraps the simulator's API handler (`Cluster(api_factory=...)`) and records every request it
    carries out. Requests relayed to another node are recorded once, where they are carried out."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._seq = 0
        self.received: list[Received] = []

    def handle(self, local_node: str, request: wire.Request) -> Any:
        result = self.inner.handle(local_node, request)
        if isinstance(result, wire.ProxyTo):
            return result
        rel = urllib.parse.unquote(request.path[len("/api2/json"):]) if request.path.startswith("/api2/json") \
            else request.path
        upid = None
        if request.method in WRITE_METHODS and 200 <= result.status < 300 and result.body:
            upid = _upid_of(result.body)
        with self._lock:
            self._seq += 1
            self.received.append(Received(self._seq, time.time(), local_node, request.method, rel,
                                          _params(request), token_of(request.headers.get("authorization")),
                                          result.status, upid, time.monotonic()))
        return result


@contextmanager
def recording_sim(**options: Any) -> Iterator[tuple[Any, RecordingApi]]:
    """An in-process simulated cluster on 127.0.0.1 whose API records what it carries out."""
    from pvectl.sim.cluster import Cluster
    from pvectl.sim.routes import Api

    recorders: list[RecordingApi] = []

    def factory(backend: Any) -> RecordingApi:
        recorders.append(RecordingApi(Api(backend)))
        return recorders[-1]

    with Cluster(bind="127.0.0.1", port=0, api_factory=factory, **options) as sim:
        yield sim, recorders[0]


def token_of(authorization: str | None) -> str | None:
    """`PVEAPIToken=user@realm!name=SECRET` -> `user@realm!name` (the secret is dropped here)."""
    if not authorization or not authorization.startswith("PVEAPIToken="):
        return None
    tid, _, _ = authorization[len("PVEAPIToken="):].partition("=")
    return tid


def _params(request: wire.Request) -> dict[str, Any]:
    out: dict[str, Any] = dict(urllib.parse.parse_qsl(request.query, keep_blank_values=True))
    body = request.body
    if not body:
        return out
    if "json" in request.headers.get("content-type", ""):
        try:
            doc = json.loads(body)
        except ValueError:
            return out
        if isinstance(doc, dict):
            out.update(doc)
        return out
    out.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return out


def _upid_of(body: bytes) -> str | None:
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return None
    return data if isinstance(data, str) and data.startswith("UPID:") else None
