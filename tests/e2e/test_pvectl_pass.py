"""pvectl with the token in a real `pass` store: read once per process, never on a command line,
never in output, errors or dry-run lines (spec/seed-errata.md §2, §4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

PVECTL = Path(sys.executable).with_name("pvectl")


def _config_with_pass(sim_process: Any, pass_store: Any, dest: Path) -> Path:
    doc = dict(sim_process.config)
    doc["credentials"] = {"pass_path": pass_store.pass_path, "ssh_user": "root"}
    dest.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return dest


def _pvectl(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PVECTL), *argv], env=env, capture_output=True, text=True, timeout=120)


def _pass_counting_env(pass_store: Any, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `pass` wrapper first in PATH that records each call's argv, then runs the real pass."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "pass-calls"
    real = subprocess.run(["sh", "-c", "command -v pass"], capture_output=True, text=True, check=True).stdout.strip()
    wrapper = bindir / "pass"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {real} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    env = dict(pass_store.env)
    env["PATH"] = f"{bindir}:{env.get('PATH', '')}"
    for key in ("PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "PVECTL_CONFIG"):
        env.pop(key, None)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["PVECTL_AUDIT_LOG"] = str(tmp_path / "audit.jsonl")
    return env, calls


def test_vm_list_reads_the_token_from_pass_once(sim_process: Any, pass_store: Any, tmp_path: Path) -> None:
    cfg = _config_with_pass(sim_process, pass_store, tmp_path / "cluster-config.yaml")
    env, calls = _pass_counting_env(pass_store, tmp_path)
    r = _pvectl(env, "--config", str(cfg), "-o", "json", "vm", "list")
    assert r.returncode == 0, r.stderr
    vms = json.loads(r.stdout)
    assert {v["vmid"] for v in vms} == {v["vmid"] for v in sim_process.vms()}
    # one `pass show PATH` per process (the seed runs it twice per request), and only the path on argv
    assert calls.read_text(encoding="utf-8").splitlines() == [f"show {pass_store.pass_path}"]
    _, secret = sim_process.token_lines
    assert secret not in r.stdout and secret not in r.stderr


def test_dry_run_and_errors_never_show_the_secret(sim_process: Any, pass_store: Any, tmp_path: Path) -> None:
    cfg = _config_with_pass(sim_process, pass_store, tmp_path / "cluster-config.yaml")
    env, _ = _pass_counting_env(pass_store, tmp_path)
    _, secret = sim_process.token_lines
    stopped = next(v for v in sim_process.vms() if v["status"] == "stopped" and not v.get("template"))
    r = _pvectl(env, "--config", str(cfg), "--dry-run", "-o", "json", "vm", "start", str(stopped["vmid"]))
    assert r.returncode == 0, r.stderr
    assert "$(pass show proxmox/api-token | tr '\\r\\v\\f' '\\n\\n\\n' | awk 'NF {s = $1} END {print s}')" in r.stdout
    assert secret not in r.stdout and secret not in r.stderr
    # an API error and a verbose request log
    r = _pvectl(env, "--config", str(cfg), "-v", "-o", "json", "vm", "status", "555")
    assert r.returncode == 1
    assert secret not in r.stdout and secret not in r.stderr


def test_a_missing_pass_entry_is_one_clear_line(sim_process: Any, pass_store: Any, tmp_path: Path) -> None:
    doc = dict(sim_process.config)
    doc["credentials"] = {"pass_path": "proxmox/no-such-entry"}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(doc), encoding="utf-8")
    env, _ = _pass_counting_env(pass_store, tmp_path)
    r = _pvectl(env, "--config", str(cfg), "-o", "table", "vm", "list")
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "proxmox/no-such-entry" in r.stderr


def test_doctor_and_an_audited_write_read_the_token_from_pass_once(
        sim_process: Any, pass_store: Any, tmp_path: Path) -> None:
    # doctor reads the token itself and then through its cluster; a write reads it for the request
    # and for the audit record: one `pass show` each time
    cfg = _config_with_pass(sim_process, pass_store, tmp_path / "cluster-config.yaml")
    env, calls = _pass_counting_env(pass_store, tmp_path)
    r = _pvectl(env, "--config", str(cfg), "-o", "json", "doctor")
    assert '"credentials"' in r.stdout and "FAIL" not in r.stdout.split('"credentials"', 1)[1][:80], r.stdout
    assert calls.read_text(encoding="utf-8").splitlines() == [f"show {pass_store.pass_path}"]
    calls.unlink()
    vm = next(v for v in sim_process.vms() if not v.get("template"))
    r = _pvectl(env, "--config", str(cfg), "-o", "json", "vm", "set", str(vm["vmid"]), "description=audited")
    assert r.returncode == 0, r.stderr
    assert calls.read_text(encoding="utf-8").splitlines() == [f"show {pass_store.pass_path}"]
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    assert audit and audit[-1]["token_id"] == sim_process.token_lines[0]
