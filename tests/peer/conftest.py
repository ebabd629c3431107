"""Fixtures for running pvectl against `fakepve`, an independent fake Proxmox VE API (AGPL-3.0,
test-only: it is never imported by `src/`).

fakepve's pytest plugin (registered by its package) provides `fakepve` (a started fake on 127.0.0.1
with an OS-chosen port, tasks finishing at once) and `fakepve_cafile` (its self-signed certificate,
usable as the CA). `peer` fills the fake with a small cluster, registers an API token and writes a
cluster-config.yaml for it. One fake is one listening address, so every node of the config points
at it; any node answers for the cluster, as on real Proxmox VE.

The test modules take everything from fixtures (no `import conftest`), so this directory can be
collected together with the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

PVECTL = Path(sys.executable).with_name("pvectl")
TOKEN_ID = "ci@pve!pvectl"
TOKEN_SECRET = "5d2c41f0-7a52-4c1e-9d0b-2f4b8e6a9c11"
GIB = 1024**3


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def _load_json_stream(text: str) -> list[Any]:
    dec = json.JSONDecoder()
    out: list[Any] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        value, i = dec.raw_decode(text, i)
        out.append(value)


class Peer:
    """A populated fakepve, a config for it, and the seed's curl + jq pipelines against it."""

    def __init__(self, pve: Any, cafile: str, workdir: Path) -> None:
        self.pve = pve
        self.cafile = cafile
        self.dir = workdir
        self.token_file = self._secret_file("token", f"{TOKEN_ID}\n{TOKEN_SECRET}\n")
        self.header_file = self._secret_file("auth-header", f"Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\n")
        self.config_path = self.write_config("cluster-config.yaml")

    def _secret_file(self, name: str, text: str) -> Path:
        path = self.dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    @property
    def port(self) -> int:
        return int(self.pve.port)

    def doc(self) -> dict[str, Any]:
        return {
            "cluster": {"name": "fakecluster",
                        "nodes": [{"name": n, "host": "127.0.0.1", "port": self.port} for n in ("pve1", "pve2", "pve3")]},
            "credentials": {"token_file": str(self.token_file), "ssh_user": "root"},
            "tls": {"ca_file": self.cafile},
            "defaults": {"storage": "local-lvm", "network_bridge": "vmbr0"},
            "tags": {"templates": "template"},
            "vmid_ranges": {"vms": "100-899", "templates": "9000-9999"},
        }

    def write_config(self, name: str, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        doc = self.doc()
        if edit is not None:
            edit(doc)
        path = self.dir / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return path

    def token_config(self, tokenid: str, secret: str, name: str) -> Path:
        """A config that authenticates with another token (registered by the caller)."""
        tf = self._secret_file(f"token-{name}", f"{tokenid}\n{secret}\n")
        return self.write_config(f"config-{name}.yaml", lambda d: d["credentials"].update(token_file=str(tf)))

    def curl_jq(self, path: str, jq_filter: str) -> list[Any]:
        """The seed's `curl -H "Authorization: ..." URL | jq FILTER`, verifying with the fake's certificate;
        the header comes from a mode-0600 file, never from argv."""
        argv = ["curl", "-s", "--fail-with-body", "--cacert", self.cafile, "-H", f"@{self.header_file}",
                f"{self.pve.url}/api2/json{path}"]
        body = subprocess.run(argv, capture_output=True, check=True, timeout=30).stdout
        jq = subprocess.run(["jq", "-c", jq_filter], input=body, capture_output=True, check=True, timeout=30)
        return _load_json_stream(jq.stdout.decode())


@pytest.fixture
def peer_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No user config, config cache or token from the environment."""
    home = tmp_path_factory.mktemp("peer-home")
    for var in ("PVECTL_CONFIG", "PVECTL_CLUSTER", "PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "PVECTL_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.chdir(home)
    from pvectl import credentials

    credentials.reset()
    yield
    credentials.reset()


@pytest.fixture
def peer(fakepve: Any, fakepve_cafile: str, tmp_path: Path, peer_env: None) -> Peer:
    """fakepve with three nodes (pve3 without guests), four VMs and a template, and an API token.

    Guests: 100 web1 (running, pve1), 101 db1 (stopped, pve2), 102 cache1 (running, pve2),
    103 batch1 (stopped, pve1), 9000 tmpl-debian12 (template, pve1, tags template;debian).
    """
    pve = fakepve
    pve.add_vm(100, "web1", node="pve1", status="running",
               config={"cores": 2, "memory": 2048, "tags": "prod;web", "scsi0": "local-lvm:vm-100-disk-0,size=32G"})
    pve.add_vm(101, "db1", node="pve2", status="stopped",
               config={"cores": 4, "memory": 8192, "tags": "prod;db", "scsi0": "local-lvm:vm-101-disk-0,size=64G"})
    pve.add_vm(102, "cache1", node="pve2", status="running", config={"cores": 1, "memory": 1536, "tags": "prod"})
    pve.add_vm(103, "batch1", node="pve1", status="stopped", config={"cores": 8, "memory": 16384})
    pve.add_vm(9000, "tmpl-debian12", node="pve1", template=True,
               config={"cores": 2, "memory": 2048, "tags": "template;debian",
                       "scsi0": "local-lvm:base-9000-disk-0,size=8G"})
    pve.add_node("pve3")
    pve.apitokens[TOKEN_ID] = TOKEN_SECRET
    return Peer(pve, fakepve_cafile, tmp_path)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """`pvectl.cli.main.main()` in this process."""
    from pvectl.cli.main import main

    def run(*argv: str) -> Run:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def run_pvectl() -> Callable[..., Run]:
    """The installed console script as a child process."""

    def run(*argv: str) -> Run:
        p = subprocess.run([str(PVECTL), *argv], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        return Run(p.returncode, p.stdout, p.stderr)

    return run
