"""Task list, status, stop and injected failures; /cluster/resources freshness for new VMs.

Spec: pve-semantics row 1 and §1 (UPID, status, list, stop), §1.5 (final line), row 2 (log), §10.2
(status in /cluster/resources comes from pvestatd every 10 s; no RRD data yet -> `unknown`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest
from apiharness import Client, scaled, wait_until

from pvectl.sim.backend import Backend
from pvectl.schema import Schema


def q(upid: str) -> str:
    return urllib.parse.quote(upid, safe="")


def test_running_task_in_active_list(client: Client) -> None:
    upid = client.ok("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1})
    active = client.get("/nodes/pve1/tasks", {"source": "active"})
    assert [(t["upid"], t["status"]) for t in active] == [(upid, "RUNNING")]
    assert "endtime" not in active[0]
    assert client.get("/nodes/pve1/tasks") == []              # archive: finished tasks only
    client.wait(upid)
    assert client.get("/nodes/pve1/tasks", {"source": "active"}) == []
    done = client.get("/nodes/pve1/tasks", {"source": "all"})
    assert [(t["upid"], t["status"]) for t in done] == [(upid, "OK")]


def test_error_filter_and_status_of_failed_task(client: Client) -> None:
    ok = client.ok("POST", "/nodes/pve1/qemu/103/status/stop")
    bad = client.ok("POST", "/nodes/pve1/qemu/100/status/start")
    client.wait(ok)
    st = client.wait(bad)
    assert st["status"] == "stopped" and st["exitstatus"] == "VM 100 already running"
    assert [t["upid"] for t in client.get("/nodes/pve1/tasks", {"errors": 1})] == [bad]
    assert [t["upid"] for t in client.get("/nodes/pve1/tasks", {"statusfilter": "ok"})] == [ok]
    assert [t["upid"] for t in client.get("/nodes/pve1/tasks", {"typefilter": "qmstart"})] == [bad]


def test_task_status_on_wrong_node(client: Client) -> None:
    upid = client.ok("POST", "/nodes/pve1/qemu/103/status/stop")
    client.wait(upid)
    r = client.fail("GET", f"/nodes/pve2/tasks/{q(upid)}/status")
    assert (r.status, r.json["errors"]) == (400, {"upid": "no such task"})


def test_stop_task_permission_and_finished_task(client: Client, audit: Client) -> None:
    upid = client.ok("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1})
    r = audit.fail("DELETE", f"/nodes/pve1/tasks/{q(upid)}")
    assert (r.status, r.reason) == (403, "Permission check failed (/nodes/pve1, Sys.Modify)")
    assert client.wait(upid)["exitstatus"] == "OK"
    # stopping a finished task is a no-op that returns null (§1.4)
    assert client.ok("DELETE", f"/nodes/pve1/tasks/{q(upid)}") is None
    assert client.task_status(upid)["exitstatus"] == "OK"


def test_stop_migration(client: Client, backend: Backend) -> None:
    # §1.4: a stopped migration ends `migration aborted`
    upid = client.ok("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve2", "online": 1,
                                                               "with-local-disks": 1})
    wait_until(lambda: any("drive mirror is starting" in line for line in client.log(upid)), "mirror started")
    client.ok("DELETE", f"/nodes/pve1/tasks/{q(upid)}")
    assert client.wait(upid)["exitstatus"] == "migration aborted"
    assert client.log(upid)[-1] == "TASK ERROR: migration aborted"
    assert backend.state.vms[100].node == "pve1" and "lock" not in backend.state.vms[100].config


def test_injected_failure(client: Client, backend: Backend) -> None:
    backend.fail_task(type="qmstart", message="start failed: QEMU exited with code 1")
    status, lines = client.run("POST", "/nodes/pve1/qemu/103/status/start")
    assert status == "start failed: QEMU exited with code 1"
    assert lines[-1] == "TASK ERROR: start failed: QEMU exited with code 1"
    assert client.get("/nodes/pve1/qemu/103/status/current")["status"] == "stopped"
    assert client.run("POST", "/nodes/pve1/qemu/103/status/start")[0] == "OK"   # only once


# ---------------------------------------------------------------- pvestatd freshness (§10.2)
@pytest.fixture
def statd(schema: Schema) -> Iterator[tuple[Client, Backend]]:
    """time_scale 0.2: the 10 s pvestatd period is 2 s, a linked clone takes a fraction of that."""
    with scaled(schema, 0.2) as pair:
        yield pair


def test_new_vm_is_unknown_until_first_tick(statd: tuple[Client, Backend], schema: Schema) -> None:
    client, _ = statd
    status, _ = client.run("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300})
    assert status == "OK"

    def entry() -> dict:
        return next(e for e in client.get("/cluster/resources", {"type": "vm"}) if e["vmid"] == 300)

    first = entry()
    # API2Tools.pm::extract_vm_stats: no RRD entry yet, so no name, template or stats either
    assert first["status"] == "unknown" and not {"name", "template", "uptime", "maxmem"} & set(first)
    assert schema.check_returns(schema.endpoint("GET", "/cluster/resources"), [first]) == []
    wait_until(lambda: entry()["status"] == "stopped", "first pvestatd tick")
    assert entry()["uptime"] == 0 and entry()["name"] == "Copy-of-VM-ubuntu-24.04-cloud"
