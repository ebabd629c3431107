"""`task diagnose` over a real sshd (sshdkit.py) against the simulator: each case the verdict names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sshdkit import Sshd, free_port, start_sshd

from pvectl import credentials
from pvectl.cluster import Cluster
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.sim.host import host_view


@pytest.fixture(scope="module")
def sim() -> Iterator[SimCluster]:
    with SimCluster(nodes=3, vms=12, templates=0, bind="127.0.0.1", port=0, time_scale=0.2) as s:
        yield s


@pytest.fixture(scope="module")
def sshd(sim: SimCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    host, port = sim.nodes["pve1"]
    server = start_sshd(tmp_path_factory.mktemp("ssh"), nodes=["pve1", "pve2"],
                        control_url=f"https://{host}:{port}", ca_file=str(sim.ca_path))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def config(sim: SimCluster, sshd: Sshd) -> Path:
    """The simulator's cluster-config with ssh_host/ssh_port per node; pve3's port has no sshd."""
    cfg = yaml.safe_load(sim.config_path.read_text())
    dead_port = free_port()
    for n in cfg["cluster"]["nodes"]:
        n["ssh_host"] = "127.0.0.1"
        n["ssh_port"] = sshd.ports.get(n["name"], dead_port)
    path = sshd.dir / "cluster-config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def pve(config: Path, sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    for var in ("PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "PVECTL_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PVECTL_SSH_CONFIG", str(sshd.client_config))
    credentials.reset()
    c = Cluster.from_config(str(config))
    yield c
    c.close()


def vm_on(sim: SimCluster, node: str, *, running: bool = True) -> int:
    b = sim.backend
    with b.mu:
        return min(v.vmid for v in b.state.vms.values()
                   if v.node == node and (v.status == "running") == running and not v.is_template
                   and not v.config.get("lock") and not v.config.get("protection"))


def test_stale_lock_then_unlock_with_yes(sim: SimCluster, pve: Cluster) -> None:
    vmid = vm_on(sim, "pve1")
    host_view(sim.backend).set_lock(vmid, "backup")        # the task that set it died with its node
    d = pve.tasks.diagnose(vmid)
    assert d.verdict == "stale-lock", d.to_dict()
    assert d.ssh and d.ssh["connected"] and d.ssh["lock_holders"] == []
    assert d.ssh["config_lock"] == "backup"
    assert f"qm unlock {vmid}" in d.next_commands[0]
    assert sim.backend.state.vms[vmid].config.get("lock") == "backup"    # diagnosing changes nothing
    done = pve.tasks.diagnose(vmid, unlock=True, yes=True)
    assert done.unlocked is True
    assert "lock" not in sim.backend.state.vms[vmid].config


def test_backup_lock_names_the_vzdump_upid(sim: SimCluster, pve: Cluster) -> None:
    vmid = vm_on(sim, "pve2")
    upid = sim.hold_lock(vmid, kind="backup")
    try:
        d = pve.tasks.diagnose(vmid)
        assert d.verdict == "backup-lock", d.to_dict()
        assert upid in d.summary
        assert any(upid in c for c in d.next_commands)
        # vzdump sets `lock: backup` under the flock and lets the flock go (qemu-server
        # PVE/VZDump/QemuServer.pm prepare -> QemuConfig->set_lock): nobody holds the lock file, and
        # the process over ssh is the vzdump worker named by the UPID
        assert d.ssh and d.ssh["lock_holders"] == []
        assert d.ssh["process"]["pid"] == int(upid.split(":")[2], 16)
        from pvectl.errors import GuardRefused

        with pytest.raises(GuardRefused):        # a live lock is never cleared
            pve.tasks.diagnose(vmid, unlock=True, yes=True)
        assert sim.backend.state.vms[vmid].config.get("lock") == "backup"
    finally:
        sim.release_lock(vmid)


def test_healthy_migration_in_progress(sim: SimCluster, pve: Cluster) -> None:
    from pvectl.writes import Writer

    vmid = vm_on(sim, "pve1")
    import io

    w = Writer(pve.config, pve.transport, command="pvectl test", out=io.StringIO())
    r = pve.vms.resolve(vmid)
    from pvectl.migration import migrate

    res = migrate(pve, vmid, "pve2", writer=w, with_local_disks=True, wait=False)
    assert r.node == "pve1" and res.upid
    try:
        d = pve.tasks.diagnose(res.upid)
        assert d.verdict == "healthy", d.to_dict()
        assert d.ssh and d.ssh["process"]["pid"] == int(res.upid.split(":")[2], 16)
        assert d.ssh["process"]["cmd"] == f"task {res.upid}"
        assert any(f"pvectl task wait {res.upid}" == c for c in d.next_commands)
    finally:
        sim.backend.engine.stop(res.upid)
        sim.backend.engine.get(res.upid).done.wait(60)


def test_d_state_is_a_storage_hang(sim: SimCluster, pve: Cluster) -> None:
    vmid = vm_on(sim, "pve1", running=False)
    upid = sim.hold_lock(vmid, kind="backup")
    try:
        host_view(sim.backend).stall(upid, "D", "nfs_wait_bit_killable")
        d = pve.tasks.diagnose(upid)
        assert d.verdict == "storage-hang", d.to_dict()
        assert "nfs_wait_bit_killable" in d.summary
        assert d.ssh and d.ssh["process"]["stat"] == "D"
    finally:
        sim.release_lock(vmid)


def test_ssh_unreachable_still_reports_the_api(sim: SimCluster, pve: Cluster) -> None:
    vmid = vm_on(sim, "pve3")
    upid = sim.hold_lock(vmid, kind="backup")
    try:
        started = time.monotonic()
        d = pve.tasks.diagnose(vmid)
        assert time.monotonic() - started < 30
        assert d.verdict == "ssh-unreachable", d.to_dict()
        assert "locked (backup)" in d.summary
        assert d.ssh and d.ssh["connected"] is False and "refused" in d.ssh["error"].lower()
        assert any(upid in e for e in d.evidence)
    finally:
        sim.release_lock(vmid)


def test_cli_prints_verdict_evidence_and_next_commands(sim: SimCluster, config: Path, sshd: Sshd,
                                                       tmp_path: Path) -> None:
    vmid = vm_on(sim, "pve2", running=False)
    host_view(sim.backend).set_lock(vmid, "clone")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVECTL_")}
    env.update(PVECTL_SSH_CONFIG=str(sshd.client_config), PVECTL_AUDIT_LOG=str(tmp_path / "a.jsonl"))
    argv = [sys.executable, "-m", "pvectl.cli.main", "--config", str(config)]
    try:
        p = subprocess.run(argv + ["-o", "table", "task", "diagnose", str(vmid)], env=env, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        first = p.stdout.splitlines()[0]
        assert first.startswith("stale-lock:") and f"VM {vmid} is locked (clone)" in first
        assert f"qm unlock {vmid}" in p.stdout
        # --unlock without --yes: refused, nothing changes
        p = subprocess.run(argv + ["task", "diagnose", str(vmid), "--unlock"], env=env, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 3, p.stdout + p.stderr
        assert sim.backend.state.vms[vmid].config.get("lock") == "clone"
        p = subprocess.run(argv + ["-o", "json", "task", "diagnose", str(vmid), "--unlock", "--yes"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        out: dict[str, Any] = json.loads(p.stdout)
        assert out["unlocked"] is True and out["verdict"] == "stale-lock"
        assert "lock" not in sim.backend.state.vms[vmid].config
    finally:
        host_view(sim.backend).set_lock(vmid, None)
