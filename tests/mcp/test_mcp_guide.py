"""`pvectl guide`: generated from the command definitions; every command and every exit code appears."""

from __future__ import annotations

import re
import subprocess
import sys

from pvectl.cli.guide import RECIPES, text
from pvectl.cli.main import COMMANDS


def test_every_command_appears_with_its_arguments() -> None:
    guide = text()
    for group, cmds in COMMANDS.items():
        for cmd in cmds or ("",):
            line = f"pvectl {group} {cmd}".rstrip()
            assert re.search(rf"^- `{re.escape(line)}[ `]", guide, re.M), line
    assert "`pvectl vm delete VM [--allow-template]" in guide
    assert "`pvectl vm migrate VM TARGET" in guide and "[--check]" in guide


def test_safety_model_exit_codes_and_error_object() -> None:
    guide = text()
    for code in range(6):
        assert re.search(rf"^\| {code} \|", guide, re.M), code
    assert '{"error": {"type": "GuardRefused", "message": "...", "hint": "..."' in guide
    assert "- GuardRefused: 3" in guide and "- TaskTimeout: 4" in guide and "- NodeUnreachable: 5" in guide
    assert "| delete | --yes |" in guide


def test_recipes_name_real_commands() -> None:
    for _, steps in RECIPES:
        for step in steps:
            words = step.split()
            assert words[0] == "pvectl"
            group = words[1]
            assert group in COMMANDS, step
            if COMMANDS[group]:
                assert words[2] in COMMANDS[group], step
    seeded = {title for title, _ in RECIPES}
    assert {"Delete (confirm VMID and name with the user first)", "Migrate", "A task hangs", "Resize"} <= seeded


def test_cli_prints_it() -> None:
    out = subprocess.run([sys.executable, "-m", "pvectl.cli.main", "guide"], capture_output=True, text=True,
                         check=True).stdout
    assert out == text()
