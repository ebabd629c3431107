"""Every command has help, is listed by its group, and is in the README's command reference."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pvectl.cli.main import COMMANDS, build_parser, main

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
ALL = [(g, c) for g, cmds in COMMANDS.items() for c in (cmds or (None,))]


@pytest.mark.parametrize("group,cmd", ALL)
def test_every_command_has_help(group: str, cmd: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [group] + ([cmd] if cmd else []) + ["--help"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: pvectl {group}" + (f" {cmd}" if cmd else ""))
    if (group, cmd) != ("sim", "serve"):     # the simulator has its own options (pvectl.sim.serve)
        assert "--dry-run" in out and "--output" in out  # the global options work on every command


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    """The sub-commands a parser really has (its subparsers action's choices, in order)."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def _listed(help_text: str) -> list[str]:
    """The sub-commands a --help text lists under "positional arguments" (one per 4-space line)."""
    section = help_text.split("positional arguments:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^    (\S+)", section, flags=re.M)


def _readme_commands() -> set[tuple[str, str | None]]:
    """(group, command) pairs in the first column of the README's command reference table:
    `vm start\\|stop VM...` documents vm start and vm stop; `audit` a group without commands."""
    reference = README.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    documented: set[tuple[str, str | None]] = set()
    for cell in re.findall(r"^\| `([^`]+)` \|", reference, flags=re.M):
        words = cell.split()
        cmds = words[1].split("\\|") if len(words) > 1 and words[1][:1].islower() else [None]
        documented.update((words[0], c) for c in cmds)
    return documented


def test_top_level_help_lists_exactly_the_groups(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert _listed(capsys.readouterr().out) == _choices(build_parser()) == list(COMMANDS)


@pytest.mark.parametrize("group", [g for g, cmds in COMMANDS.items() if cmds])
def test_group_help_lists_exactly_its_commands(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([group, "--help"])
    group_parser = build_parser((group, None))._subparsers._group_actions[0].choices[group]  # type: ignore[union-attr]
    assert _listed(capsys.readouterr().out) == _choices(group_parser) == list(COMMANDS[group])


def test_readme_command_reference_documents_exactly_the_commands() -> None:
    documented = _readme_commands()
    assert sorted(set(ALL) - documented, key=str) == []   # a command missing from the reference
    assert sorted(documented - set(ALL), key=str) == []   # a documented command that does not exist


def test_the_partial_parser_knows_what_the_full_one_knows() -> None:
    # start-up builds only the named command's parser; it must accept the same command line
    full = build_parser(("vm", "list"))
    args = full.parse_args(["-o", "json", "vm", "list", "--status", "running", "--templates"])
    assert (args.group, args.cmd, args.status, args.templates, args.output) == ("vm", "list", "running", True, "json")
    top = build_parser()
    choices = next(a.choices for a in top._actions if hasattr(a, "choices") and a.choices and "vm" in a.choices)
    assert set(choices) == set(COMMANDS)
