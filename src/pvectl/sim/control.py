"""The simulator's control API: `/_sim/...` on every listener, JSON in and out, loopback clients only.

No real Proxmox VE answers under `/_sim`, so it cannot collide with the API (which lives under
`/api2`). It takes no PVE authentication; the listener refuses non-loopback clients. Every route maps
to a `Cluster` method:

    GET    /_sim/state                             summary: nodes, listeners, membership, faults
    GET    /_sim/requests?since=N&node=X&limit=N   recent requests (method, path, node, status, ...)
    DELETE /_sim/requests                          clear that log
    POST   /_sim/nodes/{node}/stop                 listener down + corosync membership offline
    POST   /_sim/nodes/{node}/start                membership online + listener up
    POST   /_sim/nodes/{node}/stop-listener        only pveproxy down
    POST   /_sim/nodes/{node}/start-listener
    POST   /_sim/nodes/{node}/slow                 {"seconds": 0.5}   (0 clears)
    POST   /_sim/nodes/{node}/hang                 {"seconds": null}  (null = until unhang)
    POST   /_sim/nodes/{node}/unhang
    POST   /_sim/nodes/{node}/resources            {"mem_total", "mem_used", "cpu", "maxcpu"}
    POST   /_sim/fail-next                         {"count", "status", "message", "method", "path", "node"}
    POST   /_sim/drop-next                         {"count", "method", "path", "node"}
    POST   /_sim/drop-answer-next                  {"count", "method", "path", "node"}  (carried out, no answer)
    POST   /_sim/truncate-answer-next              {"count", "method", "path", "node"}  (carried out, the
                                                   answer's head and half its body, then closed)
    POST   /_sim/faults/clear                      {"node": null}
    POST   /_sim/vms/{vmid}/hold-lock              {"seconds": null, "kind": "backup"} -> {"upid"}
                                                   (a kind sets `lock: <kind>`; "" holds the flock)
    POST   /_sim/vms/{vmid}/release-lock
    POST   /_sim/fail-task                         {"type", "message", "times"}
    POST   /_sim/tokens                            {"tokenid", "secret"?, "privs"?} -> {"tokenid", "secret"}
    POST   /_sim/users                             {"userid", "password"?, "privs"?} -> {"userid", "password"}
    POST   /_sim/save                              -> {"path"}
    GET    /_sim/nodes/{node}/host                 processes, flock holders, configs (sim/host.py)
    POST   /_sim/nodes/{node}/qm-unlock            {"vmid"}: `qm unlock` on that node
    POST   /_sim/vms/{vmid}/set-lock               {"kind": "backup"}: `qm set --lock` (null clears)
    POST   /_sim/tasks/stall                       {"upid", "stat": "D", "wchan"}: a hung worker

Answers are `{"data": ...}`; errors `{"error": "..."}` with 400 (bad input) or 404 (unknown route,
node or VM).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from . import wire

if TYPE_CHECKING:
    from .backend import Backend
    from .faults import Faults


class Cluster(Protocol):
    """What the control API drives: a running simulated cluster (`sim.cluster.Cluster`)."""

    @property
    def nodes(self) -> dict[str, tuple[str, int]]: ...

    @property
    def backend(self) -> Backend: ...

    @property
    def faults(self) -> Faults: ...

    def requests_log(self, *, since: int = 0, node: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]: ...

    def clear_requests(self) -> None: ...

    def summary(self) -> dict[str, Any]: ...

    def save_state(self, path: str | os.PathLike[str] | None = None) -> Path: ...

    def slow_node(self, node: str, seconds: float) -> None: ...

    def hang_node(self, node: str, seconds: float | None = None) -> None: ...

    def set_node(self, node: str, *, mem_total: int | None = None, mem_used: int | None = None,
                 cpu: float | None = None, maxcpu: int | None = None) -> None: ...

    def fail_next(self, count: int = 1, *, status: int = 500, message: str | None = None,
                  method: str | None = None, path: str | None = None, node: str | None = None) -> None: ...

    def drop_next(self, count: int = 1, *, method: str | None = None, path: str | None = None,
                  node: str | None = None) -> None: ...

    def clear_faults(self, node: str | None = None) -> None: ...

    def hold_lock(self, vmid: int, *, seconds: float | None = None, kind: str = "backup") -> str: ...

    def release_lock(self, vmid: int) -> None: ...

    def fail_task(self, *, type: str, message: str, times: int = 1) -> None: ...  # noqa: A002

    def add_token(self, tokenid: str, secret: str | None = None, *,
                  privs: dict[str, list[str]] | None = None) -> str: ...

    def add_user(self, userid: str, password: str | None = None, *,
                 privs: dict[str, list[str]] | None = None) -> str: ...

After = Callable[[], None] | None
_Route = tuple[str, re.Pattern[str], Callable[..., tuple[Any, After]]]


class _NotFound(Exception):
    pass


def _json(status: int, payload: Any, reason: str | None = None) -> wire.Response:
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return wire.Response(status, reason or ("OK" if status < 400 else "error"), body)


class ControlApi:
    """Serves `/_sim/...` for a `Cluster` (the listener calls `handle`)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        c = cluster
        n = r"(?P<node>[A-Za-z0-9][A-Za-z0-9.-]*)"
        self._routes: list[_Route] = [
            ("GET", re.compile(r"/_sim/state"), lambda p: (c.summary(), None)),
            ("GET", re.compile(r"/_sim/requests"), self._requests),
            ("DELETE", re.compile(r"/_sim/requests"), lambda p: (c.clear_requests(), None)),
            ("POST", re.compile(rf"/_sim/nodes/{n}/stop"), self._node_action("stop_node", deferred=True)),
            ("POST", re.compile(rf"/_sim/nodes/{n}/start"), self._node_action("start_node")),
            ("POST", re.compile(rf"/_sim/nodes/{n}/stop-listener"), self._node_action("stop_listener", deferred=True)),
            ("POST", re.compile(rf"/_sim/nodes/{n}/start-listener"), self._node_action("start_listener")),
            ("POST", re.compile(rf"/_sim/nodes/{n}/slow"), self._slow),
            ("POST", re.compile(rf"/_sim/nodes/{n}/hang"), self._hang),
            ("POST", re.compile(rf"/_sim/nodes/{n}/unhang"), self._node_action("unhang_node")),
            ("POST", re.compile(rf"/_sim/nodes/{n}/resources"), self._resources),
            ("POST", re.compile(r"/_sim/fail-next"), self._fail_next),
            ("POST", re.compile(r"/_sim/drop-next"), self._drop_next),
            ("POST", re.compile(r"/_sim/drop-answer-next"), self._drop_answer_next),
            ("POST", re.compile(r"/_sim/truncate-answer-next"), self._truncate_answer_next),
            ("POST", re.compile(r"/_sim/faults/clear"), lambda p: (c.clear_faults(_opt_str(p, "node")), None)),
            ("POST", re.compile(r"/_sim/vms/(?P<vmid>\d+)/hold-lock"), self._hold_lock),
            ("POST", re.compile(r"/_sim/vms/(?P<vmid>\d+)/release-lock"),
             lambda p: (c.release_lock(int(p["vmid"])), None)),
            ("POST", re.compile(r"/_sim/fail-task"), self._fail_task),
            ("POST", re.compile(r"/_sim/tokens"), self._add_token),
            ("POST", re.compile(r"/_sim/users"), self._add_user),
            ("POST", re.compile(r"/_sim/save"), lambda p: ({"path": str(c.save_state())}, None)),
            *self._host_routes(n),
        ]

    def _host_routes(self, n: str) -> list[_Route]:
        from .host import host_view

        def view() -> Any:
            return host_view(self.cluster.backend)
        return [
            ("GET", re.compile(rf"/_sim/nodes/{n}/host"),
             lambda p: (view().summary(self._check_node(p["node"])), None)),
            ("POST", re.compile(rf"/_sim/nodes/{n}/qm-unlock"),
             lambda p: (view().qm_unlock(self._check_node(p["node"]), int(p["vmid"])), None)),
            ("POST", re.compile(r"/_sim/vms/(?P<vmid>\d+)/set-lock"),
             lambda p: (view().set_lock(int(p["vmid"]), _opt_str(p, "kind")), None)),
            ("POST", re.compile(r"/_sim/tasks/stall"),
             lambda p: (view().stall(str(p["upid"]), str(p.get("stat", "D")),
                                     str(p.get("wchan") or "rpc_wait_bit_killable")), None)),
        ]

    def handle(self, local_node: str, request: wire.Request) -> tuple[wire.Response, After]:
        path = request.path.rstrip("/")
        known_path = False
        for method, pattern, fn in self._routes:
            m = pattern.fullmatch(path)
            if not m:
                continue
            known_path = True
            if method != request.method:
                continue
            try:
                params = self._params(request)
                params.update(m.groupdict())
                data, after = fn(params)
            except _NotFound as e:
                return _json(404, {"error": str(e)}, "not found"), None
            except KeyError as e:
                msg = e.args[0] if e.args and isinstance(e.args[0], str) else f"missing or unknown {e}"
                return _json(404 if "no such" in msg else 400, {"error": msg}, "bad request"), None
            except (ValueError, TypeError, re.error) as e:
                return _json(400, {"error": str(e)}, "bad request"), None
            return _json(200, {"data": data}), after
        if known_path:
            return _json(405, {"error": f"method {request.method} not allowed on {path}"}, "method not allowed"), None
        return _json(404, {"error": f"no control route {request.method} {path}"}, "not found"), None

    @staticmethod
    def _params(request: wire.Request) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if request.body:
            try:
                body = json.loads(request.body)
            except json.JSONDecodeError as e:
                raise ValueError(f"request body is not JSON: {e}") from None
            if not isinstance(body, dict):
                raise ValueError("request body must be a JSON object")
            params.update(body)
        params.update(dict(parse_qsl(request.query, keep_blank_values=True)))
        return params

    def _check_node(self, node: str) -> str:
        if node not in self.cluster.nodes:
            raise _NotFound(f"no such node '{node}'")
        return node

    def _node_action(self, name: str, *, deferred: bool = False) -> Callable[[dict[str, Any]], tuple[Any, After]]:
        def run(p: dict[str, Any]) -> tuple[Any, After]:
            node = self._check_node(p["node"])
            fn = getattr(self.cluster, name)
            if deferred:
                # runs after the answer is written: the listener serving this request may be the one stopped
                return {"node": node, "action": name}, (lambda: fn(node))
            fn(node)
            return {"node": node, "action": name}, None
        return run

    def _requests(self, p: dict[str, Any]) -> tuple[Any, After]:
        since = int(p.get("since", 0) or 0)
        limit = p.get("limit")
        return self.cluster.requests_log(since=since, node=_opt_str(p, "node"),
                                         limit=None if limit in (None, "") else int(limit)), None

    def _slow(self, p: dict[str, Any]) -> tuple[Any, After]:
        node = self._check_node(p["node"])
        self.cluster.slow_node(node, float(p.get("seconds", 0) or 0))
        return {"node": node}, None

    def _hang(self, p: dict[str, Any]) -> tuple[Any, After]:
        node = self._check_node(p["node"])
        seconds = p.get("seconds")
        self.cluster.hang_node(node, None if seconds in (None, "") else float(seconds))
        return {"node": node}, None

    def _resources(self, p: dict[str, Any]) -> tuple[Any, After]:
        node = self._check_node(p["node"])
        kw: dict[str, Any] = {}
        for key, conv in (("mem_total", int), ("mem_used", int), ("cpu", float), ("maxcpu", int)):
            if p.get(key) is not None:
                kw[key] = conv(p[key])
        self.cluster.set_node(node, **kw)
        return {"node": node, **kw}, None

    def _fail_next(self, p: dict[str, Any]) -> tuple[Any, After]:
        node = _opt_str(p, "node")
        if node is not None:
            self._check_node(node)
        self.cluster.fail_next(int(p.get("count", 1)), status=int(p.get("status", 500)),
                               message=_opt_str(p, "message"), method=_opt_str(p, "method"),
                               path=_opt_str(p, "path"), node=node)
        return self.cluster.faults.snapshot()["fail_next"], None

    def _drop_next(self, p: dict[str, Any]) -> tuple[Any, After]:
        node = _opt_str(p, "node")
        if node is not None:
            self._check_node(node)
        self.cluster.drop_next(int(p.get("count", 1)), method=_opt_str(p, "method"),
                               path=_opt_str(p, "path"), node=node)
        return self.cluster.faults.snapshot()["drop_next"], None

    def _drop_answer_next(self, p: dict[str, Any]) -> tuple[Any, After]:
        return self._answer_fault(self.cluster.faults.drop_answer_next, "drop_answer_next", p)

    def _truncate_answer_next(self, p: dict[str, Any]) -> tuple[Any, After]:
        return self._answer_fault(self.cluster.faults.truncate_answer_next, "truncate_answer_next", p)

    def _answer_fault(self, add: Callable[..., None], kind: str, p: dict[str, Any]) -> tuple[Any, After]:
        """A fault on the answers of the next matching requests: {"count", "method", "path", "node"}."""
        node = _opt_str(p, "node")
        if node is not None:
            self._check_node(node)
        add(int(p.get("count", 1)), method=_opt_str(p, "method"), path=_opt_str(p, "path"), node=node)
        return self.cluster.faults.snapshot()[kind], None

    def _hold_lock(self, p: dict[str, Any]) -> tuple[Any, After]:
        seconds = p.get("seconds")
        # "kind": "" holds the flock itself; a missing kind is a backup
        kind = "backup" if p.get("kind") is None else str(p["kind"])
        upid = self.cluster.hold_lock(int(p["vmid"]), seconds=None if seconds in (None, "") else float(seconds),
                                      kind=kind)
        return {"upid": upid}, None

    def _fail_task(self, p: dict[str, Any]) -> tuple[Any, After]:
        if not p.get("type") or not p.get("message"):
            raise ValueError("fail-task needs 'type' (e.g. qmclone) and 'message'")
        self.cluster.fail_task(type=str(p["type"]), message=str(p["message"]), times=int(p.get("times", 1)))
        return None, None

    def _add_token(self, p: dict[str, Any]) -> tuple[Any, After]:
        tokenid = p.get("tokenid")
        if not tokenid or "!" not in str(tokenid) or "@" not in str(tokenid):
            raise ValueError("tokenid must look like user@realm!name")
        privs = p.get("privs")
        if privs is not None and not isinstance(privs, dict):
            raise ValueError("privs must be an object {acl_path: [privilege, ...]}")
        secret = self.cluster.add_token(str(tokenid), _opt_str(p, "secret"), privs=privs)
        return {"tokenid": tokenid, "secret": secret}, None


    def _add_user(self, p: dict[str, Any]) -> tuple[Any, After]:
        userid = p.get("userid")
        if not userid or "@" not in str(userid) or "!" in str(userid) or ":" in str(userid):
            raise ValueError("userid must look like user@realm")
        privs = p.get("privs")
        if privs is not None and not isinstance(privs, dict):
            raise ValueError("privs must be an object {acl_path: [privilege, ...]}")
        password = self.cluster.add_user(str(userid), _opt_str(p, "password"), privs=privs)
        return {"userid": userid, "password": password}, None


def _opt_str(p: dict[str, Any], key: str) -> str | None:
    v = p.get(key)
    return None if v in (None, "") else str(v)
