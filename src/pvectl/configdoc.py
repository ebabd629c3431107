"""The validated cluster-config document, shared by the validator (configcheck.py, which builds it from
the YAML) and the loader (config.py, which caches it as JSON and builds the records from it): the
limits both check against, and the document's shape.

Kept apart from both so that neither imports the other's module: the loader never needs PyYAML on a
warm start, and the validator never needs the records or the cache.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, TypeGuard

__all__ = ["DEFAULT_PORT", "VMID_MIN", "VMID_MAX", "did_you_mean", "doc_ok"]

DEFAULT_PORT = 8006
VMID_MIN, VMID_MAX = 100, 999_999_999  # pve-common JSONSchema `pve-vmid`


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or ''."""
    import difflib

    m = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{m[0]}'?)" if m else ""


# The shape of a validated document (what `configcheck.validate` returns and the cache stores). A cache entry of
# any other shape (another version's, a truncated or hand-edited file) is ignored and rebuilt.
_OPT_STR = (str, type(None))
_RANGE_SHAPE = ("optional", {"start": (int,), "end": (int,)})
_CONFIG_SHAPE = {
    "path": _OPT_STR, "name": (str,), "clusters": [(str,)],
    "nodes": ("non-empty", {"name": (str,), "host": (str,), "port": (int,), "ssh_host": _OPT_STR,
                            "ssh_port": (int, type(None))}),
    "credentials": {"pass_path": _OPT_STR, "ssh_user": (str,), "token_id": _OPT_STR, "token_file": _OPT_STR},
    "tls": {"ca_file": _OPT_STR, "fingerprints": ("mapping", (str,)), "insecure": (bool,)},
    "defaults": {"storage": _OPT_STR, "network_bridge": (str,)},
    "tags": {"templates": _OPT_STR},
    "vmid_ranges": {"vms": _RANGE_SHAPE, "templates": _RANGE_SHAPE},
    "cloudinit": {"default_user": _OPT_STR, "ssh_keys_file": _OPT_STR},
}
_BLOCK_SHAPE = {"config": _CONFIG_SHAPE, "ca_file_mark": ("optional", ((int,), (str,)))}
_DOC_SHAPE = {"multi": (bool,), "blocks": ("mapping", _BLOCK_SHAPE), "default_cluster": _OPT_STR,
              "clusters_line": (int,), "path": _OPT_STR}


def _shape_ok(value: Any, shape: Any) -> bool:
    """`shape`: a dict (exactly these keys), a one-element list (a list of), a tuple of types (exact
    types: a bool is not an int), a tuple of shapes (a fixed-length list), or ("optional" | "mapping" |
    "non-empty", shape)."""
    if isinstance(shape, dict):
        return (type(value) is dict and value.keys() == shape.keys()
                and all(_shape_ok(value[k], s) for k, s in shape.items()))
    if isinstance(shape, list):
        return type(value) is list and all(_shape_ok(x, shape[0]) for x in value)
    if isinstance(shape[0], str):
        kind, inner = shape
        if kind == "optional":
            return value is None or _shape_ok(value, inner)
        if kind == "mapping":
            return type(value) is dict and all(type(k) is str and _shape_ok(v, inner) for k, v in value.items())
        return type(value) is list and len(value) > 0 and _shape_ok(value, [inner])
    if isinstance(shape[0], type):
        return type(value) in shape
    return type(value) is list and len(value) == len(shape) and all(map(_shape_ok, value, shape))


def doc_ok(doc: Any) -> TypeGuard[dict[str, Any]]:
    """True when `doc` has the shape of a validated document (a cache entry that can be used)."""
    if not _shape_ok(doc, _DOC_SHAPE) or not doc["blocks"] or (not doc["multi"] and len(doc["blocks"]) != 1):
        return False
    if doc["default_cluster"] is not None and doc["default_cluster"] not in doc["blocks"]:
        return False
    return all((b["ca_file_mark"] is not None) == bool(b["config"]["tls"]["ca_file"]) for b in doc["blocks"].values())
