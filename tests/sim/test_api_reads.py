"""Read endpoints: every answer has the shape of the schema's `returns`, plus the quirks PVE has there.

Spec: pve-semantics §1.2 (task status), §2 and row 2 (task log), §5.3 (status/current, vmlist), §7.1
(config, pending), §9.1 (migrate precondition), §10 (cluster endpoints, row 10 for nextid), §11 (node
status), §13 (guest agent).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest
from apiharness import Client, vms_by

from pvectl.sim.backend import Backend
from pvectl.schema import Schema

UPID_RE = re.compile(r"^UPID:[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:"
                     r"[^:\s/]+:[^:\s/]*:[^:\s/]+:$")


def fits(schema: Schema, method: str, template: str, data: Any) -> None:
    assert schema.check_returns(schema.endpoint(method, template), data) == [], template


def q(upid: str) -> str:
    return urllib.parse.quote(upid, safe="")


# ---------------------------------------------------------------- cluster and nodes (§10, §11)
def test_version(client: Client, schema: Schema) -> None:
    data = client.get("/version")
    fits(schema, "GET", "/version", data)
    assert set(data) >= {"version", "release", "repoid"}


def test_cluster_status(client: Client, schema: Schema) -> None:
    data = client.get("/cluster/status")
    fits(schema, "GET", "/cluster/status", data)
    cluster = [e for e in data if e["type"] == "cluster"]
    nodes = [e for e in data if e["type"] == "node"]
    assert len(cluster) == 1 and cluster[0]["nodes"] == 3 and cluster[0]["quorate"] == 1
    assert {n["name"] for n in nodes} == {"pve1", "pve2", "pve3"}
    by_name = {n["name"]: n for n in nodes}
    assert by_name["pve1"]["local"] == 1 and by_name["pve2"]["local"] == 0
    assert by_name["pve2"]["ip"] == "10.0.0.2" and by_name["pve2"]["id"] == "node/pve2"
    assert all(n["online"] == 1 for n in nodes)


@pytest.mark.parametrize("rtype", [None, "vm", "storage", "node", "sdn"])
def test_cluster_resources_each_type(client: Client, schema: Schema, rtype: str | None) -> None:
    data = client.get("/cluster/resources", {"type": rtype} if rtype else None)
    fits(schema, "GET", "/cluster/resources", data)
    types = {e["type"] for e in data}
    expected = {"vm": {"qemu"}, "storage": {"storage"}, "node": {"node"}, "sdn": {"sdn"}}
    if rtype:
        assert types == expected[rtype]
    else:
        assert types >= {"qemu", "storage", "node"}


def test_cluster_resources_vm_entries(client: Client, backend: Backend) -> None:
    data = client.get("/cluster/resources", {"type": "vm"})
    assert len(data) == len(backend.state.vms)
    tpl = next(e for e in data if e["vmid"] == 9000)
    assert tpl["id"] == "qemu/9000" and tpl["template"] == 1 and tpl["tags"] == "ubuntu;template"
    run = next(e for e in data if e["vmid"] == vms_by(backend, running=True)[0])
    assert run["status"] == "running" and run["uptime"] > 0 and run["maxmem"] > 0
    stopped = next(e for e in data if e["vmid"] == vms_by(backend, running=False)[0])
    assert stopped["status"] == "stopped" and stopped["uptime"] == 0


def test_cluster_resources_type_pool_is_400(client: Client) -> None:
    # §10.2: the enum is exactly vm, storage, node, sdn
    r = client.fail("GET", "/cluster/resources", {"type": "pool"})
    assert (r.status, r.reason) == (400, "Parameter verification failed.")
    assert r.json["errors"] == {"type": "value 'pool' does not have a value in the enumeration 'vm, storage, node, sdn'"}


def test_nextid_is_a_json_string(client: Client, schema: Schema, backend: Backend) -> None:
    # row 10: {"data":"112"}, a string although the schema says integer
    r = client.call("GET", "/cluster/nextid")
    assert r.status == 200
    assert r.data == "112" and isinstance(r.data, str)
    assert client.get("/cluster/nextid", {"vmid": 500}) == "500"


def test_nextid_taken_vmid(client: Client) -> None:
    r = client.fail("GET", "/cluster/nextid", {"vmid": 102})
    assert (r.status, r.reason) == (400, "Parameter verification failed.")
    assert r.json["errors"] == {"vmid": "VM 102 already exists"}


def test_nodes(client: Client, schema: Schema) -> None:
    data = client.get("/nodes")
    fits(schema, "GET", "/nodes", data)
    assert sorted(n["node"] for n in data) == ["pve1", "pve2", "pve3"]
    assert all(n["status"] == "online" and n["type"] == "node" and n["maxmem"] > 0 for n in data)


def test_node_status(client: Client, schema: Schema) -> None:
    data = client.get("/nodes/pve2/status")
    fits(schema, "GET", "/nodes/{node}/status", data)
    assert len(data["loadavg"]) == 3 and all(isinstance(x, str) for x in data["loadavg"])
    assert data["pveversion"].startswith("pve-manager/9.")
    assert data["memory"]["total"] >= data["memory"]["used"]


def test_node_storage(client: Client, schema: Schema) -> None:
    data = client.get("/nodes/pve1/storage")
    fits(schema, "GET", "/nodes/{node}/storage", data)
    by_id = {s["storage"]: s for s in data}
    assert set(by_id) == {"local", "local-lvm", "ceph-vm"}
    assert by_id["ceph-vm"]["shared"] == 1 and by_id["local-lvm"]["shared"] == 0
    images = client.get("/nodes/pve1/storage", {"content": "images"})
    assert {s["storage"] for s in images} == {"local-lvm", "ceph-vm"}


def test_access_permissions(client: Client, audit: Client, schema: Schema) -> None:
    full = client.get("/access/permissions")
    fits(schema, "GET", "/access/permissions", full)
    assert full["/"]["VM.PowerMgmt"] == 1
    limited = audit.get("/access/permissions")
    fits(schema, "GET", "/access/permissions", limited)
    assert limited == {"/vms/100": {"VM.Audit": 1}}


# ---------------------------------------------------------------- VMs (§5.3, §7.1, §9.1, §13)
def test_qemu_list(client: Client, schema: Schema, backend: Backend) -> None:
    data = client.get("/nodes/pve1/qemu")
    fits(schema, "GET", "/nodes/{node}/qemu", data)
    assert sorted(v["vmid"] for v in data) == sorted(v.vmid for v in backend.state.vms.values() if v.node == "pve1")
    assert all("qmpstatus" not in v for v in data)
    full = client.get("/nodes/pve1/qemu", {"full": 1})
    assert all("qmpstatus" in v for v in full)


def test_vm_index(client: Client, schema: Schema) -> None:
    data = client.get("/nodes/pve1/qemu/100")
    fits(schema, "GET", "/nodes/{node}/qemu/{vmid}", data)
    assert {"subdir": "config"} in data


def test_status_current_running_and_stopped(client: Client, schema: Schema, backend: Backend) -> None:
    running = client.get("/nodes/pve1/qemu/100/status/current")
    fits(schema, "GET", "/nodes/{node}/qemu/{vmid}/status/current", running)
    assert running["status"] == "running" and running["qmpstatus"] == "running"
    assert running["pid"] > 0 and running["uptime"] > 0 and running["agent"] == 1
    assert running["ha"] == {"managed": 0} and running["maxmem"] == int(backend.state.vms[100].config["memory"]) * 2**20
    stopped = client.get("/nodes/pve1/qemu/103/status/current")
    fits(schema, "GET", "/nodes/{node}/qemu/{vmid}/status/current", stopped)
    assert stopped["status"] == "stopped" and stopped["qmpstatus"] == "stopped"
    assert "pid" not in stopped and stopped["uptime"] == 0 and stopped["cpu"] == 0
    tpl = client.get("/nodes/pve1/qemu/9000/status/current")
    assert tpl["template"] == 1


def test_vm_not_on_node(client: Client) -> None:
    # §0: a VM that is not on the addressed node is a plain die (500), never 404
    r = client.fail("GET", "/nodes/pve1/qemu/555/status/current")
    assert (r.status, r.reason) == (500, "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist")
    r = client.fail("GET", "/nodes/pve1/qemu/101/config")
    assert r.reason == "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist"


def test_config_get(client: Client, schema: Schema) -> None:
    conf = client.get("/nodes/pve1/qemu/100/config")
    fits(schema, "GET", "/nodes/{node}/qemu/{vmid}/config", conf)
    assert re.fullmatch(r"[0-9a-f]{40}", conf["digest"])
    assert isinstance(conf["cores"], int) and isinstance(conf["memory"], str)     # §7.1 JSON types
    assert conf["scsi0"].startswith("local-lvm:vm-100-disk-0,")


def test_pending(client: Client, schema: Schema) -> None:
    data = client.get("/nodes/pve1/qemu/100/pending")
    # The schema types `value`/`pending` as string, but they come from the same parsed config as GET
    # config, where integer keys are JSON numbers (§7.1); only those deviations are tolerated.
    problems = schema.check_returns(schema.endpoint("GET", "/nodes/{node}/qemu/{vmid}/pending"), data)
    assert all(re.fullmatch(r"data\[\d+\]\.(value|pending): int where string expected", p) for p in problems)
    assert {"key": "name", "value": "web-01"} in data


def test_migrate_precondition(client: Client, schema: Schema) -> None:
    data = client.get("/nodes/pve1/qemu/100/migrate")
    fits(schema, "GET", "/nodes/{node}/qemu/{vmid}/migrate", data)
    assert data["running"] == 1
    assert sorted(data["allowed_nodes"]) == ["pve2", "pve3"]
    # C9/§9.1: nodes without a problem still appear with an empty object
    assert data["not_allowed_nodes"] == {"pve2": {}, "pve3": {}}
    assert {d["volid"] for d in data["local_disks"]} == {"local-lvm:vm-100-disk-0", "local-lvm:vm-100-cloudinit"}
    assert data["local_resources"] == [] and data["has-dbus-vmstate"] == 1


def test_agent_network_get_interfaces(client: Client, schema: Schema, backend: Backend) -> None:
    data = client.get("/nodes/pve1/qemu/100/agent/network-get-interfaces")
    fits(schema, "GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces", data)
    names = [i["name"] for i in data["result"]]
    assert names == ["lo", "eth0"]
    eth0 = data["result"][1]
    mac = backend.state.vms[100].config["net0"].split(",")[0].split("=")[1].lower()
    assert eth0["hardware-address"] == mac
    assert eth0["ip-addresses"][0]["ip-address"] == backend.state.vms[100].guest_ip


# ---------------------------------------------------------------- tasks (§1.2, §1.3, row 2)
def test_post_returns_upid_in_real_format(client: Client) -> None:
    upid = client.ok("POST", "/nodes/pve1/qemu/103/status/start")
    assert UPID_RE.match(upid), upid
    parts = upid.split(":")
    assert len(parts) == 9 and parts[8] == ""                 # trailing colon: 9 segments (§1.1)
    assert parts[1] == "pve1" and parts[5] == "qmstart" and parts[6] == "103" and parts[7] == "admin@pve!full"
    client.wait(upid)


def test_task_status_shape(client: Client, schema: Schema) -> None:
    upid = client.ok("POST", "/nodes/pve1/qemu/103/status/start")
    running = client.task_status(upid)
    fits(schema, "GET", "/nodes/{node}/tasks/{upid}/status", running)
    if running["status"] == "running":
        assert "exitstatus" not in running
    final = client.wait(upid)
    fits(schema, "GET", "/nodes/{node}/tasks/{upid}/status", final)
    assert final["exitstatus"] == "OK"
    # token tasks: `user` is split into user and tokenid (Tasks.pm $convert_token_task)
    assert final["user"] == "admin@pve" and final["tokenid"] == "full"
    assert final["upid"] == upid and final["type"] == "qmstart" and final["id"] == "103" and final["node"] == "pve1"
    p = upid.split(":")
    assert final["pid"] == int(p[2], 16) and final["pstart"] == int(p[3], 16) and final["starttime"] == int(p[4], 16)


def test_task_list_with_total(client: Client, schema: Schema) -> None:
    upids = [client.ok("POST", f"/nodes/pve1/qemu/{vmid}/status/stop") for vmid in (103, 106, 109)]
    for upid in upids:
        client.wait(upid)
    r = client.call("GET", "/nodes/pve1/tasks", {"limit": 2})
    assert r.status == 200
    fits(schema, "GET", "/nodes/{node}/tasks", r.data)
    assert r.json["total"] == 3 and len(r.data) == 2
    assert all(t["status"] == "OK" and "endtime" in t for t in r.data)
    assert {t["upid"] for t in client.get("/nodes/pve1/tasks")} == set(upids)
    assert [t["upid"] for t in client.get("/nodes/pve1/tasks", {"vmid": 106})] == [upids[1]]


def test_task_log_paging(client: Client, schema: Schema) -> None:
    # row 2: n is 1-based, start 0-based, limit default 50, limit=0 = all, total = every line
    status, lines = client.run("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1})
    assert status == "OK"
    upid_path = None
    for t in client.get("/nodes/pve1/tasks", {"typefilter": "qmclone"}):
        upid_path = f"/nodes/pve1/tasks/{q(t['upid'])}/log"
    assert upid_path is not None
    n = len(lines)
    assert n > 60
    r = client.call("GET", upid_path)
    fits(schema, "GET", "/nodes/{node}/tasks/{upid}/log", r.data)
    assert r.json["total"] == n and len(r.data) == 50 and r.data[0]["n"] == 1
    r = client.call("GET", upid_path, {"start": 10, "limit": 5})
    assert [x["n"] for x in r.data] == [11, 12, 13, 14, 15] and r.json["total"] == n
    assert [x["t"] for x in r.data] == lines[10:15]
    r = client.call("GET", upid_path, {"start": 3, "limit": 0})
    assert len(r.data) == n - 3 and r.data[-1] == {"n": n, "t": "TASK OK"}
    r = client.call("GET", upid_path, {"start": n + 5})
    assert r.status == 200 and r.data == [] and r.json["total"] == n


def test_task_log_missing_file(client: Client) -> None:
    # row 2 (a): no `no such task` check on the log endpoint
    upid = "UPID:pve1:00001234:00ABCDEF:65000000:qmstart:100:root@pam:"
    r = client.call("GET", f"/nodes/pve1/tasks/{q(upid)}/log")
    assert r.status == 200
    assert r.data == [{"n": 1, "t": "unable to open file - No such file or directory"}] and r.json["total"] == 1
    # ...but the status endpoint has one
    r = client.call("GET", f"/nodes/pve1/tasks/{q(upid)}/status")
    assert (r.status, r.json["errors"]) == (400, {"upid": "no such task"})
    r = client.call("GET", f"/nodes/pve1/tasks/{q('UPID:garbage')}/status")
    assert (r.status, r.json["errors"]) == (400, {"upid": "unable to parse worker upid"})


@pytest.mark.parametrize("itype", [None, "bridge", "any_bridge", "eth"])
def test_node_network(client: Client, schema: Schema, itype: str | None) -> None:
    # pve-manager API2/Network.pm::index: the bridges VMs attach to (vmbr0, vmbr1) and the NICs
    data = client.get("/nodes/pve1/network", {"type": itype} if itype else None)
    fits(schema, "GET", "/nodes/{node}/network", data)
    names = {i["iface"] for i in data}
    assert names == {None: {"eno1", "eno2", "vmbr0", "vmbr1"}, "bridge": {"vmbr0", "vmbr1"},
                     "any_bridge": {"vmbr0", "vmbr1"}, "eth": {"eno1", "eno2"}}[itype]
