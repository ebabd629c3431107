"""`pvectl sim serve` / `python -m pvectl.sim` as a subprocess: ready line, files, signals, bad input."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import canary
import pytest
import yaml


def _start(*args: str) -> subprocess.Popen[str]:
    """`python -m pvectl.sim ARGS`, its token secrets carrying the suite's canary marker."""
    argv, env = canary.child_sim_argv(*args)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _reap(proc: subprocess.Popen[str]) -> None:
    """Kill the server if it still runs, wait for it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    with proc:   # Popen.__exit__ closes stdout/stderr and waits
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, str]]:
    sd = tmp_path / "state"
    proc = _start("--nodes", "2", "--vms", "3", "--templates", "1", "--bind", "127.0.0.1", "--port", "0",
                  "--state-dir", str(sd))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()   # blocks until ready (or EOF if it died)
        yield proc, sd, line
    finally:
        _reap(proc)


def test_ready_line_files_and_sigterm(served: tuple[subprocess.Popen[str], Path, str]) -> None:
    proc, sd, line = served
    assert line == f"ready {(sd / 'cluster-config.yaml').resolve()}\n"
    cfg = yaml.safe_load((sd / "cluster-config.yaml").read_text())
    token_file = Path(cfg["credentials"]["token_file"])
    assert token_file.is_absolute() and os.stat(token_file).st_mode & 0o777 == 0o600
    token_id, secret = token_file.read_text().splitlines()
    assert token_id == "root@pam!pvectl"
    assert canary.contains(secret)             # the session's canary: a leak of it fails the suite
    ca = Path(cfg["tls"]["ca_file"])
    assert ca.is_absolute() and ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    node = cfg["cluster"]["nodes"][1]
    conn = http.client.HTTPSConnection(node["host"], node["port"], timeout=20,
                                       context=ssl.create_default_context(cafile=str(ca)))
    conn.request("GET", "/api2/json/nodes", headers={"Authorization": f"PVEAPIToken={token_id}={secret}"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert sorted(n["node"] for n in json.loads(resp.read())["data"]) == ["pve1", "pve2"]
    conn.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert proc.stdout is not None and proc.stdout.read() == ""   # exactly one line on stdout
    assert (sd / "state.json").is_file()


def test_state_json_is_mode_0600(served: tuple[subprocess.Popen[str], Path, str]) -> None:
    proc, sd, _ = served
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    secret = (sd / "token").read_text().splitlines()[-1]
    assert secret in (sd / "state.json").read_text()   # this is why the mode matters
    assert os.stat(sd / "state.json").st_mode & 0o777 == 0o600 == os.stat(sd / "token").st_mode & 0o777


def test_sigint_also_exits_zero(served: tuple[subprocess.Popen[str], Path, str]) -> None:
    proc, _, line = served
    assert line.startswith("ready ")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0


def _bad(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "pvectl.sim", *args], capture_output=True, text=True, timeout=60)
    assert proc.stdout == ""
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("args, needle", [
    (["--nodes", "0"], "--nodes"),
    (["--nodes", "-2"], "--nodes"),
    (["--vms", "-1"], "--vms"),
    (["--templates", "-1"], "--templates"),
    (["--templates", "1001"], "--templates"),
    (["--containers", "-1"], "--containers"),
    (["--time-scale", "-0.5"], "--time-scale"),
    (["--time-scale", "nan"], "--time-scale"),
    (["--nodes", "x"], "invalid int value"),
    (["--bind", "0.0.0.0", "--port", "0"], "loopback"),
    (["--bind", "192.168.1.10", "--port", "0"], "loopback"),
    (["--port", "70000", "--bind", "127.0.0.1"], "--port"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    code, err = _bad(*args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("pvectl sim serve: error: ") and needle in err


def test_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, err = _bad("--bind", "127.0.0.1", "--port", "0", "--state-dir", str(blocker / "sub"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("pvectl sim serve: error: state directory")


def test_port_in_use() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, err = _bad("--nodes", "1", "--bind", "127.0.0.1", "--port", str(port))
    assert code == 2
    assert err == f"pvectl sim serve: error: 127.0.0.1:{port} is in use - pick --port or stop the other server\n"


def test_time_scale_zero_is_allowed(tmp_path: Path) -> None:
    proc = _start("--nodes", "1", "--vms", "1", "--templates", "0", "--bind", "127.0.0.1", "--port", "0",
                  "--time-scale", "0")
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready ")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        _reap(proc)


def test_users_file_and_password_login(served: tuple[subprocess.Popen[str], Path, str]) -> None:
    proc, sd, line = served
    users = sd / "users"
    assert os.stat(users).st_mode & 0o777 == 0o600
    (entry,) = users.read_text().splitlines()
    userid, _, password = entry.partition(":")
    assert userid == "root@pam" and len(password) >= 16
    cfg = yaml.safe_load((sd / "cluster-config.yaml").read_text())
    node = cfg["cluster"]["nodes"][0]
    ctx = ssl.create_default_context(cafile=cfg["tls"]["ca_file"])
    conn = http.client.HTTPSConnection(node["host"], node["port"], timeout=20, context=ctx)
    body = urllib.parse.urlencode({"username": userid, "password": password})
    conn.request("POST", "/api2/json/access/ticket", body=body,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert json.loads(resp.read())["data"]["ticket"].startswith("PVE:root@pam:")
    conn.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    # a restart on the same state dir keeps the password, like the token
    again = _start("--nodes", "2", "--vms", "3", "--templates", "1", "--bind", "127.0.0.1", "--port", "0",
                   "--state-dir", str(sd))
    try:
        assert again.stdout is not None and again.stdout.readline().startswith("ready ")
        assert users.read_text() == entry + "\n"
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(30)
        _reap(again)
