"""Config flocks and the `lock` property: what a held lock does to other operations.

Spec: pve-semantics §3.2 (VM is locked: SYNC or TASK), §3.3 (flock timeouts, `trying to acquire lock...`),
§3.4 (clone locking; more in test_api_clone), row 5.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator

import pytest
from apiharness import Client, recorded, scaled, wait_until

from pvectl.sim.backend import Backend
from pvectl.schema import Schema

TIMEOUT_100 = "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"
TIMEOUT_103 = "can't lock file '/var/lock/qemu-server/lock-103.conf' - got timeout"


def test_held_flock_makes_stop_time_out(client: Client, backend: Backend) -> None:
    backend.hold_lock(100, kind="")              # the flock itself, no config lock
    status, lines = client.run("POST", "/nodes/pve1/qemu/100/status/stop")
    assert status == TIMEOUT_100
    assert lines == ["trying to acquire lock...", f"TASK ERROR: {TIMEOUT_100}"]
    assert client.get("/nodes/pve1/qemu/100/status/current")["status"] == "running"
    backend.release_lock(100)
    assert client.run("POST", "/nodes/pve1/qemu/100/status/stop")[0] == "OK"


def test_held_flock_makes_config_put_time_out(client: Client, backend: Backend) -> None:
    backend.hold_lock(100, kind="")
    r = client.fail("PUT", "/nodes/pve1/qemu/100/config", {"name": "x"})
    assert (r.status, r.reason) == (500, TIMEOUT_100)
    # POST runs the same update in a task
    status, _ = client.run("POST", "/nodes/pve1/qemu/100/config", {"name": "x"})
    assert status == TIMEOUT_100
    backend.release_lock(100)
    assert client.ok("PUT", "/nodes/pve1/qemu/100/config", {"name": "x"}) is None


def test_lock_property_is_checked_sync_by_config(client: Client, backend: Backend) -> None:
    backend.hold_lock(100)                       # kind "backup": `lock: backup` while it runs
    assert client.get("/nodes/pve1/qemu/100/config")["lock"] == "backup"
    assert client.get("/nodes/pve1/qemu/100/status/current")["lock"] == "backup"
    entry = next(e for e in client.get("/cluster/resources", {"type": "vm"}) if e["vmid"] == 100)
    assert entry["lock"] == "backup"            # read live (§10.2)
    r = client.fail("PUT", "/nodes/pve1/qemu/100/config", {"name": "x"})
    assert (r.status, r.reason) == (500, "VM is locked (backup)")
    r = client.fail("POST", "/nodes/pve1/qemu/100/clone", {"newid": 300})
    assert (r.status, r.reason) == (500, "VM is locked (backup)")
    backend.release_lock(100)
    assert "lock" not in client.get("/nodes/pve1/qemu/100/config")


def test_lock_property_without_flock_fails_power_tasks(client: Client, backend: Backend) -> None:
    backend.state.vms[100].config["lock"] = "migrate"
    backend.state.vms[103].config["lock"] = "migrate"
    status, _ = client.run("POST", "/nodes/pve1/qemu/100/status/shutdown")
    assert status == "VM is locked (migrate)"
    status, _ = client.run("POST", "/nodes/pve1/qemu/103/status/start")
    assert status == "VM is locked (migrate)"
    status, _ = client.run("PUT", "/nodes/pve1/qemu/103/resize", {"disk": "scsi0", "size": "+1G"})
    assert status == "VM is locked (migrate)"
    # a stopped VM's stop returns before the lock check (row 3)
    assert client.run("POST", "/nodes/pve1/qemu/103/status/stop")[0] == "OK"


def test_backup_lock_fails_at_the_config_check_not_the_flock(slow: tuple[Client, Backend]) -> None:
    # vzdump sets `lock: backup` under a short flock and releases it (AbstractConfig.pm::set_lock): the
    # next operation gets the flock at once and fails at check_lock, without "trying to acquire lock..."
    client, backend = slow
    backend.hold_lock(103)                       # stopped VM 103
    backend.hold_lock(100)                       # running VM 100
    for method, path, params in (("POST", "103/status/start", {}), ("DELETE", "103", {}),
                                 ("PUT", "103/resize", {"disk": "scsi0", "size": "+1G"}),
                                 ("POST", "100/status/stop", {}), ("POST", "103/snapshot", {"snapname": "s1"})):
        status, lines = client.run(method, f"/nodes/pve1/qemu/{path}", params)
        assert (status, lines) == ("VM is locked (backup)", ["TASK ERROR: VM is locked (backup)"]), path
    # QemuServer.pm::vm_start: with a backup running, a start of the running guest only resumes it
    assert client.run("POST", "/nodes/pve1/qemu/100/status/start")[0] == "OK"
    backend.release_lock(103)
    backend.release_lock(100)
    assert "lock" not in client.get("/nodes/pve1/qemu/103/config")
    assert client.run("POST", "/nodes/pve1/qemu/103/status/start")[0] == "OK"


def test_held_flock_times_out_after_ten_pve_seconds(slow: tuple[Client, Backend]) -> None:
    client, backend = slow
    backend.hold_lock(103, kind="")
    started = time.monotonic()
    status, lines = client.run("POST", "/nodes/pve1/qemu/103/status/start")
    assert time.monotonic() - started >= backend.scale(10) * 0.9       # lock_config's 10 s, scaled
    assert (status, lines) == (TIMEOUT_103, ["trying to acquire lock...", f"TASK ERROR: {TIMEOUT_103}"])
    backend.release_lock(103)


def test_answers_match_recorded_pve_errors(client: Client, backend: Backend) -> None:
    # spec/fixtures/errors: a PUT /config while the flock is held (PVE 8.1, recorded) ...
    flock = next(e["response"] for e in recorded("500_cant_lock_file_timeout.json")
                 if e.get("request", {}).get("method") == "PUT")
    backend.hold_lock(101, kind="")
    r = client.fail("PUT", "/nodes/pve2/qemu/101/config", {"memory": 4096})
    assert (r.status, r.reason) == (flock["status"], flock["reason"])
    backend.release_lock(101)
    # ... and on a VM whose clone is still running (`lock: clone`, source-derived)
    locked = next(e["response"] for e in recorded("500_vm_locked.json") if e["kind"] == "source-derived")
    upid = client.ok("POST", "/nodes/pve1/qemu/103/clone", {"newid": 301, "bwlimit": 1024})
    wait_until(lambda: client.call("GET", "/nodes/pve1/qemu/301/config").status == 200, "temporary config")
    r = client.fail("PUT", "/nodes/pve1/qemu/301/config", {"memory": 4096})
    assert (r.status, r.reason, r.json["data"]) == (locked["status"], locked["reason"], locked["body"]["data"])
    client.ok("DELETE", f"/nodes/pve1/tasks/{urllib.parse.quote(upid, safe='')}")
    client.wait(upid)


@pytest.fixture
def slow(schema: Schema) -> Iterator[tuple[Client, Backend]]:
    """time_scale 0.1: a 10 s flock wait is a full second, time enough to release the lock."""
    with scaled(schema, 0.1) as pair:
        yield pair


def test_waiting_task_gets_the_lock(slow: tuple[Client, Backend]) -> None:
    client, backend = slow
    backend.hold_lock(100, kind="")
    upid = client.ok("POST", "/nodes/pve1/qemu/100/status/stop")
    wait_until(lambda: client.log(upid)[:1] == ["trying to acquire lock..."], "waiting line")
    backend.release_lock(100)
    assert client.wait(upid)["exitstatus"] == "OK"
    assert client.log(upid) == ["trying to acquire lock... OK", "TASK OK"]


def test_stop_held_task(client: Client, backend: Backend) -> None:
    upid = backend.hold_lock(100)
    client.ok("DELETE", f"/nodes/pve1/tasks/{urllib.parse.quote(upid, safe='')}")
    assert client.wait(upid)["exitstatus"] == "received interrupt"
    assert "lock" not in client.get("/nodes/pve1/qemu/100/config")
