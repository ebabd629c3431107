"""Every GET of the API schema that has no dedicated route: readers by concern, then PVE's generic shapes.

`routes.Api` calls `answer()` for a GET whose path has no `@route` handler. Readers are registered per
schema path template (`@reader("/nodes/{node}/version")`) in the modules of this package: `nodes`,
`cluster`, `storage`, `access`, `guests` (QEMU detail), `lxc`, `ceph`, `firewall`, `hardware`, `remote`
(scans of remote servers, URL and registry queries). A path
without a reader gets the
shape a real cluster gives for a concept the simulator does not model:

- a directory index (the schema lists static children, `links: [{rel: child, href: "{name}"}]`):
  one entry per child, as PVE's hard-coded index methods return;
- a collection (an array, only a `{param}` child, or no child at all): `[]`, e.g. no pools, no HA
  resources, no replication jobs, no firewall rules;
- anything else has a reader; without one it stays 501 (`tests/sim/test_schema_walk.py` fails then).

Permissions: the schema's `permissions` (`user => 'all'`, `check` with `perm`/`any`, `and`/`or`) are
applied before the reader runs, as pve-access-control RPCEnvironment.pm::check_api2_permissions does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import READERS, Ctx, check_permissions, generic, reader

if TYPE_CHECKING:
    from ..backend import Backend, Caller
    from ...schema import Endpoint, Schema

__all__ = ["Ctx", "answer", "reader", "serves"]


def _load_modules() -> None:
    from . import access, ceph, cluster, firewall, guests, hardware, lxc, nodes, remote, storage  # noqa: F401 - register


_loaded = False


def answer(backend: Backend, schema: Schema, endpoint: Endpoint, local: str, caller: Caller,
           params: dict[str, Any], routed: frozenset[str] = frozenset()) -> Any:
    """The `data` for a GET without a route (raises ApiFail as a handler does)."""
    global _loaded
    if not _loaded:
        _load_modules()
        _loaded = True
    ctx = Ctx(backend, schema, local, caller, params, endpoint, routed)
    check_permissions(ctx, endpoint.info.get("permissions") or {})
    fn = READERS.get(endpoint.path if endpoint.method == "GET" else f"{endpoint.method} {endpoint.path}")
    if fn is not None:
        with backend.mu:
            return fn(ctx)
    return generic(ctx)


def serves(method: str, path: str) -> bool:
    """Every GET; another method only where a reader is registered as "METHOD /path" (read-only
    POSTs such as the guest agent's ping)."""
    global _loaded
    if not _loaded:
        _load_modules()
        _loaded = True
    return method == "GET" or f"{method} {path}" in READERS
