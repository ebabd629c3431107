"""The official Proxmox VE API schema: path matching and parameter validation exactly as PVE does it.

Used by the library (a config is checked before it is sent, `vm set`) and by the simulator (every
request is matched and validated as pveproxy does). The schema is `data/pve-apidata-9.1.json.gz` (the
data behind Proxmox's API viewer; AGPL-3.0-or-later, see `data/NOTICE.md`), read on the first
`Schema.load()`. Validation follows pve-common `src/PVE/JSONSchema.pm` (check.py: `check_prop`,
`check_object`, `check_type`, `check_format`, `parse_property_string`; formats.py: the registered
formats) and reproduces its error texts byte for byte, including trailing newlines and the nesting of
property-string errors. Form bodies are decoded like pve-http-server
`src/PVE/APIServer/AnyEvent.pm::decode_urlencoded` (urlencoded.py; see `spec/seed-errata.md` §1,
`pve-semantics.md` C15).

Differences from the dump, handled here:
- Indexed keys (`net0`..`net31`) are collapsed in the dump to `net[n]`; they are expanded again with the
  counts from the Perl sources (`_INDEXED_COUNT`).
- Parameter schemas with an empty `properties => {}` lost that key in the dump; a missing `properties`
  is read as `{}` so that unknown parameters are refused as PVE refuses them.
- Named hash formats appear only by name (e.g. `pve-qm-ipconfig`); the ones we need are defined in
  formats.py. Named formats we do not implement are accepted (PVE would check them; see `FORMATS`).
- Perl hash order is random, so PVE lists nested errors in any order; we use schema order.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from .check import check_object, check_return_value, coerce
from .urlencoded import RepeatedValue, decode_urlencoded, split_list

__all__ = [
    "Endpoint",
    "ParamError",
    "RepeatedValue",
    "Schema",
    "decode_urlencoded",
    "split_list",
]

PARAM_ERROR_MESSAGE = "Parameter verification failed."


class ParamError(Exception):
    """HTTP 400 `Parameter verification failed.` with per-field messages (pve-common `Exception.pm::raise_param_exc`).

    `errors` maps a parameter name to PVE's message, exactly as it appears in the JSON body's `errors`.
    `message` is the body's `message` field (with its trailing newline); `str(exc)` is the reason phrase.
    """

    status = 400

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(PARAM_ERROR_MESSAGE)
        self.errors: dict[str, str] = dict(errors)
        self.message: str = PARAM_ERROR_MESSAGE + "\n"


# How many numbered keys each `name[n]` family has (the dump keeps only `name[n]`).
_INDEXED_COUNT: dict[str, int] = {
    # qemu-server: QemuServer.pm $MAX_NETS (netN and ipconfigN), Drive.pm $MAX_*_DISKS and
    # $MAX_UNUSED_DISKS, PCI.pm $MAX_HOSTPCI_DEVICES, USB.pm $MAX_USB_DEVICES, $MAX_SERIAL_PORTS,
    # $MAX_PARALLEL_PORTS, Memory.pm $MAX_NUMA, Virtiofs.pm $MAX_VIRTIOFS
    "net": 32,
    "ipconfig": 32,
    "ide": 4,
    "sata": 6,
    "scsi": 31,
    "virtio": 16,
    "unused": 256,
    "hostpci": 16,
    "usb": 14,
    "serial": 4,
    "parallel": 3,
    "numa": 8,
    "virtiofs": 10,
    # pve-container LXC/Config.pm $MAX_MOUNT_POINTS, $MAX_DEVICES (LXC netN and unusedN share the names above)
    "mp": 256,
    "dev": 256,
    # pve-cluster corosync links link0..link7; pve-manager NodeConfig.pm $MAX_ACME_DOMAINS
    "link": 8,
    "acmedomain": 5,
}
_INDEXED_DEFAULT = 32


def _expand_properties(props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, sub in props.items():
        if key.endswith("[n]"):
            base = key[:-3]
            for i in range(_INDEXED_COUNT.get(base, _INDEXED_DEFAULT)):
                out[f"{base}{i}"] = sub
        else:
            out[key] = sub
    return out


@dataclass(frozen=True, eq=False, slots=True)
class Endpoint:
    """One path and method of the API schema."""

    path: str  # template, e.g. "/nodes/{node}/qemu/{vmid}/status/start"
    method: str
    info: dict[str, Any] = field(repr=False)  # the raw schema entry for this method
    proxyto: str | None
    properties: dict[str, Any] = field(repr=False)  # parameters with indexed keys expanded
    additional_properties: Any = field(repr=False)
    required: tuple[str, ...] = field(repr=False)  # keys that are checked even when absent


def _make_endpoint(path: str, method: str, info: dict[str, Any]) -> Endpoint:
    params = info.get("parameters") or {}
    props = _expand_properties(params.get("properties") or {})
    required = tuple(
        k
        for k, s in props.items()
        if isinstance(s, dict)
        and (not (s.get("optional") or s.get("alias") or s.get("group")) or s.get("oneOf") or s.get("extends"))
    )
    return Endpoint(
        path=path,
        method=method,
        info=info,
        proxyto=info.get("proxyto"),
        properties=props,
        additional_properties=params.get("additionalProperties"),
        required=required,
    )


class _Node:
    __slots__ = ("static", "var_name", "var_child", "methods", "template")

    def __init__(self, template: str) -> None:
        self.static: dict[str, _Node] = {}
        self.var_name: str | None = None
        self.var_child: _Node | None = None
        self.methods: dict[str, Endpoint] = {}
        self.template = template


_VAR_RE = re.compile(r"^\{([^}]+)\}$")


def _segments(path: str) -> list[str]:
    # pve-common RESTHandler.pm::find_handler: `grep { length($_) > 0 } split('\/+', $path)`
    return [s for s in path.split("/") if s]


class Schema:
    """The API schema: `match` a request to its endpoint, `validate` its parameters."""

    def __init__(self, tree: list[dict[str, Any]]) -> None:
        self._root = _Node("/")
        self.endpoints: list[Endpoint] = []
        stack = list(tree)
        while stack:
            node = stack.pop()
            self._add(node["path"], node.get("info") or {})
            stack.extend(node.get("children") or [])

    @classmethod
    def load(cls, path: str | None = None) -> Schema:
        """Load the schema (default: the packaged `pve-apidata-9.1.json.gz`); cached per path."""
        return _load(path)

    def _add(self, template: str, info: dict[str, Any]) -> None:
        cur = self._root
        for seg in _segments(template):
            m = _VAR_RE.match(seg)
            if m:
                if cur.var_child is None:
                    cur.var_name = m.group(1)
                    cur.var_child = _Node(template)
                cur = cur.var_child
            else:
                cur = cur.static.setdefault(seg, _Node(template))
        cur.template = template
        for method, minfo in info.items():
            ep = _make_endpoint(template, method, minfo)
            cur.methods[method] = ep
            self.endpoints.append(ep)

    def _find(self, path: str) -> tuple[_Node, dict[str, str]] | None:
        cur = self._root
        params: dict[str, str] = {}
        for seg in _segments(path):
            nxt = cur.static.get(seg)  # an exact name wins over a `{param}` (RESTHandler.pm::map_path_to_methods)
            if nxt is None:
                if cur.var_child is None or cur.var_name is None:  # (both are set together)
                    return None
                params[cur.var_name] = seg
                nxt = cur.var_child
            cur = nxt
        return cur, params

    def match(self, method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        """Find the endpoint for `method` and `path` (relative to /api2/json, already percent-decoded
        as pveproxy does with `uri_unescape`); None when PVE would answer 501."""
        found = self._find(path)
        if found is None:
            return None
        node, params = found
        ep = node.methods.get(method.upper())
        return None if ep is None else (ep, params)

    def path_exists(self, path: str) -> bool:
        found = self._find(path)
        return found is not None and bool(found[0].methods)

    def endpoint(self, method: str, template: str) -> Endpoint:
        """The endpoint for a path template such as "/nodes/{node}/qemu"; KeyError if there is none."""
        cur = self._root
        for seg in _segments(template):
            m = _VAR_RE.match(seg)
            nxt = cur.var_child if m else cur.static.get(seg)
            if nxt is None:
                raise KeyError(f"{method} {template}")
            cur = nxt
        ep = cur.methods.get(method.upper())
        if ep is None:
            raise KeyError(f"{method} {template}")
        return ep

    def validate(self, endpoint: Endpoint, params: dict[str, object]) -> dict[str, object]:
        """Check `params` (path params plus query/body params) like `JSONSchema.pm::validate`.

        Returns the params coerced to their schema types: integer -> int, boolean -> 0/1,
        number -> float, string -> str (JSON numbers as Perl prints them; repeated form keys joined
        with NUL). A None value (a form key without `=`, or JSON null) counts as absent and is kept.
        Raises ParamError carrying every field's error.
        """
        errors: dict[str, str] = {}
        check_object("", endpoint.properties, params, endpoint.additional_properties, errors, endpoint.required)
        if errors:
            raise ParamError(errors)
        out: dict[str, object] = {}
        props = endpoint.properties
        for key, value in params.items():
            sub = props.get(key)
            out[key] = coerce(value, sub.get("type") if isinstance(sub, dict) else None)
        return out

    def check_returns(self, endpoint: Endpoint, data: object) -> list[str]:
        """Problems where `data` does not fit the endpoint's `returns` schema; [] if it fits."""
        problems: list[str] = []
        returns = endpoint.info.get("returns")
        if isinstance(returns, dict):
            check_return_value(data, returns, "data", problems)
        return problems

    def permissions(self, endpoint: Endpoint) -> dict[str, Any]:
        return endpoint.info.get("permissions") or {}


_DEFAULT_DATA = "pve-apidata-9.1.json.gz"


@functools.cache
def _load(path: str | None) -> Schema:
    # read on first use only: the CLI's start-up never pays for it (a few hundred ms: gunzip + JSON)
    import gzip
    import json

    if path is None:
        import importlib.resources

        raw = importlib.resources.files(__name__).joinpath("data", _DEFAULT_DATA).read_bytes()
    else:
        with open(path, "rb") as fh:
            raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return Schema(json.loads(raw))
