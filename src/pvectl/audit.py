"""Append-only record of every change: one JSON line per write (who, what, UPID, result).

File: `$PVECTL_AUDIT_LOG`, else `$XDG_STATE_HOME/pvectl/audit.jsonl` (default
`~/.local/state/pvectl/audit.jsonl`). Lines are appended with O_APPEND (atomic for lines this size on
local filesystems), mode 0600. Secrets never reach it: `cipassword` and anything named like a secret
are replaced by `<hidden>`, and every value passes through `errors.redact`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

from .errors import redact

HIDDEN_KEYS = frozenset({"cipassword", "password", "secret", "token", "token_value"})


def audit_path() -> str:
    explicit = os.environ.get("PVECTL_AUDIT_LOG")
    if explicit:
        return os.path.expanduser(explicit)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "pvectl", "audit.jsonl")


def clean_command(command: str) -> str:
    """The command line with the value of every `KEY=VALUE` word whose key is a secret hidden
    (`pvectl vm set web cipassword=x` -> `pvectl vm set web cipassword=<hidden>`), then redacted."""
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    out = []
    for word in words:
        key, sep, _ = word.partition("=")
        if sep and key.lstrip("-") in HIDDEN_KEYS:
            out.append(f"{key}=<hidden>")
        else:
            out.append(shlex.quote(word))
    return redact(" ".join(out))


def clean_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: ("<hidden>" if k in HIDDEN_KEYS else redact(str(v)) if isinstance(v, str) else v)
            for k, v in (params or {}).items()}


def record(*, cluster: str, token_id: str, command: str, event: str, method: str | None = None,
           path: str | None = None, params: Mapping[str, Any] | None = None, upid: str | None = None,
           result: str | None = None, node: str | None = None, via: str | None = None,
           log_path: str | None = None) -> None:
    """Append one entry to the audit log (`log_path`, else `audit_path()`). `via` says who asked:
    cli, library or mcp."""
    entry: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cluster": cluster,
                             "token_id": token_id, "command": clean_command(command), "event": event}
    if via:
        entry["via"] = via
    if method:
        entry.update(method=method, path=path, node=node, params=clean_params(params))
    if upid:
        entry["upid"] = upid
    if result is not None:
        entry["result"] = redact(result)
    path_ = os.path.expanduser(log_path) if log_path else audit_path()
    os.makedirs(os.path.dirname(path_), mode=0o700, exist_ok=True)
    fd = os.open(path_, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
    finally:
        os.close(fd)


def read(limit: int | None = None) -> list[dict[str, Any]]:
    try:
        with open(audit_path(), encoding="utf-8") as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines[-limit:] if limit else lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
