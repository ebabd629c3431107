"""`pvectl vm migrate` against the simulator: exit codes, exact texts, JSON shape, what the simulated
cluster holds afterwards, and that refusals and `--check` send no write (the simulator's request log)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cliharness import Run
from testkit import move_to_shared

from pvectl.sim.cluster import Cluster as SimCluster

GIB = 1024**3


@pytest.fixture(autouse=True)
def _audit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(path))
    return path


@pytest.fixture
def pv(cli: Callable[..., Run], fresh_sim: SimCluster, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """`pvectl --config <sim config> ARGS` in this process (JSON output unless -o is given)."""

    def run(*args: str) -> Run:
        argv = ["--config", str(fresh_sim.config_path), *args]
        monkeypatch.setattr(sys, "argv", ["pvectl", *argv])
        return cli(*argv)

    return run


def node_of(sim: SimCluster, vmid: int) -> str:
    return sim.backend.state.vms[vmid].node


def writes_since(sim: SimCluster, seq: int) -> list[dict[str, Any]]:
    return [e for e in sim.requests_log(since=seq) if e["method"] != "GET"]


def error(r: Run) -> dict[str, Any]:
    assert r.out.count("\n") == 1, r.out
    return json.loads(r.out)["error"]


# ------------------------------------------------------------------------------------------- --check
def test_check_allowed_exits_0_and_changes_nothing(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    seq = fresh_sim.server.requests.last_seq
    r = pv("vm", "migrate", "103", "pve2", "--check")
    assert r.code == 0, r.err
    d = r.json
    assert (d["vmid"], d["name"], d["node"], d["target"], d["mode"], d["verdict"], d["allowed"]) == \
        (103, "cache-01", "pve1", "pve2", "offline", "ok", True)
    assert [(f["check"], f["level"]) for f in d["findings"]] == [
        ("target", "ok"), ("quorum", "ok"), ("lock", "ok"), ("mode", "ok"), ("storage", "ok"), ("local-disks", "ok"),
        ("memory", "ok")]
    assert d["local_disks"] == ["local-lvm:vm-103-cloudinit", "local-lvm:vm-103-disk-0"]
    assert writes_since(fresh_sim, seq) == []
    assert node_of(fresh_sim, 103) == "pve1"


def test_check_refused_exits_3_with_the_reason_and_the_fix(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    seq = fresh_sim.server.requests.last_seq
    r = pv("-o", "table", "vm", "migrate", "web-01", "pve2", "--check")
    assert r.code == 3, r.err
    lines = r.out.splitlines()
    assert lines[0] == "VM 100 (web-01) pve1 -> pve2, live migration: REFUSED"
    assert "  REFUSED  local-disks      a live migration with local disks needs --with-local-disks: " \
           "local-lvm:vm-100-cloudinit (ide2), local-lvm:vm-100-disk-0 (scsi0)" in lines
    assert any(line.strip().startswith("fix: add --with-local-disks") for line in lines)
    assert writes_since(fresh_sim, seq) == []
    r = pv("vm", "migrate", "web-01", "pve2", "--check", "--with-local-disks")
    assert r.code == 0 and r.json["verdict"] == "ok"
    assert node_of(fresh_sim, 100) == "pve1"


# ------------------------------------------------------------------------------------------ migrate
def test_live_with_local_disks_refused_then_allowed_with_the_flag(pv: Callable[..., Run],
                                                                  fresh_sim: SimCluster) -> None:
    seq = fresh_sim.server.requests.last_seq
    r = pv("vm", "migrate", "100", "pve2")
    assert r.code == 3
    e = error(r)
    assert e["type"] == "GuardRefused"
    assert e["message"] == ("cannot migrate VM 100 (web-01) to pve2: a live migration with local disks needs "
                            "--with-local-disks: local-lvm:vm-100-cloudinit (ide2), local-lvm:vm-100-disk-0 (scsi0)")
    assert writes_since(fresh_sim, seq) == []

    r = pv("vm", "migrate", "100", "pve2", "--with-local-disks")
    assert r.code == 0, r.out + r.err
    d = r.json
    assert set(d) == {"vmid", "name", "action", "outcome", "source", "target", "node", "mode", "status", "upid",
                      "exitstatus", "duration", "duration_seconds", "downtime_ms", "local_disks", "warnings"}
    assert (d["vmid"], d["action"], d["outcome"], d["source"], d["node"], d["mode"], d["status"], d["exitstatus"],
            d["downtime_ms"]) == (100, "migrate", "done", "pve1", "pve2", "live", "running", "OK", 42)
    assert re.fullmatch(r"\d\d:\d\d:\d\d", d["duration"])
    assert [w["path"] for w in writes_since(fresh_sim, seq)] == ["/api2/json/nodes/pve1/qemu/100/migrate"]
    vm = fresh_sim.backend.state.vms[100]
    assert (vm.node, vm.status) == ("pve2", "running")


def test_live_on_shared_storage_table(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    move_to_shared(fresh_sim.backend, 100)
    r = pv("-o", "table", "vm", "migrate", "web-01", "pve3")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert re.fullmatch(r"VM 100 \(web-01\) migrated live from pve1 to pve3 in \d\d:\d\d:\d\d \(downtime 42 ms\)",
                        lines[0]), lines[0]
    assert lines[1] == "  status running on pve3"
    assert lines[2].startswith("  task   UPID:pve1:") and ":qmigrate:100:" in lines[2]
    assert "pvectl: VM web-01 -> pve3: memory " in r.err      # progress lines on a non-terminal stderr
    vm = fresh_sim.backend.state.vms[100]
    assert (vm.node, vm.status) == ("pve3", "running")


def test_offline_migration_of_a_stopped_vm(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    r = pv("-o", "table", "vm", "migrate", "103", "pve2")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert re.fullmatch(r"VM 103 \(cache-01\) migrated offline from pve1 to pve2 in \d\d:\d\d:\d\d", lines[0])
    assert lines[1:4] == ["  status stopped on pve2", "  disk   local-lvm:vm-103-cloudinit moved to pve2",
                          "  disk   local-lvm:vm-103-disk-0 moved to pve2"]
    assert node_of(fresh_sim, 103) == "pve2"
    assert "pve2/local-lvm:vm-103-disk-0" in fresh_sim.backend.state.volumes


def test_offline_flag_on_a_running_vm(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    r = pv("-o", "table", "vm", "migrate", "100", "pve2", "--offline", "--with-local-disks")
    assert r.code == 3
    assert r.err == ("pvectl: error: cannot migrate VM 100 (web-01) to pve2: the VM is running: an offline migration "
                     "needs a stopped VM (Proxmox: can't migrate running VM without --online) (hint: shut it down "
                     "first (pvectl vm shutdown 100), or drop --offline to migrate it live)\n")


def test_target_offline_own_node_unknown_node(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    fresh_sim.stop_node("pve3")
    seq = fresh_sim.server.requests.last_seq
    assert error(pv("vm", "migrate", "103", "pve3"))["message"] == \
        "cannot migrate VM 103 (cache-01) to pve3: target node pve3 is offline (not in the cluster membership)"
    r = pv("vm", "migrate", "103", "pve1")
    assert r.code == 3
    assert error(r)["message"] == \
        "cannot migrate VM 103 (cache-01) to pve1: the VM is already on pve1 (Proxmox: target is local node.)"
    r = pv("vm", "migrate", "103", "pve9")
    assert r.code == 3 and error(r)["hint"] == "cluster members: pve1, pve2, pve3"
    assert writes_since(fresh_sim, seq) == []
    assert node_of(fresh_sim, 103) == "pve1"


def test_not_enough_memory(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    move_to_shared(fresh_sim.backend, 100)
    fresh_sim.set_node("pve2", mem_total=32 * GIB, mem_used=29 * GIB)
    r = pv("vm", "migrate", "100", "pve2")
    assert r.code == 3
    assert error(r)["message"] == ("cannot migrate VM 100 (web-01) to pve2: pve2 has 3.0 GiB free; the VM needs "
                                   "4.0 GiB plus a 1.6 GiB reserve (5.6 GiB)")
    assert node_of(fresh_sim, 100) == "pve1"


def test_locked_vm(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    fresh_sim.hold_lock(103, kind="backup")
    try:
        r = pv("vm", "migrate", "103", "pve2", "--check")
        assert r.code == 3
        lock = next(f for f in r.json["findings"] if f["check"] == "lock")
        assert (lock["level"], lock["reason"]) == ("refuse", "the VM is locked (backup): a task is using it")
    finally:
        fresh_sim.release_lock(103)


def test_dry_run_prints_curl_without_the_secret(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    seq = fresh_sim.server.requests.last_seq
    r = pv("--dry-run", "vm", "migrate", "103", "pve2", "--bwlimit", "50M")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == ("# migrate VM 103 (cache-01) offline from pve1 to pve2, local disks: "
                        "local-lvm:vm-103-cloudinit, local-lvm:vm-103-disk-0")
    curl = lines[1]
    assert curl.startswith("curl -s --cacert ") and "-X POST" in curl
    assert "--data-urlencode target=pve2 --data-urlencode online=0 --data-urlencode bwlimit=51200 " in curl
    assert curl.endswith("/api2/json/nodes/pve1/qemu/103/migrate")
    assert fresh_sim.token_secret not in r.out + r.err
    assert writes_since(fresh_sim, seq) == []
    assert node_of(fresh_sim, 103) == "pve1"


def test_task_failure_exits_1_with_the_log_tail(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    fresh_sim.fail_task(type="qmigrate", message="migration aborted")
    r = pv("vm", "migrate", "103", "pve2")
    assert r.code == 1
    e = error(r)
    assert (e["type"], e["exitstatus"], e["node"]) == ("TaskFailed", "migration aborted", "pve1")
    assert e["upid"].split(":")[5:7] == ["qmigrate", "103"]
    assert isinstance(e["log_tail"], list)
    assert node_of(fresh_sim, 103) == "pve1"

    fresh_sim.fail_task(type="qmigrate", message="migration aborted")
    r = pv("-o", "table", "vm", "migrate", "103", "pve2")
    assert r.code == 1
    assert r.err.splitlines()[0] == "pvectl: error: migration failed: migration aborted"
    assert r.err.splitlines()[-1].startswith("pvectl: full log: pvectl task log UPID:pve1:")


def test_no_wait_and_usage_errors(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    r = pv("vm", "migrate", "103", "pve2", "--no-wait")
    assert r.code == 0 and r.json["outcome"] == "started" and r.json["upid"].startswith("UPID:pve1:")
    r = pv("vm", "migrate", "100", "pve2", "--online", "--offline")
    assert r.code == 2 and "not allowed with argument" in r.err
    r = pv("vm", "migrate", "106", "pve2", "--bwlimit", "fast")
    assert r.code == 2 and error(r)["message"] == "invalid bandwidth limit 'fast'"


def test_ctrl_c_names_the_migration_that_runs_on(pv: Callable[..., Run], fresh_sim: SimCluster,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from pvectl.cli import migrate as cli_migrate

    def interrupt(self: Any, ev: dict[str, Any]) -> None:
        if ev.get("event") == "progress":
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_migrate._Display, "event", interrupt)
    r = pv("vm", "migrate", "100", "pve2", "--with-local-disks")
    assert r.code == 130
    [upid] = r.json["upids"]
    assert r.json["interrupted"] is True and upid.split(":")[5:7] == ["qmigrate", "100"]
    assert f"pvectl: resume with: pvectl task wait {upid}" in r.err
