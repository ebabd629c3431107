"""The readers' registry (`@reader`), the context of one GET, permission checks and PVE's generic
shapes for what the simulator does not model (see the package's docstring)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..backend import ApiFail, Caller, perm_fail

if TYPE_CHECKING:
    from ..backend import Backend
    from ...schema import Endpoint, Schema


@dataclass
class Ctx:
    """One GET: the backend, which node answers, who asks, the validated parameters."""

    backend: Backend
    schema: Schema
    local: str
    caller: Caller
    params: dict[str, Any]
    endpoint: Endpoint
    routed: frozenset[str] = frozenset()     # GET paths with a route of their own (`routes.Api`)

    @property
    def node(self) -> str:
        return str(self.params["node"])

    def check(self, path: str, *privs: str) -> None:
        self.backend.check(self.caller.token, path, *privs)


Reader = Callable[[Ctx], Any]
READERS: dict[str, Reader] = {}


def reader(*paths: str) -> Callable[[Reader], Reader]:
    def deco(fn: Reader) -> Reader:
        for path in paths:
            READERS[path] = fn
        return fn
    return deco


_PARAM_RE = re.compile(r"\{([^}]+)\}")


def _fill(path: str, params: dict[str, Any]) -> str:
    return _PARAM_RE.sub(lambda m: str(params.get(m.group(1), m.group(0))), path)


def _allowed(ctx: Ctx, check: Any) -> bool:
    """pve-access-control RPCEnvironment.pm::check_api2_permissions for the forms the schema uses."""
    if not isinstance(check, list) or not check:
        return True
    kind = check[0]
    if kind == "perm":
        path, privs = _fill(check[1], ctx.params), list(check[2])
        opts = dict(zip(check[3::2], check[4::2]))
        have = ctx.backend.privileges(ctx.caller.token, path)
        return any(p in have for p in privs) if opts.get("any") else all(p in have for p in privs)
    if kind == "and":
        return all(_allowed(ctx, sub) for sub in check[1:])
    if kind == "or":
        return any(_allowed(ctx, sub) for sub in check[1:])
    # userid-param, userid-group, ...: the simulated tokens all belong to root@pam
    return True


def check_permissions(ctx: Ctx, permissions: dict[str, Any]) -> None:
    """RPCEnvironment.pm::check_api2_permissions: `user => 'all'` (or 'world') lets every
    authenticated caller in, else the `check` decides; no check at all is root@pam only (API tokens
    never are root@pam)."""
    if permissions.get("user") in ("all", "world"):
        return
    check = permissions.get("check")
    if check is None:
        raise ApiFail("Permission check failed (user != root@pam)", 403)
    if _allowed(ctx, check):
        return
    if isinstance(check, list) and check and check[0] == "perm":
        raise perm_fail(_fill(check[1], ctx.params), check[2])
    raise ApiFail("Permission check failed", 403)


def children(schema: Schema, template: str) -> tuple[list[str], bool]:
    """The static child names of a schema path, and whether it has a `{param}` child too."""
    node = schema._root  # noqa: SLF001 - the schema tree is this package's index source
    for seg in [s for s in template.split("/") if s]:
        child = node.var_child if seg.startswith("{") else node.static[seg]
        assert child is not None
        node = child
    return sorted(node.static), node.var_child is not None


def index(ctx: Ctx, key: str | None = None) -> list[dict[str, str]]:
    """A directory index: `[{<key>: child}, ...]` with the key the schema's link names."""
    names, _ = children(ctx.schema, ctx.endpoint.path)
    if key is None:
        key = index_key(ctx.endpoint)
    return [{key: n} for n in names]


def index_key(endpoint: Endpoint) -> str:
    returns = endpoint.info.get("returns") or {}
    for link in returns.get("links") or []:
        m = _PARAM_RE.fullmatch(str(link.get("href", "")))
        if m:
            return m.group(1)
    props = (returns.get("items") or {}).get("properties") or {}
    return next(iter(props), "subdir")


def _served(ctx: Ctx, path: str) -> bool:
    return path in READERS or path in ctx.routed


# What PVE answers for a missing object, by the collection it would be in (the path up to the
# `{param}`, matched at its end): ("die", text) -> 500, ("param", text) -> 400 with the error on the
# parameter. Sources: pve-manager API2/Pool.pm, Backup.pm, ReplicationConfig.pm, Replication.pm,
# Cluster/Mapping/{PCI,USB,Dir}.pm, ACMEPlugin.pm, ACMEAccount.pm; pve-access-control API2/Group.pm,
# Jobs/RealmSync.pm; pve-ha-manager API2/HA/{Resources,Groups,Rules}.pm; pve-firewall
# API2/Firewall/{IPSet,Rules,Aliases}.pm; pve-network Network/SDN/{Zones,Vnets,Subnets,...}.pm.
MISSING: dict[str, tuple[str, str]] = {
    "/pools": ("die", "pool '{v}' does not exist"),
    "/access/groups": ("die", "group '{v}' does not exist"),
    "/cluster/ha/resources": ("die", "no such resource '{v}'"),
    "/cluster/ha/groups": ("die", "no such ha group '{v}'"),
    "/cluster/ha/rules": ("die", "no such ha rule '{v}'"),
    "/firewall/groups": ("die", "no such security group '{v}'"),
    "/firewall/ipset": ("die", "no such IPSet '{v}'"),
    "/firewall/aliases": ("param", "no such alias"),
    "/cluster/backup": ("param", "No such job '{v}'"),
    "/cluster/jobs/realm-sync": ("param", "No such job '{v}'"),
    "/cluster/replication": ("die", "no such replication job '{v}'"),
    "/replication": ("die", "no such replication job '{v}'"),
    "/cluster/mapping/pci": ("die", "mapping '{v}' not found"),
    "/cluster/mapping/usb": ("die", "mapping '{v}' not found"),
    "/cluster/mapping/dir": ("die", "mapping '{v}' not found"),
    "/cluster/acme/plugins": ("die", "ACME plugin '{v}' not defined"),
    "/cluster/acme/account": ("die", "ACME account config file '{v}' does not exist."),
    "/cluster/sdn/vnets": ("die", "sdn vnet '{v}' does not exist"),
    "/subnets": ("die", "sdn subnet '{v}' does not exist"),
    "/cluster/sdn/zones": ("die", "sdn '{v}' does not exist"),
    "/cluster/sdn/controllers": ("die", "sdn '{v}' does not exist"),
    "/cluster/sdn/dns": ("die", "sdn '{v}' does not exist"),
    "/cluster/sdn/ipams": ("die", "sdn '{v}' does not exist"),
}


def _missing(ctx: Ctx, name: str, parent: str) -> ApiFail:
    value = str(ctx.params[name])
    for suffix, (kind, text) in MISSING.items():
        if parent.endswith(suffix):
            msg = text.format(v=value)
            return ApiFail("Parameter verification failed.", 400, {name: msg}) if kind == "param" else ApiFail(msg)
    return ApiFail(f"{name} '{value}' does not exist")


def _absent_param(ctx: Ctx) -> tuple[str, str] | None:
    """The first `{param}` of the path whose collection no reader serves: the simulator keeps such
    collections empty (no pools, HA resources, firewall aliases, SDN zones, ...), so nothing by that
    name exists."""
    segs = [s for s in ctx.endpoint.path.split("/") if s]
    for i, seg in enumerate(segs):
        m = _PARAM_RE.fullmatch(seg)
        if m and i > 0:
            parent = "/" + "/".join(segs[:i])
            if not _served(ctx, parent) and not _PARAM_RE.fullmatch(segs[i - 1]):
                return m.group(1), parent
    return None


def generic(ctx: Ctx) -> Any:
    absent = _absent_param(ctx)
    if absent is not None:
        raise _missing(ctx, *absent)
    returns = ctx.endpoint.info.get("returns") or {}
    if returns.get("type") == "array":
        names, has_var = children(ctx.schema, ctx.endpoint.path)
        if names and returns.get("links"):
            return index(ctx)
        return []
    # no reader and no generic shape: as before, HTTPServer.pm's answer for a missing handler
    raise ApiFail(f"Method 'GET {_fill(ctx.endpoint.path, ctx.params)}' not implemented", 501)
