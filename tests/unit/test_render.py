"""Output rendering: JSON shape, plain tables, and the terminal table for small and large row counts."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import pytest

from pvectl.render import RICH_MAX_ROWS, Column, emit, table, to_json

COLUMNS = [Column("vmid", "VMID"), Column("name", "NAME"), Column("tags", "TAGS")]


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def vms(n: int) -> list[dict[str, Any]]:
    return [{"vmid": 100 + i, "name": f"web-{i:05d}", "tags": ["prod", "web"] if i % 2 else None}
            for i in range(n)]


def test_json_list_is_one_compact_element_per_line() -> None:
    data = vms(3)
    text = to_json(data)
    assert json.loads(text) == data
    assert text.splitlines() == ["[", *(f"  {json.dumps(v)}," for v in data[:-1]), f"  {json.dumps(data[-1])}", "]"]


def test_json_object_and_empty_list_are_indented() -> None:
    assert to_json({"vmid": 100, "tags": ["a"]}) == '{\n  "vmid": 100,\n  "tags": [\n    "a"\n  ]\n}\n'
    assert to_json([]) == "[]\n"


def test_json_unknown_types_become_strings_and_text_is_ascii() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    out = io.StringIO()
    emit([{"x": Odd(), "name": "dé\"v"}], "json", out=out)
    assert json.loads(out.getvalue()) == [{"x": "odd", "name": "dé\"v"}]
    assert out.getvalue().isascii()


def test_plain_table_is_aligned_without_escapes() -> None:
    out = io.StringIO()
    table(vms(2), COLUMNS, out=out)
    assert out.getvalue() == ("VMID  NAME       TAGS\n"
                              "100   web-00000  -\n"
                              "101   web-00001  prod,web\n")


def test_small_table_on_a_terminal_uses_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    import rich.table

    made: list[int] = []
    real = rich.table.Table.add_row
    monkeypatch.setattr(rich.table.Table, "add_row", lambda self, *cells, **kw: made.append(1) or real(self, *cells))
    out = Terminal()
    table(vms(RICH_MAX_ROWS), COLUMNS, out=out)
    assert len(made) == RICH_MAX_ROWS
    assert "web-00099" in out.getvalue()


def test_large_table_on_a_terminal_is_plain_rows_with_a_bold_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setitem(sys.modules, "rich.table", None)   # importing rich's Table now fails
    rows = vms(RICH_MAX_ROWS + 1)
    tty, pipe = Terminal(), io.StringIO()
    table(rows, COLUMNS, out=tty)
    table(rows, COLUMNS, out=pipe)
    tty_lines, pipe_lines = tty.getvalue().splitlines(), pipe.getvalue().splitlines()
    assert tty_lines[0] == f"\x1b[1m{pipe_lines[0]}\x1b[0m"
    assert tty_lines[1:] == pipe_lines[1:] and len(pipe_lines) == RICH_MAX_ROWS + 2


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_large_table_header_has_no_escapes_when_colour_is_off(env: dict[str, str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = Terminal()
    table(vms(RICH_MAX_ROWS + 1), COLUMNS, out=out)
    assert out.getvalue().startswith("VMID  NAME       TAGS\n")
    assert "\x1b" not in out.getvalue()
