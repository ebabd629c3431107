"""Maintained third-party Proxmox CLIs from PyPI against `pvectl sim serve`, TLS verified with its CA.

- pmox (proxmoxer + requests, API token; secret in PROXMOX_TOKEN_SECRET, TLS with `--verify-ssl`, so
  requests verifies against REQUESTS_CA_BUNDLE = the simulator's CA);
- proxcli, command `proxmox` (its own httpx client, password login with a ticket and the CSRF token;
  password on stdin, TLS verified against SSL_CERT_FILE = the simulator's CA).

Each runs its read commands and one write as a subprocess, the way a user runs it. Known problems of
the tools themselves (not of the simulator):
- pmox 0.7.2 with typer >= 0.20 turns every usage error into a traceback (`typer._click.exceptions`
  has no `Abort`); the tests only use valid command lines.
- pmox `task list` refuses a multi-node cluster without `--node` (by design).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
from simpeer import served

from pvectl.sim.cluster import Cluster

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def sim() -> Iterator[Cluster]:
    with served(nodes=3, vms=6, templates=1, time_scale=0.02) as c:
        yield c


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXMOX_", "PMOX_"))}
    # no config or .env of the user's: HOME and the working directory are empty
    env.update(HOME=str(tmp), NO_COLOR="1", **extra)
    return env


def run(tool: str, args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> tuple[int, Any, str]:
    # the console script beside this interpreter (a venv), else the one on PATH
    exe = shutil.which(tool, path=str(BIN)) or shutil.which(tool)
    assert exe, f"{tool} is not installed (pip install -e '.[dev]')"
    proc = subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    try:
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        out = proc.stdout
    return proc.returncode, out, proc.stderr


# ------------------------------------------------------------------------------------------- pmox
@pytest.fixture
def pmox(sim: Cluster, tmp_path: Path):  # noqa: ANN201 - a small closure
    host, port = sim.nodes["pve1"]
    env = _env(tmp_path, REQUESTS_CA_BUNDLE=str(sim.ca_path), PROXMOX_TOKEN_SECRET=sim.token_secret)
    base = ["--json", "--host", host, "--port", str(port), "--token-id", sim.token_id, "--verify-ssl"]

    def call(*args: str, env_over: dict[str, str] | None = None) -> tuple[int, Any, str]:
        return run("pmox", [*base, *args], {**env, **(env_over or {})}, tmp_path)
    return call


def test_pmox_reads(pmox: Any, sim: Cluster) -> None:
    state = sim.backend.state
    code, out, err = pmox("version")
    assert code == 0, err
    assert out["server"]["version"] == "9.1.6"
    code, out, err = pmox("health")
    assert code == 0, err
    assert out["quorate"] is True and (out["nodes_online"], out["nodes_total"]) == (3, 3)
    assert out["guests"]["templates"] == 1 and out["issues"] == []
    code, out, _ = pmox("nodes", "list")
    assert code == 0 and sorted(n["node"] for n in out) == ["pve1", "pve2", "pve3"]
    code, out, _ = pmox("nodes", "status", "pve2")
    assert code == 0 and out["cpuinfo"]["cpus"] == state.nodes["pve2"].maxcpu
    code, out, _ = pmox("vm", "list")
    assert code == 0 and {v["vmid"] for v in out} == set(state.vms)
    code, out, _ = pmox("template", "list")
    assert code == 0 and [t["vmid"] for t in out] == [9000]
    code, out, _ = pmox("vm", "config", "101")
    assert code == 0 and out["name"] == state.vms[101].config["name"]
    code, out, _ = pmox("vm", "status", "101")
    assert code == 0 and out["status"] == state.vms[101].status
    code, out, _ = pmox("vm", "describe", "101")                  # status + config + snapshots
    assert code == 0 and out["config"]["name"] == state.vms[101].config["name"]
    code, out, _ = pmox("storage", "list")
    assert code == 0 and {s["storage"] for s in out} == {"local", "local-lvm", "ceph-vm"}
    code, out, _ = pmox("task", "list", "--node", "pve1")
    assert code == 0 and isinstance(out, list)


def test_pmox_snapshot_write(pmox: Any, sim: Cluster) -> None:
    code, out, err = pmox("--dangerous", "--wait", "vm", "snapshot", "create", "103", "pmox_before", "-d", "by pmox")
    assert code == 0, (out, err)
    assert out["ok"] is True and out["task"]["type"] == "qmsnapshot" and out["task"]["exitstatus"] == "OK"
    assert sim.backend.state.vms[103].snapshots["pmox_before"]["description"] == "by pmox"
    code, out, _ = pmox("vm", "snapshot", "list", "103")
    assert code == 0 and [s["name"] for s in out] == ["pmox_before", "current"]
    assert out[1]["parent"] == "pmox_before"


def test_pmox_verifies_tls(pmox: Any) -> None:
    # the system CA bundle does not know the simulator's CA: verification is really on
    code, out, _ = pmox("vm", "list", env_over={"REQUESTS_CA_BUNDLE": certifi.where()})
    assert code == 1 and out["error"] == "network" and "certificate verify failed" in out["message"]


# ------------------------------------------------------------------------------------------- proxcli
@pytest.fixture
def proxcli(sim: Cluster, tmp_path: Path):  # noqa: ANN201 - a small closure
    host, port = sim.nodes["pve2"]
    env = _env(tmp_path, SSL_CERT_FILE=str(sim.ca_path))
    base = ["--url", f"https://{host}:{port}", "--username", sim.user, "--password-stdin"]

    def call(*args: str, env_over: dict[str, str] | None = None) -> tuple[int, Any, str]:
        return run("proxmox", [*base, *args], {**env, **(env_over or {})}, tmp_path, stdin=sim.password + "\n")
    return call


def test_proxcli_reads_with_a_password_login(proxcli: Any, sim: Cluster) -> None:
    state = sim.backend.state
    code, out, err = proxcli("node", "list")
    assert code == 0, err
    assert sorted(n["node"] for n in out) == ["pve1", "pve2", "pve3"]
    code, out, _ = proxcli("cluster", "status")
    assert code == 0 and out[0]["name"] == state.cluster_name and out[0]["quorate"] == 1
    code, out, _ = proxcli("vm", "list")
    assert code == 0 and {v["vmid"] for v in out} == set(state.vms)
    code, out, _ = proxcli("vm", "show", "102")
    assert code == 0 and out["name"] == state.vms[102].config["name"] and out["ha"] == {"managed": 0}
    code, out, _ = proxcli("vm", "config", "102")
    assert code == 0 and out["scsi0"] == state.vms[102].config["scsi0"]
    code, out, _ = proxcli("task", "list")
    assert code == 0 and isinstance(out, list)
    code, out, _ = proxcli("vm", "snapshot", "list", "102")
    assert code == 0 and [s["name"] for s in out] == ["current"] and out[0]["running"] == 0


def test_proxcli_writes_with_the_csrf_token(proxcli: Any, sim: Cluster) -> None:
    assert sim.backend.state.vms[104].status == "running"          # a snapshot with RAM
    code, out, err = proxcli("vm", "snapshot", "create", "104", "proxcli_ram", "--vmstate", "1", "--wait",
                             "--description", "with RAM")
    assert code == 0, (out, err)
    assert out["result"] == "ok" and out["data"]["exitstatus"] == "OK" and out["data"]["user"] == "root@pam"
    snap = sim.backend.state.vms[104].snapshots["proxcli_ram"]
    assert snap["vmstate"] == "local-lvm:vm-104-state-proxcli_ram" and snap["description"] == "with RAM"
    code, _, err = proxcli("vm", "set", "104", "--tag", "ring")
    assert code == 0, err
    assert "ring" in sim.backend.state.vms[104].config["tags"].split(";")


def test_proxcli_verifies_tls(proxcli: Any) -> None:
    code, out, err = proxcli("node", "list", env_over={"SSL_CERT_FILE": certifi.where()})
    assert code != 0 and "CERTIFICATE_VERIFY_FAILED" in (err + str(out))
