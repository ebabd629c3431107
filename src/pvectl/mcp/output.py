"""Keeping results small and errors readable.

- A hard cap on every result's JSON size (`MAX_CHARS`): a list that does not fit is cut, marked
  `truncated: true`, and carries the `next_cursor` to go on from. Clients reject big results (some
  above ~25k tokens) and every token costs the agent context.
- Concise defaults: list tools return a few fields per item unless asked for more (`fields`).
- Errors are tool errors whose text is the CLI's JSON error object (`{"error": {"type", "message",
  "hint", "upid"?, "node"?}}`), so an agent reads the same shape from `pvectl` and from `pvectl mcp`.
- Text from the cluster (VM names, descriptions, log lines) only ever travels inside JSON string
  values; nothing here formats it into prose.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

MAX_CHARS = 20_000          # ~5k tokens: far under the ~25k-token limit some clients enforce
CURSOR_PREFIX = "after:"


def size(payload: Any) -> int:
    return len(json.dumps(payload, separators=(",", ":"), default=str))


def fit(items: Sequence[Any], build: Callable[[list[Any], bool], dict[str, Any]],
        limit: int = MAX_CHARS) -> dict[str, Any]:
    """`build(kept_items, truncated)` for the longest prefix of `items` whose result fits `limit`
    characters of JSON (binary search; the envelope is rebuilt for each try)."""
    whole = build(list(items), False)
    if size(whole) <= limit:
        return whole
    lo, hi = 0, len(items)      # items[:lo] fits, items[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if size(build(list(items[:mid]), True)) <= limit:
            lo = mid
        else:
            hi = mid
    return build(list(items[:lo]), True)


def enforce_cap(data: dict[str, Any], limit: int = MAX_CHARS) -> dict[str, Any]:
    """The backstop for results that are not pages (a drain plan of a big node, a diagnosis): while
    the JSON is over `limit`, the biggest list in it (top level or one level down) loses its second
    half; what was cut is named in `truncated_lists` and `truncated` is set."""
    if size(data) <= limit:
        return data
    data = json.loads(json.dumps(data, default=str))          # a copy we may cut
    cut: dict[str, int] = {}
    while size(data) > limit:
        lists = [(size(v), key, None, v) for key, v in data.items() if isinstance(v, list) and v]
        lists += [(size(v), key, sub, v) for key, d in data.items() if isinstance(d, dict)
                  for sub, v in d.items() if isinstance(v, list) and v]
        if not lists:
            break
        _, key, sub, biggest = max(lists, key=lambda t: t[0])
        name = key if sub is None else f"{key}.{sub}"
        cut.setdefault(name, len(biggest))
        del biggest[max(len(biggest) // 2, 0) if len(biggest) > 1 else 0:]
    data["truncated"] = True
    data["truncated_lists"] = {name: f"{len(_get(data, name))} of {n} kept" for name, n in cut.items()}
    return data


def _get(data: dict[str, Any], dotted: str) -> list[Any]:
    key, _, sub = dotted.partition(".")
    value = data[key][sub] if sub else data[key]
    return value if isinstance(value, list) else []


def cut_text(text: str, limit: int) -> str:
    """One string value at most `limit` characters, marked when cut."""
    return text if len(text) <= limit else text[: max(limit - 16, 0)] + "…[truncated]"


def pick(record: dict[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    return dict(record) if fields is None else {k: record[k] for k in fields if k in record}


def cursor_after(key: int | str) -> str:
    return f"{CURSOR_PREFIX}{key}"


def parse_cursor(cursor: str | None) -> int | None:
    """A cursor from `cursor_after` -> the key to continue after (None: from the start)."""
    from ..errors import UsageError

    if not cursor:
        return None
    text = cursor[len(CURSOR_PREFIX):] if cursor.startswith(CURSOR_PREFIX) else ""
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"invalid cursor {cursor!r}", hint="pass the next_cursor value of the previous result")
    return int(text)


class ToolFailure(Exception):
    """A tool's error, answered as an error result whose text is exactly the JSON error object."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def failure(exc: BaseException) -> ToolFailure:
    return ToolFailure(error_json(exc))


def error_json(exc: BaseException) -> str:
    """The JSON error text of a tool error: the library's typed error (type, message, hint, upid, node),
    or, for anything else, its type and a redacted message."""
    from ..errors import PvectlError, redact

    if isinstance(exc, PvectlError):
        return json.dumps(exc.to_dict())
    return json.dumps({"error": {"type": "InternalError", "message": f"{type(exc).__name__}: {redact(str(exc))}",
                                 "hint": "report this as a bug in pvectl"}})
