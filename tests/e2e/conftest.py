"""End-to-end fixtures: a real `pass` store with a throwaway gpg key, and `python -m pvectl.sim` as a
separate process, so that shell commands (the seed's curl + jq) run exactly as an operator runs them.

Nothing here is skipped: `pass`, `gpg`, `curl` and `jq` are required, and a missing one FAILS the test
with a message saying what to install (CI installs them).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from canary import canary_token_file, leaky_files

PASS_PATH = "proxmox/api-token"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

# Variables that would send curl (or gpg) somewhere else than the throwaway store / loopback.
_SCRUB = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
          "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "PASSWORD_STORE_KEY",
          "PASSWORD_STORE_GPG_OPTS", "PASSWORD_STORE_UMASK", "PASSWORD_STORE_SIGNING_KEY")


def require_tool(name: str, package: str | None = None) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: the e2e tests need it (install the `{package or name}` package, "
            f"e.g. `apt-get install {package or name}`); they are never skipped.",
            pytrace=False,
        )
    return path


def _run(argv: list[str], env: dict[str, str], *, input: str | None = None,
         timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, env=env, input=input, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv[:3])} ... failed ({proc.returncode}):\n{proc.stderr}", pytrace=False)
    return proc


# -- the simulator as a process ------------------------------------------------------------------


@dataclass
class SimProcess:
    """`python -m pvectl.sim` running in another process, and what its ready line points at."""

    proc: subprocess.Popen[str]
    state_dir: Path
    config_path: Path
    config: dict[str, Any]
    nodes: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def ca_path(self) -> Path:
        return Path(self.config["tls"]["ca_file"])

    @property
    def token_path(self) -> Path:
        return Path(self.config["credentials"]["token_file"])

    @property
    def token_lines(self) -> tuple[str, str]:
        lines = [ln for ln in self.token_path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return lines[0], lines[-1]

    def host_port(self, node: str) -> str:
        host, port = self.nodes[node]
        return f"{host}:{port}"

    def url(self, node: str) -> str:
        return f"https://{self.host_port(node)}"

    # The harness's own view of the cluster (set-up and checks), next to the commands under test.

    def api(self, method: str, path: str, *, node: str | None = None, data: dict[str, Any] | None = None,
            params: dict[str, Any] | None = None) -> Any:
        import requests

        token_id, secret = self.token_lines
        node = node or next(iter(self.nodes))
        r = requests.request(method, f"{self.url(node)}/api2/json{path}", data=data, params=params,
                             headers={"Authorization": f"PVEAPIToken={token_id}={secret}"},
                             verify=str(self.ca_path), timeout=30)
        if r.status_code != 200:
            raise AssertionError(f"{method} {path} -> {r.status_code} {r.reason}: {r.text}")
        return r.json()["data"]

    def control(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """The simulator's `/_sim/...` control API (no PVE auth; loopback only)."""
        import requests

        node = next(iter(self.nodes))
        r = requests.request(method, f"{self.url(node)}/_sim/{path.lstrip('/')}", json=payload,
                             verify=str(self.ca_path), timeout=30)
        r.raise_for_status()
        return r.json()["data"]

    def saved_state(self) -> dict[str, Any]:
        """The simulator's whole state (VMs, volumes), written by `POST /_sim/save` and read back."""
        path = Path(self.control("POST", "save")["path"])
        return json.loads(path.read_text(encoding="utf-8"))

    def wait_task(self, upid: str, timeout: float = 60.0) -> dict[str, Any]:
        node = upid.split(":")[1]
        deadline = time.monotonic() + timeout
        while True:
            st = self.api("GET", f"/nodes/{node}/tasks/{upid}/status")
            if st["status"] == "stopped":
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"task {upid} still running after {timeout}s")
            time.sleep(0.1)

    def vms(self) -> list[dict[str, Any]]:
        return self.api("GET", "/cluster/resources", params={"type": "vm"})


def _read_ready_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line:
                return line.rstrip("\n")
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"`python -m pvectl.sim` exited with {proc.returncode} before its ready line:\n{err}",
                        pytrace=False)
    proc.kill()
    pytest.fail(f"`python -m pvectl.sim` printed no ready line within {timeout}s", pytrace=False)


@pytest.fixture(scope="session")
def sim_process() -> Iterator[SimProcess]:
    state_dir = Path(tempfile.mkdtemp(prefix="pvectl-e2e-sim-"))
    canary_token_file(state_dir / "token")   # the simulator keeps the secret of a token file it finds
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    argv = [sys.executable, "-m", "pvectl.sim", "--bind", "127.0.0.1", "--port", "0",
            "--state-dir", str(state_dir), "--time-scale", "0.02"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        line = _read_ready_line(proc, READY_TIMEOUT)
        assert line.startswith("ready "), f"unexpected first line from the simulator: {line!r}"
        config_path = Path(line[len("ready "):])
        assert config_path.is_absolute() and config_path.is_file(), config_path
        assert config_path.parent == state_dir.resolve()
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        nodes = {n["name"]: (n["host"], int(n["port"])) for n in config["cluster"]["nodes"]}
        for host, _ in nodes.values():
            assert host.startswith("127."), f"the simulator must only use loopback, got {host}"
        sim = SimProcess(proc=proc, state_dir=state_dir, config_path=config_path, config=config, nodes=nodes)
        for p in (sim.ca_path, sim.token_path):
            assert p.is_file(), f"the simulator did not write {p}"
        yield sim
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"the simulator did not stop within {STOP_TIMEOUT}s of SIGTERM")
        else:
            rc = proc.returncode
        stderr = proc.stderr.read() if proc.stderr else ""
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        leaked = leaky_files([state_dir])        # outside pytest's temporary directory: read it here
        shutil.rmtree(state_dir, ignore_errors=True)
        assert rc == 0, f"the simulator exited with {rc} on SIGTERM (expected 0):\n{stderr}"
        assert not leaked, f"the canary token secret was written to: {leaked}"


# -- a throwaway pass store ----------------------------------------------------------------------


@dataclass
class PassStore:
    gnupghome: Path
    store_dir: Path
    key_fpr: str
    env: dict[str, str]
    pass_path: str = PASS_PATH


_KEY_PARAMS = """\
%no-protection
Key-Type: eddsa
Key-Curve: ed25519
Key-Usage: sign
Subkey-Type: ecdh
Subkey-Curve: cv25519
Subkey-Usage: encrypt
Name-Real: pvectl e2e throwaway
Name-Email: e2e@pvectl.invalid
Expire-Date: 1d
%commit
"""


@pytest.fixture(scope="session")
def pass_store(sim_process: SimProcess) -> Iterator[PassStore]:
    """A real pass store (temporary GNUPGHOME + PASSWORD_STORE_DIR) holding the simulator's token at
    `proxmox/api-token`: line 1 the token id, line 2 the secret - the layout the seed reads."""
    require_tool("gpg", "gnupg")
    require_tool("pass")
    # Short path under /tmp: gpg-agent's socket path must fit in sun_path (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="pvectl-pass-", dir="/tmp"))
    gnupghome = root / "g"
    store_dir = root / "s"
    gnupghome.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(GNUPGHOME=str(gnupghome), PASSWORD_STORE_DIR=str(store_dir))
    env.pop("GPG_AGENT_INFO", None)
    try:
        _run(["gpg", "--batch", "--quiet", "--gen-key"], env, input=_KEY_PARAMS)
        listing = _run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env).stdout
        fprs = [ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:")]
        assert fprs, f"gpg generated no key:\n{listing}"
        key_fpr = fprs[0]
        _run(["pass", "init", key_fpr], env)
        # The secret goes in on stdin, never on a command line.
        token_text = sim_process.token_path.read_text(encoding="utf-8")
        _run(["pass", "insert", "-m", PASS_PATH], env, input=token_text)
        shown = _run(["pass", "show", PASS_PATH], env).stdout.splitlines()
        token_id, secret = sim_process.token_lines
        assert shown[0] == token_id and shown[-1] == secret, "pass show does not return the token entry"
        assert (store_dir / f"{PASS_PATH}.gpg").is_file()
        assert secret.encode() not in (store_dir / f"{PASS_PATH}.gpg").read_bytes()
        yield PassStore(gnupghome=gnupghome, store_dir=store_dir, key_fpr=key_fpr, env=env)
    finally:
        # Stop the gpg-agent that this GNUPGHOME started (only that one).
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, timeout=30)
        leaked = leaky_files([root])
        shutil.rmtree(root, ignore_errors=True)
        assert not leaked, f"the canary token secret was written to: {leaked}"


