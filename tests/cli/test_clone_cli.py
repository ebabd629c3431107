"""`pvectl vm clone` against the simulator: exit codes, JSON output, bulk summary, dry-run, two processes.

Spec: DESIGN §3 (exit codes, JSON errors), seed clone + post-clone config, pve-semantics §4, §10.3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5Zm9ycHZlY3RsdGVzdGluZzAxMjM0NTY3 alice@example.com"
PVECTL = Path(sys.executable).with_name("pvectl")


@pytest.fixture(autouse=True)
def _audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))


def names(sim: Any, name: str) -> list[Any]:
    return [v for v in sim.backend.state.vms.values() if v.config.get("name") == name]


def writes(sim: Any) -> list[tuple[str, str]]:
    return [(e["method"], e["path"]) for e in sim.requests_log() if e["method"] != "GET"]


def test_clone_json_then_idempotent(fresh_sim: Any, cli: Callable[..., Any], tmp_path: Path) -> None:
    keys = tmp_path / "k.pub"
    keys.write_text(KEY + "\n")
    cfg = str(fresh_sim.config_path)
    r = cli("--config", cfg, "vm", "clone", "ubuntu-24.04-cloud", "web-1", "--cores", "4", "--memory", "4G",
            "--ssh-keys", str(keys), "--disk-size", "+10G", "--start", "--wait-ip", "-o", "json")
    assert r.code == 0, r.err
    d = r.json
    assert (d["result"], d["vmid"], d["node"], d["status"]) == ("created", 112, "pve1", "running")
    assert d["ip"] and d["steps"] == ["clone", "config", "resize", "start", "ip"]
    vm = fresh_sim.backend.state.vms[112]
    assert vm.config["sshkeys"] == urllib.parse.quote(KEY, safe="")
    assert "clone" in r.err                                  # progress lines on stderr (not a TTY)
    again = cli("--config", cfg, "vm", "clone", "ubuntu-24.04-cloud", "web-1", "-o", "json")
    assert again.code == 0 and again.json["result"] == "exists" and again.json["changed"] is False


def test_same_name_other_vm_exit_3(fresh_sim: Any, cli: Callable[..., Any]) -> None:
    r = cli("--config", str(fresh_sim.config_path), "vm", "clone", "9000", "web-01", "-o", "json")
    assert r.code == 3
    err = r.json["error"]
    assert err["type"] == "GuardRefused" and "already exists (VM 100 on pve1)" in err["message"]
    assert writes(fresh_sim) == []


def test_target_local_storage_refused_exit_3(fresh_sim: Any, cli: Callable[..., Any]) -> None:
    # the tag `template` selects both templates: ambiguous, a usage error before anything else
    r = cli("--config", str(fresh_sim.config_path), "vm", "clone", "template", "far-1", "--target", "pve2",
            "-o", "table")
    assert r.code == 2 and "matches 2 templates" in r.err
    # the tag `ubuntu` selects template 9000 (disks on local-lvm on pve1)
    r = cli("--config", str(fresh_sim.config_path), "vm", "clone", "ubuntu", "far-1", "--target", "pve2",
            "-o", "table")
    assert r.code == 3 and "local storage" in r.err and "pvectl vm migrate" in r.err
    assert writes(fresh_sim) == []


def test_linked_with_storage_is_usage_error(fresh_sim: Any, cli: Callable[..., Any]) -> None:
    r = cli("--config", str(fresh_sim.config_path), "vm", "clone", "9000", "l-1", "--linked", "--storage", "ceph-vm",
            "-o", "table")
    assert r.code == 2 and "linked" in r.err


def test_failed_step_reports_vmid_and_hint(fresh_sim: Any, cli: Callable[..., Any],
                                           token_config: Callable[..., Path]) -> None:
    from pvectl.sim.models import ALL_PRIVS

    cfg = token_config(fresh_sim, "noci", {"/": [p for p in ALL_PRIVS if p != "VM.Config.Cloudinit"]})
    r = cli("--config", str(cfg), "vm", "clone", "9000", "noci-1", "-o", "json")
    assert r.code == 1
    err = r.json["error"]
    assert err["vm"]["vmid"] == 112 and err["vm"]["node"] == "pve1" and err["vm"]["status"] == "stopped"
    assert "pvectl vm delete 112 --yes" in err["hint"] and err["cause"] == "PermissionDenied"
    assert len(names(fresh_sim, "noci-1")) == 1
    r = cli("--config", str(cfg), "vm", "clone", "9000", "noci-2", "--cleanup-on-failure", "-o", "table")
    assert r.code == 1 and "deleted it" in r.err and names(fresh_sim, "noci-2") == []


def test_count_summary_and_exit_1_on_any_failure(fresh_sim: Any, cli: Callable[..., Any]) -> None:
    cfg = str(fresh_sim.config_path)
    r = cli("--config", cfg, "vm", "clone", "9000", "--count", "3", "--name-pattern", "web-{n}", "-o", "json")
    assert r.code == 0, r.err
    d = r.json
    assert (d["created"], d["failed"]) == (3, 0)
    assert [x["name"] for x in d["results"]] == ["web-1", "web-2", "web-3"]
    assert len({x["vmid"] for x in d["results"]}) == 3
    fresh_sim.fail_task(type="qmclone", message="clone failed: injected")
    r = cli("--config", cfg, "vm", "clone", "9000", "--count", "2", "--name-pattern", "web-{n}",
            "--name-start", "next", "-o", "table")
    assert r.code == 1
    assert "web-4" in r.out and "web-5" in r.out and "failed" in r.out and "created" in r.out
    assert len(names(fresh_sim, "web-4")) + len(names(fresh_sim, "web-5")) == 1


def test_dry_run_prints_curl_without_secret(fresh_sim: Any, cli: Callable[..., Any]) -> None:
    before = {k: dict(v.config) for k, v in fresh_sim.backend.state.vms.items()}
    r = cli("--config", str(fresh_sim.config_path), "--dry-run", "vm", "clone", "9000", "dry-1",
            "--ip", "10.1.2.3/24,gw=10.1.2.1", "--start", "-o", "json")
    assert r.code == 0, r.err
    assert fresh_sim.token_secret not in r.out + r.err
    assert r.out.count("curl -s ") == 3                   # clone, config, start
    assert "--data-urlencode ipconfig0=ip=10.1.2.3/24,gw=10.1.2.1 " in r.out
    assert writes(fresh_sim) == []
    assert {k: dict(v.config) for k, v in fresh_sim.backend.state.vms.items()} == before


def test_two_processes_with_count_get_distinct_vmids(fresh_sim: Any, tmp_path: Path) -> None:
    """Two pvectl processes started together both allocate from the same /cluster/resources view;
    `already exists` sends the loser on to the next free VMID, so all four VMs get their own."""
    env = dict(os.environ, PVECTL_AUDIT_LOG=str(tmp_path / "audit.jsonl"))
    cmd = [str(PVECTL), "--config", str(fresh_sim.config_path), "vm", "clone", "9000", "--count", "2", "-o", "json"]
    procs = [subprocess.Popen(cmd + ["--name-pattern", f"{p}-{{n}}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, stdin=subprocess.DEVNULL) for p in ("a", "b")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    made = [v for v in fresh_sim.backend.state.vms.values() if str(v.config.get("name", "")).startswith(("a-", "b-"))]
    assert sorted(v.config["name"] for v in made) == ["a-1", "a-2", "b-1", "b-2"]
    # four distinct VMIDs from the first free one (112); after a collision the loser spreads its next
    # tries (provision/vmids.py `skip=`), so the four need not be contiguous
    vmids = sorted(v.vmid for v in made)
    assert len(set(vmids)) == 4 and vmids[0] == 112, vmids
