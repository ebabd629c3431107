"""Power operations, VM status and the guest agent.

Spec: pve-semantics row 3 and §5 (wrong-state behaviour: SYNC vs TASK), C3 (non-existent VM), §5.3
(status fields), §7.4 (start applies pending), row 16 / §13 (guest agent errors in order), §10.2
(pvestatd lag in /cluster/resources).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apiharness import FULL, FULL_SECRET, Client, auth, make_state, vms_by, wait_until

from pvectl.sim.backend import Backend
from pvectl.sim.routes import Api
from pvectl.schema import Schema


# ---------------------------------------------------------------- wrong state (row 3)
def test_start_running_vm_fails_in_task(client: Client) -> None:
    status, lines = client.run("POST", "/nodes/pve1/qemu/100/status/start")
    assert status == "VM 100 already running"
    assert lines[-1] == "TASK ERROR: VM 100 already running"


def test_stop_and_shutdown_of_stopped_vm_are_ok(client: Client) -> None:
    for op in ("stop", "shutdown"):
        status, lines = client.run("POST", f"/nodes/pve1/qemu/103/status/{op}")
        assert (status, lines) == ("OK", ["TASK OK"])


def test_reboot_of_stopped_vm_is_sync(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/103/status/reboot")
    assert (r.status, r.reason) == (500, "VM 103 not running")


def test_start_template_fails_in_task(client: Client) -> None:
    status, _ = client.run("POST", "/nodes/pve1/qemu/9000/status/start")
    assert status == "you can't start a vm if it's a template"


def test_nonexistent_vm_per_path(client: Client) -> None:
    # C3: the message depends on the path
    status, _ = client.run("POST", "/nodes/pve1/qemu/555/status/start")
    assert status == "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist"
    status, _ = client.run("POST", "/nodes/pve1/qemu/555/status/stop")
    assert status == "unable to find configuration file for VM 555 on node 'pve1'"
    r = client.fail("POST", "/nodes/pve1/qemu/555/status/reboot")
    assert (r.status, r.reason) == (500, "unable to find configuration file for VM 555 on node 'pve1'")


# ---------------------------------------------------------------- state changes (§5.2, §5.3)
def test_start_and_stop_change_status(client: Client, backend: Backend) -> None:
    before = client.get("/nodes/pve1/qemu/103/status/current")
    assert before["status"] == "stopped" and "pid" not in before
    status, lines = client.run("POST", "/nodes/pve1/qemu/103/status/start")
    assert status == "OK" and lines[-1] == "TASK OK"
    assert "generating cloud-init ISO" in lines
    cur = client.get("/nodes/pve1/qemu/103/status/current")
    assert cur["status"] == "running" and cur["qmpstatus"] == "running" and cur["pid"] > 0
    assert "running-qemu" in cur
    wait_until(lambda: client.get("/nodes/pve1/qemu/103/status/current")["uptime"] >= 1, "uptime")
    status, _ = client.run("POST", "/nodes/pve1/qemu/103/status/stop")
    assert status == "OK"
    cur = client.get("/nodes/pve1/qemu/103/status/current")
    assert (cur["status"], cur["qmpstatus"], cur["uptime"]) == ("stopped", "stopped", 0) and "pid" not in cur


def test_shutdown_running_vm(client: Client) -> None:
    status, _ = client.run("POST", "/nodes/pve1/qemu/100/status/shutdown")
    assert status == "OK"
    assert client.get("/nodes/pve1/qemu/100/status/current")["status"] == "stopped"


def test_shutdown_timeout(client: Client) -> None:
    # §5.1: the guest needs longer than `timeout`; forceStop turns the failure into a hard stop
    status, _ = client.run("POST", "/nodes/pve1/qemu/100/status/shutdown", {"timeout": 2})
    assert status == "VM quit/powerdown failed - got timeout"
    assert client.get("/nodes/pve1/qemu/100/status/current")["status"] == "running"
    status, lines = client.run("POST", "/nodes/pve1/qemu/100/status/shutdown", {"timeout": 2, "forceStop": 1})
    assert (status, lines) == ("OK", ["VM still running - terminating now with SIGTERM", "TASK OK"])
    assert client.get("/nodes/pve1/qemu/100/status/current")["status"] == "stopped"


def test_reboot_running_vm_gets_new_pid(client: Client) -> None:
    pid = client.get("/nodes/pve1/qemu/100/status/current")["pid"]
    status, _ = client.run("POST", "/nodes/pve1/qemu/100/status/reboot")
    assert status == "OK"
    cur = client.get("/nodes/pve1/qemu/100/status/current")
    assert cur["status"] == "running" and cur["pid"] != pid


def test_start_applies_pending(client: Client, backend: Backend) -> None:
    # §7.4: cores is not hot-pluggable, so it waits for the next start
    assert client.ok("PUT", "/nodes/pve1/qemu/103/config", {"cores": 6}) is None      # stopped: applied
    assert backend.state.vms[103].config["cores"] == 6
    client.run("POST", "/nodes/pve1/qemu/103/status/start")
    client.ok("PUT", "/nodes/pve1/qemu/103/config", {"cores": 3})
    assert client.get("/nodes/pve1/qemu/103/config", {"current": 1})["cores"] == 6
    client.run("POST", "/nodes/pve1/qemu/103/status/stop")
    assert client.get("/nodes/pve1/qemu/103/config", {"current": 1})["cores"] == 6      # a stop keeps pending
    client.run("POST", "/nodes/pve1/qemu/103/status/start")
    assert client.get("/nodes/pve1/qemu/103/config", {"current": 1})["cores"] == 3
    assert not [item for item in client.get("/nodes/pve1/qemu/103/pending") if "pending" in item]


def test_cluster_resources_follow_status_changes(client: Client) -> None:
    # §10.2: status there lags by the pvestatd tick; lock and tags are read live
    client.run("POST", "/nodes/pve1/qemu/100/status/stop")

    def res_status() -> str:
        return next(e["status"] for e in client.get("/cluster/resources", {"type": "vm"}) if e["vmid"] == 100)

    wait_until(lambda: res_status() == "stopped", "resources show stopped")
    client.ok("PUT", "/nodes/pve1/qemu/100/config", {"tags": "changed"})
    entry = next(e for e in client.get("/cluster/resources", {"type": "vm"}) if e["vmid"] == 100)
    assert entry["tags"] == "changed"


# ---------------------------------------------------------------- guest agent (row 16, §13)
@pytest.fixture
def slow_client(schema: Schema) -> Iterator[Client]:
    """time_scale 0.1: the guest needs 8 PVE s (0.8 s) to boot, far more than a start task takes."""
    b = Backend(make_state(), time_scale=0.1)
    b.add_token(FULL, FULL_SECRET)
    yield Client(Api(b, schema), auth(FULL, FULL_SECRET))
    b.close()


def test_agent_after_start(slow_client: Client) -> None:
    client = slow_client
    status, _ = client.run("POST", "/nodes/pve1/qemu/106/status/start")
    assert status == "OK"
    r = client.fail("GET", "/nodes/pve1/qemu/106/agent/network-get-interfaces")
    assert (r.status, r.reason) == (500, "QEMU guest agent is not running")

    def answers() -> bool:
        return client.call("GET", "/nodes/pve1/qemu/106/agent/network-get-interfaces").status == 200

    wait_until(answers, "guest agent")
    data = client.get("/nodes/pve1/qemu/106/agent/network-get-interfaces")
    assert data["result"][1]["ip-addresses"][0]["ip-address"]


def test_agent_errors(client: Client, backend: Backend) -> None:
    no_agent = vms_by(backend, agent=False)[0]
    node = backend.state.vms[no_agent].node
    r = client.fail("GET", f"/nodes/{node}/qemu/{no_agent}/agent/network-get-interfaces")
    assert (r.status, r.reason) == (500, "No QEMU guest agent configured")
    r = client.fail("GET", "/nodes/pve1/qemu/106/agent/network-get-interfaces")
    assert (r.status, r.reason) == (500, "VM 106 is not running")
    r = client.fail("GET", "/nodes/pve1/qemu/555/agent/network-get-interfaces")
    assert r.reason == "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist"
