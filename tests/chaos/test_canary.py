"""The suite's canary secret (tests/canary.py, tests/conftest.py): the simulator's tokens carry it, and a
leak into a test's output, failure report or a readable file fails the run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import canary

from pvectl.sim.cluster import Cluster

TESTS = Path(__file__).resolve().parents[1]


def test_simulator_tokens_carry_the_canary() -> None:
    with Cluster(nodes=1, vms=1, templates=0, bind="127.0.0.1", port=0) as sim:
        added = sim.add_token("root@pam!extra")
        assert canary.contains(sim.token_secret) and canary.contains(added) and added != sim.token_secret
        assert canary.contains(sim.token_path.read_text())
        assert len(sim.token_secret) == 36 and sim.token_secret.count("-") == 4   # still a UUID


def test_leaky_files_are_readable_files_and_logs_holding_the_canary(tmp_path: Path) -> None:
    secret = canary.new_secret()
    canary.canary_token_file(tmp_path / "token")                      # owner-only store: fine
    (tmp_path / "clean.json").write_text("{}")
    (tmp_path / "state.json").write_text(f'{{"secret": "{secret}"}}')
    (tmp_path / "state.json").chmod(0o644)
    (tmp_path / "audit.jsonl").write_text(f'{{"params": "{secret}"}}\n')
    (tmp_path / "audit.jsonl").chmod(0o600)
    try:
        found = canary.leaky_files([tmp_path])
    finally:   # the session's own check would find them too
        for name in ("state.json", "audit.jsonl"):
            (tmp_path / name).unlink()
    assert sorted(Path(f.split(" ")[0]).name for f in found) == ["audit.jsonl", "state.json"]
    assert not any(secret in f for f in found)


def test_a_leak_fails_the_test_and_the_session(tmp_path: Path) -> None:
    for name in ("conftest.py", "canary.py"):
        shutil.copy(TESTS / name, tmp_path / name)
    (tmp_path / "test_leaks.py").write_text(
        "import canary, subprocess, sys\n"
        "def test_prints(): print('token', canary.new_secret())\n"
        "def test_raises(): raise ValueError(canary.new_secret())\n"
        "def test_reads_capsys(capsys):\n"
        "    sys.stdout.write(canary.new_secret()); assert capsys.readouterr().out\n"
        "def test_writes_file(tmp_path): (tmp_path / 'dump.txt').write_text(canary.new_secret())\n"
        "def test_writes_into_a_simulator_dir():\n"
        "    from pvectl.sim.cluster import Cluster\n"
        "    with Cluster(nodes=1, vms=1, templates=0, bind='127.0.0.1', port=0) as sim:\n"
        "        (sim.state_dir / 'client.log').write_text(sim.token_secret)\n"
        "def test_clean(): print('nothing secret')\n")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                        "--basetemp", str(tmp_path / "base"), str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    shutil.rmtree(tmp_path / "base")
    out = p.stdout
    assert p.returncode == 1, out
    assert "3 failed, 3 passed, 1 error in" in out, out
    for test in ("test_prints", "test_raises", "test_reads_capsys"):
        assert f"FAILED test_leaks.py::{test}" in out, out
    assert "the canary token secret leaked into" in out and "dump.txt (mode 0644)" in out, out
    assert "client.log (mode" in out, out          # in a simulator's state directory, removed since
    assert canary.MARKER not in out
