"""URL + method -> backend, with PVE's HTTP semantics around it.

Order of work per request, as pveproxy and the REST handler do it (pve-http-server `AnyEvent.pm`,
pve-manager `HTTPServer.pm::rest_handler`; pve-semantics §12, rows 11–15, C12, C15):
authenticate (401 with an empty body, delayed 3 s) -> find the handler (501) -> proxy `/nodes/{node}`
requests for other nodes (before parameter validation) -> decode parameters (form or JSON body, query
overrides body) -> validate against the official schema (400) -> permission checks (403) -> handler
(500 for a plain `die`, or a UPID whose task may still end in error).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from . import readers, wire
from .wire import JSON_HEADERS, error_response
from .access import AccessRoutes
from .backend import ApiFail, Backend, Caller
from .resources import ResourceEncoder
from ..schema import ParamError, Schema, decode_urlencoded
from .snapshots import SnapshotRoutes, Snapshots

Handler = Callable[[str, Caller, dict[str, Any]], Any]

_ROUTES: dict[tuple[str, str], str] = {}


def route(method: str, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _ROUTES[(method, path)] = fn.__name__
        return fn
    return deco


class Result:
    """Handler data plus the optional top-level `total` (task log, task list)."""

    __slots__ = ("data", "total")

    def __init__(self, data: Any, total: int | None = None) -> None:
        self.data = data
        self.total = total


_ROUTES.update(SnapshotRoutes.ROUTES)
_ROUTES.update(AccessRoutes.ROUTES)


class Api(SnapshotRoutes, AccessRoutes):
    def __init__(self, backend: Backend, schema: Schema | None = None) -> None:
        self.backend = backend
        self.schema = schema or Schema.load()
        self._resources = ResourceEncoder(backend)
        self._routed = frozenset(path for method, path in _ROUTES if method == "GET")

    # ------------------------------------------------------------------ entry point
    def handle(self, local_node: str, request: wire.Request) -> wire.Response | wire.ProxyTo:
        b = self.backend
        path = request.path
        if not (path == "/api2/json" or path.startswith("/api2/json/")):
            return error_response(501, "no such uri", newline=False)
        rel = urllib.parse.unquote(path[len("/api2/json"):]) or "/"
        if len(rel) > 1:
            rel = rel.rstrip("/")
        method = request.method.upper()
        # ticket (cookie) or API token, CSRF on writes with a ticket; 401s wait 3 s (row 11, access.py)
        token = b.access.authenticate(request.headers, method, rel)
        if isinstance(token, wire.Response):
            return token
        found = self.schema.match(method, rel)
        handler_name = _ROUTES.get((method, found[0].path)) if found else None
        if found is not None and handler_name is None and readers.serves(method, found[0].path):
            handler_name = "_read"          # every other GET of the schema: sim/readers
        if found is None or handler_name is None:
            # HTTPServer.pm::rest_handler: no handler -> 501, message without trailing newline (row 13)
            return error_response(501, f"Method '{method} {rel}' not implemented", newline=False)
        endpoint, path_params = found
        if method in ("GET", "DELETE") and request.body:
            return error_response(501, f"Unexpected content for method '{method}'", newline=False)
        if endpoint.proxyto:
            target = path_params.get(endpoint.proxyto)
            if target and target not in (local_node, "localhost"):
                if request.headers.get("pvedisableproxy"):
                    return error_response(500, "proxy loop detected")
                if target not in b.state.nodes:
                    # C12: the proxy target is resolved before parameter validation
                    return error_response(500, f"hostname lookup '{target}' failed - failed to get address info "
                                               f"for: {target}: Name or service not known")
                return wire.ProxyTo(target)
        try:
            params = self._params(request, path_params)
            params = self.schema.validate(endpoint, params)
        except ParamError as exc:
            return error_response(400, "Parameter verification failed.", exc.errors)
        except ApiFail as exc:
            return error_response(exc.status, exc.message, exc.errors)
        caller = Caller(token)
        try:
            if handler_name == "_read":
                result = readers.answer(b, self.schema, endpoint, local_node, caller, params, self._routed)
            else:
                result = getattr(self, handler_name)(local_node, caller, params)
        except ApiFail as exc:
            return error_response(exc.status, exc.message, exc.errors)
        if isinstance(result, wire.Response):
            return result
        if not isinstance(result, Result):
            result = Result(result)
        body: dict[str, Any] = {"data": result.data}
        if result.total:
            body["total"] = result.total
        return wire.Response(200, "OK", json.dumps(body, separators=(",", ":")).encode(), list(JSON_HEADERS))

    def _params(self, request: wire.Request, path_params: dict[str, str]) -> dict[str, Any]:
        # AnyEvent.pm::extract_params: JSON body when Content-Type is exactly application/json
        # (parameters stripped), else decode_urlencoded; query parameters overwrite body ones (C15).
        params: dict[str, Any] = {}
        if request.body:
            ctype = request.headers.get("content-type", "").split(";", 1)[0].strip()
            if ctype == "application/json":
                try:
                    decoded = json.loads(request.body)
                except ValueError as exc:
                    raise ApiFail(f"malformed JSON string: {exc}") from None
                if isinstance(decoded, dict):
                    params.update(decoded)
            else:
                params.update(decode_urlencoded(request.body.decode("utf-8", "replace")))
        if request.query:
            params.update(decode_urlencoded(request.query))
        for key, value in path_params.items():
            if key in params and str(params[key]) != value:
                raise ApiFail("Parameter verification failed.", 400,
                              {key: "duplicate parameter (already defined in URI) with conflicting values!"})
            params[key] = value
        return params

    # ------------------------------------------------------------------ cluster and nodes
    @route("GET", "/version")
    def version(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        return self.backend.version()

    @route("GET", "/cluster/status")
    def cluster_status(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, "/", "Sys.Audit")
        with self.backend.mu:
            return self.backend.cluster_status(local)

    @route("GET", "/cluster/resources")
    def cluster_resources(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        # Encoded per request, without an answer cache: sim/resources.py keeps only each guest's
        # config-derived JSON, so the answer always shows the state and the time of the request.
        with self.backend.mu:
            body = self._resources.encode(caller.token, p.get("type"))
        return wire.Response(200, "OK", body, list(JSON_HEADERS))

    @route("GET", "/cluster/nextid")
    def cluster_nextid(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.nextid(p.get("vmid"))

    @route("GET", "/nodes")
    def nodes(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.nodes_list(caller.token)

    @route("GET", "/nodes/{node}/status")
    def node_status(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/nodes/{p['node']}", "Sys.Audit")
        with self.backend.mu:
            return self.backend.node_status(p["node"])

    @route("GET", "/nodes/{node}/storage")
    def node_storage(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.storage_list(p["node"], caller.token, p.get("content"), bool(p.get("enabled")))

    @route("GET", "/nodes/{node}/network")
    def node_network(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.node_network(p["node"], p.get("type"))

    @route("GET", "/access/permissions")
    def access_permissions(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        userid = p.get("userid")
        if userid and userid != caller.token.tokenid:
            # AccessControl.pm::permissions: other users need Sys.Audit on /access
            self.backend.check(caller.token, "/access", "Sys.Audit")
            token = self.backend.state.tokens.get(userid)
            if token is None:
                raise ApiFail(f"no such user/token '{userid}'")
        else:
            token = caller.token
        with self.backend.mu:
            return self.backend.access_permissions(token, p.get("path"))

    # ------------------------------------------------------------------ VMs
    @route("GET", "/nodes/{node}/qemu")
    def qemu_list(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.qemu_list(p["node"], caller.token, bool(p.get("full")))

    @route("GET", "/nodes/{node}/qemu/{vmid}")
    def vm_index(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.vm_index(p["node"], p["vmid"])

    @route("DELETE", "/nodes/{node}/qemu/{vmid}")
    def vm_delete(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.Allocate")
        with self.backend.mu:
            return self.backend.vm_delete(p["node"], p["vmid"], caller, p)

    @route("GET", "/nodes/{node}/qemu/{vmid}/status/current")
    def vm_status(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.Audit")
        with self.backend.mu:
            return self.backend.vm_status_current(p["node"], p["vmid"])

    def _power(self, op: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.PowerMgmt")
        with self.backend.mu:
            return getattr(self.backend, f"vm_{op}")(p["node"], p["vmid"], caller, p)

    @route("POST", "/nodes/{node}/qemu/{vmid}/status/start")
    def vm_start(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        return self._power("start", caller, p)

    @route("POST", "/nodes/{node}/qemu/{vmid}/status/stop")
    def vm_stop(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        return self._power("stop", caller, p)

    @route("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown")
    def vm_shutdown(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        return self._power("shutdown", caller, p)

    @route("POST", "/nodes/{node}/qemu/{vmid}/status/reboot")
    def vm_reboot(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        return self._power("reboot", caller, p)

    @route("POST", "/nodes/{node}/qemu/{vmid}/clone")
    def vm_clone(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.vm_clone(p["node"], p["vmid"], caller, p)

    @route("GET", "/nodes/{node}/qemu/{vmid}/config")
    def vm_config(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.Audit")
        if p.get("current") and p.get("snapshot"):
            # API2/Qemu.pm::vm_config raises the same error for both parameters
            msg = "cannot use 'snapshot' parameter with 'current'"
            raise ApiFail("Parameter verification failed.", 400, {"snapshot": msg, "current": msg})
        with self.backend.mu:
            if p.get("snapshot"):
                return Snapshots(self.backend).section(p["node"], p["vmid"], p["snapshot"], with_digest=True)
            return self.backend.vm_config(p["node"], p["vmid"], current=bool(p.get("current")))

    @route("PUT", "/nodes/{node}/qemu/{vmid}/config")
    def vm_config_put(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        # PUT is synchronous under the config lock and returns null (row 6); it must not hold the
        # state lock while it waits for the flock.
        return self.backend.vm_config_update(p["node"], p["vmid"], caller, p, sync=True)

    @route("POST", "/nodes/{node}/qemu/{vmid}/config")
    def vm_config_post(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        b = self.backend
        upid = b.vm_config_update(p["node"], p["vmid"], caller, p, sync=False)
        delay = p.get("background_delay")
        if delay and upid:
            # Qemu.pm::update_vm_async: wait up to background_delay s; null if the task ended OK
            task = b.engine.get(upid)
            if task is not None and task.done.wait(b.scale(float(delay))):
                status = task.record.exitstatus
                if status == "OK" or (status or "").startswith("WARNINGS"):
                    return None
                raise ApiFail(f"failed to update VM {p['vmid']}: {status}")
        return upid

    @route("GET", "/nodes/{node}/qemu/{vmid}/pending")
    def vm_pending(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.Audit")
        with self.backend.mu:
            return self.backend.vm_pending(p["node"], p["vmid"])

    @route("PUT", "/nodes/{node}/qemu/{vmid}/resize")
    def vm_resize(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.vm_resize(p["node"], p["vmid"], caller, p)

    @route("GET", "/nodes/{node}/qemu/{vmid}/migrate")
    def vm_migrate_precondition(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.migrate_precondition(p["node"], p["vmid"], caller)

    @route("POST", "/nodes/{node}/qemu/{vmid}/migrate")
    def vm_migrate(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.vm_migrate(p["node"], p["vmid"], caller, p)

    @route("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces")
    def agent_network(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        # PVE 9: VM.GuestAgent.Audit or VM.GuestAgent.Unrestricted (pve-semantics §13)
        self.backend.check(caller.token, f"/vms/{p['vmid']}", "VM.GuestAgent.Audit", "VM.GuestAgent.Unrestricted")
        with self.backend.mu:
            return self.backend.agent_network(p["node"], p["vmid"])

    # ------------------------------------------------------------------ tasks
    @route("GET", "/nodes/{node}/tasks")
    def tasks_list(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        items, total = self.backend.tasks_list(p["node"], caller.token, p)
        return Result(items, total)

    @route("GET", "/nodes/{node}/tasks/{upid}/status")
    def task_status(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        with self.backend.mu:
            return self.backend.task_status(p["node"], p["upid"], caller.token)

    @route("GET", "/nodes/{node}/tasks/{upid}/log")
    def task_log(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        if p.get("download") and ("start" in p or "limit" in p):
            raise ApiFail("'download' cannot be used together with 'start' or 'limit' parameters")
        lines, total = self.backend.task_log(p["node"], p["upid"], caller.token, int(p.get("start", 0)),
                                             int(p.get("limit", 50)))
        return Result(lines, total)

    @route("DELETE", "/nodes/{node}/tasks/{upid}")
    def task_stop(self, local: str, caller: Caller, p: dict[str, Any]) -> Any:
        self.backend.task_stop(p["node"], p["upid"], caller.token)
        return None
