"""Each library `Cluster` has its own API token: read once (however many threads start together),
read again only by its own `refresh_credentials()`, never because another Cluster in the process
refreshed. The token comes from a `pass` on PATH that logs each call (the reads are counted)."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import pvectl
from pvectl import credentials
from pvectl.sim.cluster import Cluster as SimCluster


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with SimCluster(nodes=2, vms=4, templates=1, bind="127.0.0.1", port=0, time_scale=0.02) as s:
        yield s


class FakePass:
    """`pass show NAME` prints `store/NAME` after `delay` s and logs `show NAME` to `calls`."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.store = root / "store"
        self.store.mkdir()
        self.calls = root / "pass-calls"
        bindir = root / "bin"
        bindir.mkdir()
        script = bindir / "pass"
        script.write_text(f'#!/bin/sh\necho "$@" >> {self.calls}\nsleep {delay}\nexec cat "{self.store}/$2"\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
        for key in ("PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET"):
            monkeypatch.delenv(key, raising=False)

    def entry(self, name: str, token_id: str, secret: str) -> None:
        path = self.store / name
        path.touch(mode=0o600)                                   # a secret store: owner-only
        path.write_text(f"{token_id}\n{secret}\n")

    def shown(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def fake_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePass:
    return FakePass(tmp_path, monkeypatch)


@pytest.fixture(autouse=True)
def _no_process_cache() -> Iterator[None]:
    credentials.reset()
    yield
    credentials.reset()


def config_for(sim: SimCluster, tmp_path: Path, entry: str) -> str:
    doc = yaml.safe_load(sim.config_path.read_text())
    doc["credentials"] = {"pass_path": entry}
    path = tmp_path / f"config-{entry}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def connect(config: str, tmp_path: Path) -> pvectl.Cluster:
    return pvectl.Cluster.from_config(config, audit=str(tmp_path / "audit.jsonl"), connect_timeout=2.0,
                                      read_timeout=10.0)


def test_refreshing_one_cluster_does_not_read_the_other_clusters_token(
        sim: SimCluster, fake_pass: FakePass, tmp_path: Path) -> None:
    fake_pass.entry("a", sim.token_id, sim.token_secret)
    b_id = "ops@pve!second"
    fake_pass.entry("b", b_id, sim.add_token(b_id))
    with connect(config_for(sim, tmp_path, "a"), tmp_path) as a, \
            connect(config_for(sim, tmp_path, "b"), tmp_path) as b:
        assert a.version() and b.version()
        assert sorted(fake_pass.shown()) == ["show a", "show b"]
        a.refresh_credentials()
        assert fake_pass.shown()[2:] == ["show a"]                 # a's own token, read again
        vm = b.vms.list()[0]
        b.vms.set(vm.vmid, {"description": "audited"})            # b's write and its audit record
        assert b.version()
        assert fake_pass.shown()[3:] == [], "b's token was read again after a's refresh"
        records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert records and {r["token_id"] for r in records} == {b_id}


def test_refreshing_one_cluster_leaves_the_other_clusters_early_pass_running(
        sim: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # b's `pass show` starts when b is made (it decrypts while the caller goes on); a's refresh must
    # neither stop it nor make b run pass a second time
    slow = FakePass(tmp_path, monkeypatch, delay=0.3)
    slow.entry("a", sim.token_id, sim.token_secret)
    slow.entry("b", sim.token_id, sim.token_secret)
    with connect(config_for(sim, tmp_path, "a"), tmp_path) as a:
        assert a.version()
        with connect(config_for(sim, tmp_path, "b"), tmp_path) as b:
            a.refresh_credentials()
            assert b.version()
    assert sorted(slow.shown()) == ["show a", "show a", "show b"]


def test_eight_threads_starting_together_read_each_clusters_token_once(
        sim: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = FakePass(tmp_path, monkeypatch, delay=0.2)          # gpg takes a while to decrypt
    slow.entry("a", sim.token_id, sim.token_secret)
    config = config_for(sim, tmp_path, "a")
    clusters = [connect(config, tmp_path), connect(config, tmp_path)]
    barrier = threading.Barrier(16)
    answers: list[object] = []

    def first_call(pve: pvectl.Cluster) -> None:
        barrier.wait()
        answers.append(pve.version())

    threads = [threading.Thread(target=first_call, args=(pve,)) for pve in clusters for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    for pve in clusters:
        pve.close()
    assert len(answers) == 16 and all(answers)
    assert slow.shown() == ["show a", "show a"]                # once per Cluster, not per thread


def test_pass_starts_when_the_cluster_is_made_before_any_request(
        sim: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI's start-up overlap: gpg decrypts while the HTTP/TLS modules load and the TLS connect runs
    slow = FakePass(tmp_path, monkeypatch, delay=0.5)
    slow.entry("a", sim.token_id, sim.token_secret)
    since = sim.server.requests.last_seq
    with connect(config_for(sim, tmp_path, "a"), tmp_path) as pve:
        deadline = time.monotonic() + 10
        while not slow.shown() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert slow.shown() == ["show a"]
        assert sim.requests_log(since=since) == []              # no request was made yet
        assert pve.version()
    assert slow.shown() == ["show a"]
