"""The curl lines `--dry-run` prints, run as printed against `python -m pvectl.sim` (a separate
process), with the token in a real pass entry and in token files that pvectl accepts but a plain
`head -1` / `tail -1` misreads: CRLF line ends and trailing blank lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

PVECTL = Path(sys.executable).with_name("pvectl")
CRLF_PATH = "proxmox/api-token-crlf"


def _env(base: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in ("PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "PVECTL_CONFIG")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PVECTL_AUDIT_LOG=str(tmp_path / "audit.jsonl"))
    return env


def _dry_run_then_curl(sim_process: Any, cfg: Path, env: dict[str, str], vmid: int, text: str) -> None:
    r = subprocess.run([str(PVECTL), "--config", str(cfg), "--dry-run", "-o", "json", "vm", "set", str(vmid),
                        f"description={text}"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    _, secret = sim_process.token_lines
    assert secret not in r.stdout + r.stderr
    [line] = [ln for ln in r.stdout.splitlines() if ln.startswith("curl ")]
    done = subprocess.run(["bash", "-c", line + " --fail-with-body"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, (line, done.stdout, done.stderr)
    assert json.loads(done.stdout) == {"data": None}
    conf = sim_process.api("GET", f"/nodes/{_node_of(sim_process, vmid)}/qemu/{vmid}/config")
    assert conf["description"] == text


def _node_of(sim_process: Any, vmid: int) -> str:
    return next(v["node"] for v in sim_process.vms() if v["vmid"] == vmid)


def _some_vm(sim_process: Any) -> int:
    return max(v["vmid"] for v in sim_process.vms() if not v.get("template"))


@pytest.mark.parametrize("layout", ["{id}\r\n{secret}\r\n", "{id}\n{secret}\n\n\n",
                                    "\n{id}\r\n\r\n {secret}\t\r\n\r\n"],
                         ids=["crlf", "trailing-blank-lines", "crlf-and-blanks"])
def test_dry_run_line_with_a_token_file(sim_process: Any, tmp_path: Path, layout: str) -> None:
    token_id, secret = sim_process.token_lines
    token = tmp_path / "token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(layout.format(id=token_id, secret=secret).encode())
    doc = dict(sim_process.config)
    doc["credentials"] = {"token_file": str(token)}
    cfg = tmp_path / "cluster-config.yaml"
    cfg.write_text(yaml.safe_dump(doc), encoding="utf-8")
    _dry_run_then_curl(sim_process, cfg, _env(dict(os.environ), tmp_path), _some_vm(sim_process),
                       f"dry-run line, token file {tmp_path.name}")


def test_dry_run_line_with_a_crlf_pass_entry(sim_process: Any, pass_store: Any, tmp_path: Path) -> None:
    token_id, secret = sim_process.token_lines
    env = _env(pass_store.env, tmp_path)
    subprocess.run(["pass", "insert", "-m", "-f", CRLF_PATH], env=env, input=f"{token_id}\r\n{secret}\r\n\r\n",
                   capture_output=True, text=True, check=True, timeout=60)
    doc = dict(sim_process.config)
    doc["credentials"] = {"pass_path": CRLF_PATH}
    cfg = tmp_path / "cluster-config.yaml"
    cfg.write_text(yaml.safe_dump(doc), encoding="utf-8")
    _dry_run_then_curl(sim_process, cfg, env, _some_vm(sim_process), "dry-run line, CRLF pass entry")
