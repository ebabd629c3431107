"""The reads other tools call first, with the values a real cluster in the simulated state gives."""

from __future__ import annotations

import time

from apiharness import Client, vms_by

from pvectl.sim.backend import Backend
from pvectl.sim.models import Container


def test_versions_and_subscription(client: Client) -> None:
    assert client.get("/nodes/pve2/version") == client.get("/version")
    sub = client.get("/nodes/pve1/subscription")
    assert sub["status"] == "notfound" and sub["message"] == "There is no subscription key"
    t = client.get("/nodes/pve1/time")
    assert abs(t["time"] - time.time()) < 60 and t["timezone"]


def test_empty_shapes_of_unmodelled_concepts(client: Client) -> None:
    for path in ("/pools", "/cluster/ha/resources", "/cluster/ha/groups", "/cluster/backup", "/cluster/replication",
                 "/nodes/pve1/replication", "/nodes/pve1/lxc", "/cluster/firewall/rules", "/access/groups"):
        assert client.get(path) == [], path
    ha = client.get("/cluster/ha/status/current")
    assert ha == [{"id": "quorum", "type": "quorum", "node": "pve1", "status": "OK", "quorate": 1}]


def test_storage_config_and_content(client: Client, backend: Backend) -> None:
    storages = {s["storage"]: s for s in client.get("/storage")}
    assert set(storages) == set(backend.state.storages)
    assert storages["local-lvm"]["type"] == "lvmthin" and storages["local-lvm"]["thinpool"] == "data"
    assert len({s["digest"] for s in storages.values()}) == 1          # one storage.cfg, one digest
    assert client.get("/storage/local-lvm")["digest"] == storages["local"]["digest"]
    content = client.get("/nodes/pve2/storage/local-lvm/content")
    on_pve2 = {v.vmid for v in backend.state.vms.values() if v.node == "pve2"}
    assert {c["vmid"] for c in content} == on_pve2
    assert all(c["volid"].startswith("local-lvm:") and c["format"] == "raw" and c["size"] > 0 for c in content)
    status = client.get("/nodes/pve2/storage/local-lvm/status")
    assert status["used"] == sum(c["size"] for c in content) and status["type"] == "lvmthin"


def test_cluster_tasks_and_options(client: Client, backend: Backend) -> None:
    vmid = vms_by(backend, running=False)[0]
    node = backend.state.vms[vmid].node
    upid = client.ok("POST", f"/nodes/{node}/qemu/{vmid}/status/start")
    assert upid in {t["upid"] for t in client.get("/cluster/tasks")}
    client.wait(upid)
    done = next(t for t in client.get("/cluster/tasks") if t["upid"] == upid)
    assert done["status"] == "OK" and done["endtime"] >= done["starttime"]
    opts = client.get("/cluster/options")
    assert "prod" in opts["allowed-tags"] and "template" in opts["allowed-tags"]


def test_users_and_tokens(client: Client) -> None:
    users = {u["userid"]: u for u in client.get("/access/users", {"full": 1})}
    assert "root@pam" in users and "admin@pve" in users
    assert [t["tokenid"] for t in users["admin@pve"]["tokens"]] == ["full"]
    assert client.get("/access/users/admin@pve/token/full") == {"expire": 0, "privsep": 0}
    r = client.call("GET", "/access/users/nobody@pve")
    assert r.status == 500 and "nobody@pve" in r.reason


def test_rrd_data(client: Client, backend: Backend) -> None:
    running = next(v for v in vms_by(backend, running=True) if backend.state.vms[v].node == "pve1")
    rows = client.get(f"/nodes/pve1/qemu/{running}/rrddata", {"timeframe": "hour"})
    assert len(rows) == 70 and all(b["time"] - a["time"] == 60 for a, b in zip(rows, rows[1:]))
    current = client.get(f"/nodes/pve1/qemu/{running}/status/current")
    assert rows[-1]["cpu"] > 0 and rows[-1]["maxmem"] == current["maxmem"]
    stopped = next(v for v in vms_by(backend, running=False) if backend.state.vms[v].node == "pve1")
    # a stopped VM's rows carry only the maxima (as real RRD rows of a stopped guest do)
    assert "cpu" not in client.get(f"/nodes/pve1/qemu/{stopped}/rrddata", {"timeframe": "day"})[-1]
    node_rows = client.get("/nodes/pve1/rrddata", {"timeframe": "week"})
    assert len(node_rows) == 70 and node_rows[-1]["memtotal"] == backend.state.nodes["pve1"].mem_total


def test_guest_agent_reads(client: Client, backend: Backend) -> None:
    vmid = next(v for v in vms_by(backend, running=True, agent=True) if backend.state.vms[v].node == "pve1")
    with backend.mu:
        backend.state.vms[vmid].started_at = time.time() - 600
    info = client.get(f"/nodes/pve1/qemu/{vmid}/agent/info")["result"]
    assert {"name": "guest-ping", "enabled": True, "success-response": True} in info["supported_commands"]
    assert client.get(f"/nodes/pve1/qemu/{vmid}/agent/get-host-name")["result"]["host-name"] == \
        backend.state.vms[vmid].config["name"]
    cpus = client.get(f"/nodes/pve1/qemu/{vmid}/agent/get-vcpus")["result"]
    assert len(cpus) == int(backend.state.vms[vmid].config["cores"])
    no_agent = vms_by(backend, agent=False)[0]
    r = client.call("GET", f"/nodes/{backend.state.vms[no_agent].node}/qemu/{no_agent}/agent/info")
    assert (r.status, r.reason) == (500, "No QEMU guest agent configured")


def test_not_backed_up_lists_every_guest_but_templates(client: Client, backend: Backend) -> None:
    with backend.mu:
        backend.state.containers[400] = Container.generate(400, "pve3", running=True)
    listed = {(g["type"], g["vmid"]) for g in client.get("/cluster/backup-info/not-backed-up")}
    want = {("qemu", v.vmid) for v in backend.state.vms.values() if not v.is_template} | {("lxc", 400)}
    assert listed == want


def test_lxc_status_and_config(client: Client, backend: Backend) -> None:
    with backend.mu:
        backend.state.containers[400] = Container.generate(400, "pve3", running=True)
    status = client.get("/nodes/pve3/lxc/400/status/current")
    assert status["status"] == "running" and status["ha"] == {"managed": 0} and status["uptime"] > 0
    conf = client.get("/nodes/pve3/lxc/400/config")
    assert conf["hostname"] == "ct-400" and len(conf["digest"]) == 40
    r = client.call("GET", "/nodes/pve1/lxc/400/config")
    assert (r.status, r.reason) == (500, "Configuration file 'nodes/pve1/lxc/400.conf' does not exist")


def test_reads_check_the_schema_permissions(audit: Client) -> None:
    # a token with VM.Audit on /vms/100 only: Sys.Audit on /nodes/pve1 missing
    r = audit.call("GET", "/nodes/pve1/rrddata", {"timeframe": "hour"})
    assert (r.status, r.reason) == (403, "Permission check failed (/nodes/pve1, Sys.Audit)")
    assert audit.get("/nodes/pve1/version")["release"]          # user => 'all'


def test_vm_list_carries_pressure_for_running_vms(client: Client) -> None:
    # QemuServer.pm::vmstatus reads the cgroup pressure of every running VM, `full` or not
    for vm in client.get("/nodes/pve1/qemu"):
        assert ("pressurecpusome" in vm) == (vm["status"] == "running"), vm["vmid"]


def test_lxc_index_needs_the_container(client: Client, backend: Backend) -> None:
    with backend.mu:
        backend.state.containers[400] = Container.generate(400, "pve3", running=False)
    assert {"subdir": "interfaces"} in client.get("/nodes/pve3/lxc/400")
    r = client.call("GET", "/nodes/pve3/lxc/401")
    assert (r.status, r.reason) == (500, "Configuration file 'nodes/pve3/lxc/401.conf' does not exist")
