"""CLI tests against the in-process simulator (`pvectl.sim.cluster.Cluster`) on 127.0.0.1.

Fixtures (the test modules take everything from fixtures and never `import conftest`, so this
directory can be collected together with the other test directories):
- `cli(*argv)`: `pvectl.cli.main.main()` in this process; stdout/stderr captured with capsys.
- `run_pvectl(*argv)`: the installed `pvectl` console script as a child process.
- `seed_curl(path, jq_filter)` / `seed_curl_for(sim)`: the seed's `curl ... | jq FILTER` pipelines,
  with the Authorization header read by curl from a mode-0600 header file (`-H @file`), so the
  secret never appears on an argv.
- `variant_config(base, name, edit)`: a copy of a cluster-config.yaml edited as YAML, in tmp_path.
- `token_config(sim, name, privs)`: a config using a new API token with exactly those privileges.
- `sim` (per module, read-only), `fresh_sim` (per test), `start_sim(**kw)` (custom shapes).

No test here measures time: failover is proven by counting connection attempts and by the
simulator's request log (which node answered).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cliharness import Run, token_config, variant_config
from testkit import load_json_stream

from pvectl.cli.main import main
from pvectl.sim.cluster import Cluster

PVECTL = Path(sys.executable).with_name("pvectl")
CURL = "/usr/bin/curl"
JQ = "/usr/bin/jq"
GIB = 1024**3


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No user config, config cache, token or cluster choice leaks in from the environment."""
    home = tmp_path_factory.mktemp("home")
    for var in ("PVECTL_CONFIG", "PVECTL_CLUSTER", "PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "PVECTL_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.chdir(home)
    from pvectl import credentials

    credentials.reset()
    yield
    credentials.reset()


def _start_sim(**kw: Any) -> Cluster:
    opts: dict[str, Any] = dict(nodes=3, vms=12, templates=2, bind="127.0.0.1", port=0, time_scale=0.02)
    opts.update(kw)
    return Cluster(**opts).start()


@pytest.fixture(scope="module")
def sim() -> Iterator[Cluster]:
    """One simulated cluster per test module; tests using it must not change its state."""
    s = _start_sim()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def fresh_sim() -> Iterator[Cluster]:
    """A simulated cluster of its own, for tests that change state or stop listeners."""
    s = _start_sim()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run the CLI in this process; returns exit code, stdout and stderr."""

    def run(*argv: str) -> Run:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse usage errors
            code = e.code if isinstance(e.code, int) else 1
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def run_pvectl(*argv: str, env: dict[str, str] | None = None) -> Run:
    """The installed console script in a child process (stdout is a pipe, not a TTY)."""
    p = subprocess.run([str(PVECTL), *argv], capture_output=True, text=True, timeout=60,
                       env=env if env is not None else dict(os.environ), stdin=subprocess.DEVNULL)
    return Run(p.returncode, p.stdout, p.stderr)


class SeedCurl:
    """The seed's read pipelines (`curl -H "Authorization: ..." URL | jq FILTER`) against one node.

    `-sk` is replaced by `-s --cacert <cluster CA>`; the Authorization header comes from a header
    file (`-H @file`) so that the secret is never on a command line.
    """

    def __init__(self, sim: Cluster, workdir: Path, node: str = "pve1") -> None:
        self.sim = sim
        self.base = sim.url(node) + "/api2/json"
        self.header_file = workdir / "auth-header"
        fd = os.open(self.header_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"Authorization: PVEAPIToken={sim.token_id}={sim.token_secret}\n")

    def __call__(self, path: str, jq_filter: str) -> list[Any]:
        argv = [CURL, "-s", "--fail-with-body", "--cacert", str(self.sim.ca_path), "-H", f"@{self.header_file}",
                self.base + path]
        assert not any(self.sim.token_secret in a for a in argv)
        body = subprocess.run(argv, capture_output=True, check=True, timeout=30).stdout
        jq = subprocess.run([JQ, "-c", jq_filter], input=body, capture_output=True, check=True, timeout=30)
        return load_json_stream(jq.stdout.decode())


@pytest.fixture
def seed_curl(sim: Cluster, tmp_path: Path) -> SeedCurl:
    return SeedCurl(sim, tmp_path)


@pytest.fixture
def seed_curl_for(tmp_path: Path) -> Callable[[Cluster], SeedCurl]:
    def make(s: Cluster) -> SeedCurl:
        d = tmp_path / f"curl-{id(s)}"
        d.mkdir(exist_ok=True)
        return SeedCurl(s, d)

    return make


@pytest.fixture(name="run_pvectl")
def run_pvectl_fixture() -> Callable[..., Run]:
    return run_pvectl


@pytest.fixture(name="variant_config")
def variant_config_fixture(tmp_path: Path) -> Callable[..., Path]:
    def make(base: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
        return variant_config(base, tmp_path / name, edit)

    return make


@pytest.fixture(name="token_config")
def token_config_fixture(tmp_path: Path) -> Callable[..., Path]:
    def make(s: Cluster, name: str, privs: dict[str, list[str]]) -> Path:
        return token_config(s, tmp_path, name, privs)

    return make


@pytest.fixture
def start_sim() -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def start(**kw: Any) -> Cluster:
        s = _start_sim(**kw)
        started.append(s)
        return s

    try:
        yield start
    finally:
        for s in started:
            s.stop()
