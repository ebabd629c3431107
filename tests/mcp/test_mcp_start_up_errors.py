"""`pvectl mcp` over stdio that cannot start: stdout belongs to the MCP protocol (the SDK's stdio
client parses every stdout line as a JSON-RPC message and passes stderr through to its log), so the
error is the CLI's one stderr line, stdout stays empty, and the exit code is the documented one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from pvectl.sim.cluster import Cluster as SimCluster

INIT = (b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", '
        b'"capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}\n')


def run_mcp(config: Path, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVECTL_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")       # no cached handshake from another test
    # stdout is a pipe, as under an MCP client: the CLI's default output there is JSON
    return subprocess.run([sys.executable, "-m", "pvectl.cli.main", "mcp", "--config", str(config)],
                          input=INIT, capture_output=True, env=env, timeout=60)


def sim_config(sim: SimCluster, tmp_path: Path, section: str, value: object) -> Path:
    """The simulator's config with one top-level section replaced."""
    doc = yaml.safe_load(sim.config_path.read_text())
    doc[section] = value
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def assert_one_stderr_line(p: subprocess.CompletedProcess[bytes], code: int, *needles: str) -> str:
    assert p.stdout == b"", f"stdout must carry only JSON-RPC, got {p.stdout!r}"
    assert p.returncode == code, p.stderr
    err = p.stderr.decode()
    errors = [ln for ln in err.splitlines() if ln.startswith("pvectl: error: ")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], err
    return err


def test_an_invalid_config_is_one_stderr_line_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("cluster:\n  name: c\n  nodes: []\n")
    assert_one_stderr_line(run_mcp(cfg, tmp_path), 2, "cluster.nodes", "no nodes")


def test_an_unreadable_token_is_one_stderr_line_and_exit_2(sim: SimCluster, tmp_path: Path) -> None:
    cfg = sim_config(sim, tmp_path, "credentials", {"token_file": str(tmp_path / "missing-token")})
    assert_one_stderr_line(run_mcp(cfg, tmp_path), 2, "cannot read credentials.token_file")


def test_a_refused_token_is_one_stderr_line_and_exit_5_without_the_secret(sim: SimCluster, tmp_path: Path) -> None:
    wrong = "0b7e3a52-4f4e-4c1e-9d55-2f1f6c3b9a10"
    token = tmp_path / "token"
    token.write_text(f"{sim.token_id}\n{wrong}\n")
    token.chmod(0o600)
    cfg = sim_config(sim, tmp_path, "credentials", {"token_file": str(token)})
    err = assert_one_stderr_line(run_mcp(cfg, tmp_path), 5)
    assert wrong not in err and sim.token_secret not in err


def test_no_node_reachable_is_one_stderr_line_and_exit_5(sim: SimCluster, tmp_path: Path) -> None:
    with socket.socket() as s:                              # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = sim_config(sim, tmp_path, "cluster", {"name": "c", "nodes": [{"name": "pve1", "host": "127.0.0.1",
                                                                        "port": port}]})
    assert_one_stderr_line(run_mcp(cfg, tmp_path), 5)


def test_an_explicit_json_output_does_not_put_the_error_on_stdout(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("cluster:\n  name: c\n  nodes: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVECTL_")}
    p = subprocess.run([sys.executable, "-m", "pvectl.cli.main", "-o", "json", "mcp", "--config", str(cfg)],
                       input=INIT, capture_output=True, env=env, timeout=60)
    assert_one_stderr_line(p, 2, "no nodes")
