"""Output: table (on a TTY, with rich), json (the default when stdout is not a TTY), yaml.

rich is imported only when a small table goes to a terminal; json and yaml output never load it.
Large outputs stay fast: a table of more than RICH_MAX_ROWS rows is written as plain aligned rows
(rich spends about 0.6 ms per row fitting cells), and a JSON list is written one compact element per
line with the C encoder (`indent` makes `json` fall back to its pure-Python encoder).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # `typing` costs start-up time; annotations are strings (PEP 563)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TextIO

    from rich.progress import Progress

GIB = 1024**3
MIB = 1024**2
# Above this many rows a terminal table is plain aligned rows with a bold header, not a rich Table:
# 100 rows take rich ~0.08 s, 10,000 rows ~6 s.
RICH_MAX_ROWS = 100


def human_bytes(n: int | None) -> str:
    """`4G` like the seed's jq (`/ 1073741824 | floor | tostring + "G"`), `512M` below 1 GiB."""
    if n is None:
        return "-"
    if n >= GIB:
        return f"{n // GIB}G"
    return f"{n // MIB}M"


def human_duration(seconds: int | None) -> str:
    if not seconds:
        return "-"
    d, rem = divmod(int(seconds), 86400)
    h, rem = divmod(rem, 3600)
    m, _ = divmod(rem, 60)
    return f"{d}d {h}h" if d else f"{h}h {m}m" if h else f"{m}m"


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.1f}%"


class Column:
    __slots__ = ("key", "header", "fmt")

    def __init__(self, key: str, header: str | None = None, fmt: Callable[[Any], str] | None = None) -> None:
        self.key = key
        self.header = header or key.upper()
        self.fmt = fmt or (lambda v: "-" if v is None or v == "" else
                           ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))


def emit(data: Any, fmt: str, *, columns: Sequence[Column] | None = None, title: str | None = None,
         out: TextIO | None = None) -> None:
    """Write `data` (a dict, or a list of dicts for tables) in the chosen format."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(to_json(data))
    elif fmt == "yaml":
        import yaml

        out.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    else:
        rows = data if isinstance(data, list) else [data]
        cols = list(columns) if columns else [Column(k) for k in (rows[0].keys() if rows else [])]
        table(rows, cols, title=title, out=out)


def to_json(data: Any) -> str:
    """JSON text ending in a newline. A list is one compact element per line (readable, greppable,
    and encoded by the C encoder: fast for 10,000 VMs); anything else is indented by 2."""
    import json

    if isinstance(data, list) and data:
        dump = json.JSONEncoder(default=str).encode
        return "[\n  " + ",\n  ".join(map(dump, data)) + "\n]\n"
    return json.dumps(data, indent=2, default=str) + "\n"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str | None = None,
          out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[c.fmt(r.get(c.key)) for c in columns] for r in rows]
    terminal = out.isatty()
    if terminal and len(cells) <= RICH_MAX_ROWS:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, box=None, header_style="bold", pad_edge=False)
        for c in columns:
            t.add_column(c.header)
        for row in cells:
            t.add_row(*row)
        Console(file=out).print(t)
        return
    headers = [c.header for c in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if title:
        out.write(title + "\n")
    header = "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()
    out.write((f"\x1b[1m{header}\x1b[0m" if terminal and _bold_allowed() else header) + "\n")
    out.write("".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n" for r in cells))


def _bold_allowed() -> bool:
    """As rich decides: no escape sequences with NO_COLOR set or TERM=dumb."""
    import os

    return "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def kv(data: dict[str, Any], *, out: TextIO | None = None) -> None:
    """A single object as `key: value` lines (table mode for one record)."""
    out = out or sys.stdout
    width = max((len(k) for k in data), default=0)
    for k, v in data.items():
        if isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v)) or "-"
        out.write(f"{k.ljust(width)}  {'-' if v is None else v}\n")


def progress_bars(out: TextIO, *, transient: bool = False) -> Progress:
    """A started rich progress display on a terminal: description, bar, percent, elapsed time."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                    console=Console(file=out), transient=transient)
    bars.start()
    return bars
