"""Every command has help, is listed by its group, and is in the README's command reference."""

from __future__ import annotations

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


@pytest.mark.parametrize("group,cmd", ALL)
def test_every_command_is_in_the_readme(group: str, cmd: str | None) -> None:
    assert f"`{group}" in README or f"| `{group}" in README, group
    if cmd:
        assert cmd in README, (group, cmd)


def test_the_partial_parser_knows_what_the_full_one_knows() -> None:
    # start-up builds only the named command's parser; it must accept the same command line
    full = build_parser(("vm", "list"))
    args = full.parse_args(["-o", "json", "vm", "list", "--status", "running", "--templates"])
    assert (args.group, args.cmd, args.status, args.templates, args.output) == ("vm", "list", "running", True, "json")
    top = build_parser()
    choices = next(a.choices for a in top._actions if hasattr(a, "choices") and a.choices and "vm" in a.choices)
    assert set(choices) == set(COMMANDS)
