"""Ctrl-C while `pvectl` is still starting (importing its modules, parsing its arguments): one line,
exit 130, never a traceback.

The interrupt is delivered at a known point of the start-up, not at a guessed moment: an import hook
in the child sends SIGINT to its own process when the module named is about to be imported.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import os, signal, sys

    module = sys.argv[1]

    class InterruptOnImport:
        def find_spec(self, name, path=None, target=None):
            if name == module:
                os.kill(os.getpid(), signal.SIGINT)
            return None

    signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a shell (the runner may ignore it)
    sys.meta_path.insert(0, InterruptOnImport())
    sys.argv = [os.path.join(os.path.dirname(sys.executable), "pvectl"), "vm", "list"]
    from pvectl.cli.main import main
    sys.exit(main())
""")


@pytest.mark.parametrize("module", ["argparse", "pvectl.config"])
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(module: str, tmp_path: object) -> None:
    # argparse: imported by the CLI module itself (before main); pvectl.config: once the command runs
    p = subprocess.run([sys.executable, "-c", CHILD, module], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "PVECTL_CONFIG": "/nonexistent/cluster-config.yaml"})
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode in (130, -signal.SIGINT), (p.returncode, p.stderr)
    assert p.stderr == "pvectl: interrupted\n", p.stderr
    assert p.stdout == ""
