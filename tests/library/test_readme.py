"""The README's "Library" section is documentation that runs: its example against the simulator, and
its table of exceptions against `pvectl`'s own classes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pvectl
import pvectl.sim

README = Path(__file__).resolve().parents[2] / "README.md"


def library_section() -> str:
    text = README.read_text()
    start = text.index("\n## Library\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_the_readme_example_runs_against_the_simulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", library_section(), re.S)
    assert len(blocks) == 1
    with pvectl.sim.Cluster(nodes=3, bind="127.0.0.1", port=0, time_scale=0.02) as sim:
        monkeypatch.setenv("PVECTL_CONFIG", str(sim.config_path))     # the example's from_config() finds it
        monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
        exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme_example"})  # noqa: S102
        out = capsys.readouterr().out.splitlines()
        # what the comments promise, line by line
        assert out[0] == "True ['pve1', 'pve2', 'pve3']"
        assert any(line.startswith("done OK UPID:pve1:") and ":qmstart:103:" in line for line in out)
        assert "{'cores': 'pending until the next start', 'memory': 'pending until the next start'}" in out
        assert "3 stop is a hard power-off of VM 103 (like pulling the plug): data may be lost" in out
        assert "done stopped" in out
        assert any(line.startswith("planned curl -s --cacert ") and "-X DELETE" in line for line in out)
        assert "['local-lvm:vm-103-cloudinit', 'local-lvm:vm-103-disk-0']" in out
        assert sim.token_secret not in "\n".join(out)
        with pvectl.Cluster.from_config(str(sim.config_path), audit=False) as pve:
            names = {v.name for v in pve.vms.list()}
            started = (pve.vms.status("mq-01").status, pve.vms.status("worker-01").status)
    assert "cache-01" not in names and started == ("running", "running")


def test_the_readme_lists_every_error_with_its_parent_and_exit_code() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| (\d) \|", library_section(), re.M)
    documented = {name: (parent, int(code)) for name, parent, code in rows}
    actual = {name: (cls.__mro__[1].__name__, cls.exit_code) for name in dir(pvectl.errors)
              if isinstance(cls := getattr(pvectl.errors, name), type) and issubclass(cls, pvectl.PvectlError)}
    assert documented == actual
    assert set(documented) <= set(pvectl.__all__)
