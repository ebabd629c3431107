"""Migrate: SYNC checks, offline and live migration logs, local disks, unreachable target.

Spec: pve-semantics row 9 and §9.2 (errors, local disks, offline target), C9 (ssh failure text),
§2.2 (migration log format: a timestamp on every line, final lines), §3.1 (lock: migrate).
"""

from __future__ import annotations

import re

from apiharness import Client, migration_log as body, wait_until
from testkit import move_to_shared

from pvectl.sim.backend import Backend


# ---------------------------------------------------------------- SYNC errors (row 9)
def test_target_is_local_node(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/103/migrate", {"target": "pve1"})
    assert (r.status, r.reason) == (400, "Parameter verification failed.")
    assert r.json["errors"] == {"target": "target is local node."}


def test_no_such_cluster_node(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/103/migrate", {"target": "pve9"})
    assert (r.status, r.reason) == (500, "no such cluster node 'pve9'")


def test_running_without_online(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve2"})
    assert (r.status, r.reason) == (500, "can't migrate running VM without --online")


def test_root_only_options(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/103/migrate", {"target": "pve2", "force": 1})
    assert r.status == 400 and r.json["errors"] == {"force": "Only root may use this option."}


def test_locked_vm(client: Client, backend: Backend) -> None:
    backend.state.vms[103].config["lock"] = "backup"
    r = client.fail("POST", "/nodes/pve1/qemu/103/migrate", {"target": "pve2"})
    assert (r.status, r.reason) == (500, "VM is locked (backup)")
    r = client.fail("GET", "/nodes/pve1/qemu/103/migrate")
    assert r.reason == "VM is locked (backup)"


# ---------------------------------------------------------------- offline (§9.2, §2.2)
def test_offline_migration_with_local_disks(client: Client, backend: Backend) -> None:
    upid = client.ok("POST", "/nodes/pve1/qemu/103/migrate", {"target": "pve2"})
    assert upid.split(":")[5:7] == ["qmigrate", "103"]
    wait_until(lambda: backend.state.vms[103].config.get("lock") == "migrate" or client.task_status(upid)["status"]
               == "stopped", "lock: migrate")
    assert client.wait(upid)["exitstatus"] == "OK"
    lines = body(client.log(upid))
    assert lines[0] == "starting migration of VM 103 to node 'pve2' (10.0.0.2)"
    assert "found local disk 'local-lvm:vm-103-disk-0' (attached)" in lines
    assert "copying local disk images" in lines
    assert "volume 'local-lvm:vm-103-disk-0' is 'local-lvm:vm-103-disk-0' on the target" in lines
    assert lines[-2:] == ["migration finished successfully (duration D)", "TASK OK"]
    conf = client.get("/nodes/pve2/qemu/103/config")
    assert "lock" not in conf
    r = client.fail("GET", "/nodes/pve1/qemu/103/status/current")
    assert r.reason == "Configuration file 'nodes/pve1/qemu-server/103.conf' does not exist"
    assert "pve2/local-lvm:vm-103-disk-0" in backend.state.volumes
    assert "pve1/local-lvm:vm-103-disk-0" not in backend.state.volumes
    entry = next(e for e in client.get("/cluster/resources", {"type": "vm"}) if e["vmid"] == 103)
    assert entry["node"] == "pve2"


def test_online_flag_on_stopped_vm_runs_offline(client: Client) -> None:
    status, lines = client.run("POST", "/nodes/pve1/qemu/103/migrate", {"target": "pve3", "online": 1})
    assert status == "OK"
    assert not [line for line in lines if "online/live" in line]
    assert client.get("/nodes/pve3/qemu/103/status/current")["status"] == "stopped"


# ---------------------------------------------------------------- live (§9.2, §2.2)
def test_live_with_local_disks_needs_flag(client: Client, backend: Backend) -> None:
    status, lines = client.run("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve2", "online": 1})
    assert status == "migration aborted"
    assert body(lines) == [
        "starting migration of VM 100 to node 'pve2' (10.0.0.2)",
        "found local disk 'local-lvm:vm-100-cloudinit' (attached)",
        "found local disk 'local-lvm:vm-100-disk-0' (attached)",
        "can't migrate local disk 'local-lvm:vm-100-cloudinit': can't live migrate attached local disks without "
        "with-local-disks option",
        "can't migrate local disk 'local-lvm:vm-100-disk-0': can't live migrate attached local disks without "
        "with-local-disks option",
        "ERROR: Problem found while scanning volumes - can't migrate VM - check log",
        "aborting phase 1 - cleanup resources",
        "ERROR: migration aborted (duration D): Problem found while scanning volumes - can't migrate VM - check log",
        "TASK ERROR: migration aborted",
    ]
    conf = client.get("/nodes/pve1/qemu/100/config")
    assert "lock" not in conf                 # phase1_cleanup removes it again
    assert client.get("/nodes/pve1/qemu/100/status/current")["status"] == "running"


def test_live_with_local_disks(client: Client) -> None:
    pid = client.get("/nodes/pve1/qemu/100/status/current")["pid"]
    status, lines = client.run("POST", "/nodes/pve1/qemu/100/migrate",
                               {"target": "pve2", "online": 1, "with-local-disks": 1})
    assert status == "OK"
    text = body(lines)
    for expected in ("starting storage migration", "drive mirror is starting for drive-scsi0",
                     "all 'mirror' jobs are ready", "switching mirror jobs to actively synced mode",
                     "migration status: completed", "drive-scsi0: mirror-job finished",
                     "stopping NBD storage migration server on target."):
        assert expected in text, expected
    assert text[-2:] == ["migration finished successfully (duration D)", "TASK OK"]
    cur = client.get("/nodes/pve2/qemu/100/status/current")
    assert cur["status"] == "running" and cur["pid"] != pid


def test_live_on_shared_storage(client: Client, backend: Backend) -> None:
    move_to_shared(backend, 100)
    status, lines = client.run("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve3", "online": 1})
    assert status == "OK"
    text = body(lines)
    assert text[:3] == ["starting migration of VM 100 to node 'pve3' (10.0.0.3)",
                        "starting VM 100 on remote node 'pve3'", "start remote tunnel"]
    assert not [line for line in text if line.startswith("found local disk")]
    active = [line for line in text if line.startswith("migration active, transferred ")]
    assert active and all(re.fullmatch(r"migration active, transferred \d+\.\d \w+ of \d+\.\d \w+ VM-state, "
                                       r"\d+\.\d \w+/s", line) for line in active)
    assert client.get("/nodes/pve3/qemu/100/status/current")["status"] == "running"


def test_migration_to_offline_node(client: Client, backend: Backend) -> None:
    # §9.2: no pre-check of the node state; the ssh check in `prepare` fails (C9)
    backend.set_node_online("pve3", False)
    upid = client.ok("POST", "/nodes/pve1/qemu/103/migrate", {"target": "pve3"})
    st = client.wait(upid)
    assert st["exitstatus"] == "migration aborted"
    lines = body(client.log(upid))
    assert lines[-2:] == ["ERROR: migration aborted (duration D): Can't connect to destination address using "
                          "public key", "TASK ERROR: migration aborted"]
    assert not [line for line in lines if line.startswith("starting migration")]
    assert client.get("/nodes/pve1/qemu/103/status/current")["status"] == "stopped"
    assert "lock" not in client.get("/nodes/pve1/qemu/103/config")
