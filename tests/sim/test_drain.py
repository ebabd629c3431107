"""node drain against the simulator: 30 running VMs from pve1 onto pve2 and pve3, capacity checked in
the simulator after every move, a VM with a local device left with its reason, a migration failing
mid-drain reported while the drain goes on, max_workers from datacenter.cfg, and --undo."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pvectl import drain
from pvectl.cluster import Cluster
from pvectl.guards import migration_reserve
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.sim.models import GIB, VM, Volume
from pvectl.writes import Writer

SIZES_GIB = (1, 2, 4)
TARGET_TOTAL = 48 * GIB


def add_vm(sim: SimCluster, vmid: int, node: str, mem_gib: int, *, running: bool = True,
           extra: dict[str, Any] | None = None) -> None:
    b = sim.backend
    with b.mu:
        volid = f"ceph-vm:vm-{vmid}-disk-0"
        vm = VM(vmid=vmid, node=node, created_at=time.time() - 3600,
                config={"name": f"app-{vmid}", "memory": str(mem_gib * 1024), "cores": 1, "sockets": 1,
                        "scsi0": f"{volid},size=8G", "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0",
                        **(extra or {})})
        b.state.volumes[volid] = Volume(volid, 8 * GIB, vmid, None)
        if running:
            n = b.state.nodes[node]
            n.next_pid += 17
            vm.status = vm.qmpstatus = vm.prev_status = "running"
            vm.pid, vm.started_at, vm.mem_fraction = n.next_pid, time.time() - 600, 0.5
        b.state.vms[vmid] = vm
        b.changed()


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with SimCluster(nodes=3, vms=0, templates=0, bind="127.0.0.1", port=0, time_scale=0.01) as s:
        for t in ("pve2", "pve3"):
            s.set_node(t, mem_total=TARGET_TOTAL)
        for i in range(30):
            add_vm(s, 200 + i, "pve1", SIZES_GIB[i % 3])
        add_vm(s, 300, "pve1", 2, extra={"hostpci0": "0000:01:00.0,pcie=1"})   # a GPU passed through
        add_vm(s, 301, "pve1", 2, running=False)
        yield s


@pytest.fixture
def pve(sim: SimCluster) -> Iterator[Cluster]:
    c = Cluster.from_config(str(sim.config_path))
    yield c
    c.close()


def writer(pve: Cluster) -> Writer:
    return Writer(pve.config, pve.transport, command="pvectl node drain", out=io.StringIO())


def committed(sim: SimCluster, node: str) -> int:
    """Host memory plus the full maxmem of every VM running on `node`, from the simulator's state."""
    b = sim.backend
    with b.mu:
        n = b.state.nodes[node]
        return n.mem_host_used + sum(int(v.config["memory"]) * 1024**2 for v in b.state.vms.values()
                                     if v.node == node and v.status == "running")


def test_plan_places_every_vm_within_capacity_and_names_the_unmovable(sim: SimCluster, pve: Cluster) -> None:
    p = pve.nodes.drain_plan("pve1")
    assert sorted(p.targets) == ["pve2", "pve3"]
    assert len(p.moves) == 31                            # running VMs only; 301 is stopped
    [stuck] = p.unmovable
    assert stuck.vmid == 300 and any("local devices: hostpci0" in r for r in stuck.reasons)
    assert len(p.movable) == 30
    for t in ("pve2", "pve3"):
        planned = sum(m.maxmem for m in p.movable if m.target == t)
        cap = p.capacity[t]
        assert planned == cap["planned"]
        assert cap["used"] + planned + migration_reserve(TARGET_TOTAL) <= TARGET_TOTAL
    # both targets are used: one alone could not hold 70 GiB
    assert {m.target for m in p.movable} == {"pve2", "pve3"}
    assert sim.backend.state.vms[200].node == "pve1"      # planning moves nothing
    # one target alone: it fills up to its reserve, the rest is named with the memory reason
    one = pve.nodes.drain_plan("pve1", to=["pve2"])
    full = [m for m in one.unmovable if m.vmid != 300]
    assert full and all("reserve" in r for m in full for r in m.reasons)
    assert one.capacity["pve2"]["used"] + one.capacity["pve2"]["planned"] + migration_reserve(TARGET_TOTAL) \
        <= TARGET_TOTAL


def test_simulator_refuses_local_devices_like_qemu_server(sim: SimCluster, pve: Cluster) -> None:
    t = pve.transport
    pre = t.get("/nodes/pve1/qemu/300/migrate", node="pve1")
    assert pre["local_resources"] == ["hostpci0"]
    upid = t.request("POST", "/nodes/pve1/qemu/300/migrate", {"target": "pve2", "online": 1}, node="pve1")
    from pvectl.errors import TaskFailed

    with pytest.raises(TaskFailed) as err:
        pve.tasks.get(upid).wait(30)
    assert err.value.exitstatus == "migration aborted"
    assert any("can't migrate VM which uses local devices: hostpci0" in ln for ln in err.value.log_tail)
    assert sim.backend.state.vms[300].node == "pve1" and "lock" not in sim.backend.state.vms[300].config


def test_drain_moves_all_but_the_unmovable_capacity_checked_after_every_move(sim: SimCluster,
                                                                             pve: Cluster) -> None:
    sim.backend.state.datacenter["max_workers"] = 3
    checked: list[int] = []
    running = [0]
    peak = [0]
    mu = threading.Lock()
    limit = TARGET_TOTAL - migration_reserve(TARGET_TOTAL)

    def on_event(kind: str, move: drain.Move, prog: Any) -> None:
        with mu:
            if kind == "start":
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            elif kind == "done" and move.outcome in ("moved", "failed"):
                running[0] -= 1
            if kind == "done":
                for t in ("pve2", "pve3"):
                    assert committed(sim, t) <= limit, (t, committed(sim, t), limit)
                checked.append(move.vmid)
                if len(checked) == 5:          # mid-drain: the next migration task fails
                    sim.fail_task(type="qmigrate", message="migration aborted")

    res = pve.nodes.drain("pve1", on_event=on_event)
    assert res.parallel == 3 and 1 <= peak[0] <= 3
    outcomes = {m.vmid: m.outcome for m in res.plan.moves}
    failed = [m for m in res.plan.moves if m.outcome == "failed"]
    assert len(failed) == 1 and failed[0].detail and "migration aborted" in failed[0].detail
    assert outcomes[300] == "unmovable"
    assert sum(1 for o in outcomes.values() if o == "moved") == 29
    assert len(checked) == 31
    # the node's state at the end, read again: the failed one and the unmovable one are still there
    assert sorted(r["vmid"] for r in res.remaining) == sorted([300, failed[0].vmid])
    assert not res.ok
    with sim.backend.mu:
        on_pve1 = sorted(v.vmid for v in sim.backend.state.vms.values() if v.node == "pve1" and v.status == "running")
    assert on_pve1 == sorted([300, failed[0].vmid])


def test_drain_saves_the_plan_and_undo_moves_them_back(sim: SimCluster, pve: Cluster, tmp_path: Any) -> None:
    with sim.backend.mu:
        sim.backend.state.vms[300].config.pop("hostpci0")
    path = str(tmp_path / "drain.json")
    res = pve.nodes.drain("pve1", plan_file=path, parallel=8)
    assert res.ok and res.remaining == []
    saved = drain.DrainPlan.load(path)
    assert {m.outcome for m in saved.moves} == {"moved"}
    back = drain.undo_plan(pve, saved)
    assert back.kind == "undo" and len(back.movable) == 31
    done = drain.execute(pve, back, writer=writer(pve), parallel=8)
    assert done.ok
    with sim.backend.mu:
        assert all(sim.backend.state.vms[m.vmid].node == "pve1" for m in saved.moves)


def test_default_parallelism_is_proxmoxs_fallback_of_four(pve: Cluster) -> None:
    assert drain.max_workers(pve) == 4


def test_migrate_auto_picks_the_allowed_node_with_most_free_memory(sim: SimCluster, pve: Cluster) -> None:
    sim.set_node("pve3", mem_total=96 * GIB)
    assert drain.auto_target(pve, 200) == "pve3"
    with sim.backend.mu:
        sim.backend.state.storages["ceph-vm"].nodes = ["pve1", "pve2"]    # pve3 lacks the VM's storage
    assert drain.auto_target(pve, 200) == "pve2"
    from pvectl.errors import GuardRefused

    with pytest.raises(GuardRefused, match="hostpci0"):
        drain.auto_target(pve, 300)


# ------------------------------------------------------------------------------------------ CLI
def cli(sim: SimCluster, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from pvectl.cli.main import main

    capsys.readouterr()
    rc = main(["--config", str(sim.config_path), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def posts(sim: SimCluster) -> list[str]:
    return [r["path"] for r in sim.requests_log() if r.get("method") == "POST"]


def test_cli_dry_run_prints_the_plan_and_sends_nothing(sim: SimCluster, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    sim.clear_requests()
    rc, out, err = cli(sim, capsys, "-o", "json", "node", "drain", "pve1", "--dry-run")
    import json

    plan = json.loads(out)
    assert rc == 3, err                                  # one VM has no target
    assert [m["vmid"] for m in plan["moves"] if not m["target"]] == [300]
    rc, out, err = cli(sim, capsys, "-o", "table", "node", "drain", "pve1")
    assert rc == 3 and "add --yes" in err and "UNMOVABLE" in out and "hostpci0" in out
    assert posts(sim) == []
    rc, _, err = cli(sim, capsys, "-o", "table", "node", "drain", "pve1", "--parallel", "0", "--yes")
    assert rc == 2 and "--parallel" in err
    rc, _, err = cli(sim, capsys, "-o", "table", "node", "drain")
    assert rc == 2 and "--undo" in err


def test_cli_drain_runs_saves_the_plan_and_exits_1_while_a_vm_remains(
        sim: SimCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    path = tmp_path / "plan.json"
    rc, out, err = cli(sim, capsys, "-o", "table", "node", "drain", "pve1", "--yes", "--plan-file", str(path),
                       "--parallel", "6")
    assert rc == 1, err
    assert "30/31 VM(s) moved" in out and "pve1 still holds 1 running VM(s): 300 (app-300)" in out
    assert err.count(": moved in ") == 30
    assert path.is_file()


def test_cli_migrate_auto(sim: SimCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                          tmp_path: Any) -> None:
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    sim.set_node("pve2", mem_total=96 * GIB)
    rc, out, err = cli(sim, capsys, "-o", "json", "vm", "migrate", "201", "auto")
    assert rc == 0, err
    assert "target pve2" in err and sim.backend.state.vms[201].node == "pve2"
    rc, out, err = cli(sim, capsys, "-o", "table", "vm", "migrate", "300", "auto")
    assert rc == 3 and "hostpci0" in err and sim.backend.state.vms[300].node == "pve1"


def test_cli_drain_ends_at_its_deadline_with_exit_4(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import json

    from pvectl.cli.main import main

    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    with SimCluster(nodes=3, vms=0, templates=0, bind="127.0.0.1", port=0, time_scale=0.5) as slow:
        for i in range(4):
            add_vm(slow, 200 + i, "pve1", 2)      # a live migration takes ~4 PVE s = 2 s here
        started = time.monotonic()
        rc = main(["--config", str(slow.config_path), "-o", "json", "--timeout", "1", "node", "drain", "pve1",
                   "--yes", "--parallel", "2", "--plan-file", str(tmp_path / "p.json")])
        took = time.monotonic() - started
        out = json.loads(capsys.readouterr().out)
    assert rc == 4 and took < 1 + 5
    outcomes = sorted(m["outcome"] for m in out["moves"])
    assert outcomes == ["skipped", "skipped", "timeout", "timeout"]
    assert all(m["upid"] for m in out["moves"] if m["outcome"] == "timeout")
