"""`GET /cluster/resources` (sim/resources.py) says what Backend.cluster_resources says, for every kind of
guest state, and follows config changes at once (no stale cache); containers are listed as `lxc`."""

from __future__ import annotations

import json
import time
from typing import Any
from unittest import mock

import pytest
from apiharness import AUDIT100, Client, vms_by

from pvectl.sim.backend import Backend
from pvectl.sim.models import Container
from pvectl.sim.resources import ResourceEncoder


def _both(backend: Backend, tokenid: str, rtype: str | None) -> tuple[Any, Any]:
    token = backend.state.tokens[tokenid]
    with mock.patch("time.time", return_value=time.time()), backend.mu:
        expected = json.loads(json.dumps(backend.cluster_resources(token, rtype)))
        got = json.loads(ResourceEncoder(backend).encode(token, rtype))["data"]
    return expected, got


@pytest.mark.parametrize("rtype", [None, "vm", "node", "storage", "sdn"])
def test_same_answer_as_the_backend(backend: Backend, client: Client, rtype: str | None) -> None:
    from apiharness import FULL

    running = vms_by(backend, running=True)
    stopped = vms_by(backend, running=False)
    with backend.mu:
        backend.state.vms[running[0]].qmpstatus = "paused"                  # a paused guest
        backend.state.vms[running[1]].config["lock"] = "backup"             # a locked one
        backend.state.vms[stopped[0]].created_at = time.time()              # too new for pvestatd
        backend._set_status(backend.state.vms[stopped[1]], "running")       # changed since the last tick
        backend.set_node_online("pve3", False)
        backend.offline_since["pve3"] = time.time() - 3600                  # RRD data gone: unknown
    for tokenid in (FULL, AUDIT100):
        expected, got = _both(backend, tokenid, rtype)
        assert got == expected
    statuses = {e.get("status") for e in _both(backend, FULL, "vm")[1]}
    assert {"running", "stopped", "paused", "unknown"} <= statuses


def test_config_changes_show_at_once(backend: Backend, client: Client) -> None:
    vmid = vms_by(backend, running=False)[0]
    node = backend.state.vms[vmid].node
    encoder = ResourceEncoder(backend)
    token = next(iter(backend.state.tokens.values()))

    def entry() -> dict[str, Any]:
        with backend.mu:
            data = json.loads(encoder.encode(token, "vm"))["data"]
        return next(e for e in data if e["vmid"] == vmid)

    def used() -> int:
        with backend.mu:
            data = json.loads(encoder.encode(token, "storage"))["data"]
        return next(e["disk"] for e in data if e["id"] == f"storage/{node}/local-lvm")

    before = entry()
    used_before = used()
    client.ok("PUT", f"/nodes/{node}/qemu/{vmid}/config", {"name": "renamed-vm", "memory": "3072", "cores": 3})
    status, _ = client.run("PUT", f"/nodes/{node}/qemu/{vmid}/resize", {"disk": "scsi0", "size": "+1G"})
    assert status == "OK"
    after = entry()
    assert after["name"] == "renamed-vm" and after["maxmem"] == 3072 * 1024**2 and after["maxcpu"] == 3
    assert after["maxdisk"] == before["maxdisk"] + 1024**3
    assert used() == used_before + 1024**3                   # the storage's usage follows too


def test_containers_are_listed_as_lxc(backend: Backend, client: Client) -> None:
    with backend.mu:
        backend.state.containers[300] = Container.generate(300, "pve2", running=True)
        backend.state.containers[301] = Container.generate(301, "pve1", running=False)
    data = client.get("/cluster/resources", {"type": "vm"})
    lxc = {e["vmid"]: e for e in data if e["type"] == "lxc"}
    assert set(lxc) == {300, 301}
    assert lxc[300]["id"] == "lxc/300" and lxc[300]["node"] == "pve2" and lxc[300]["status"] == "running"
    assert lxc[300]["uptime"] > 0 and lxc[300]["maxmem"] == 512 * 1024**2 and lxc[300]["maxdisk"] == 8 * 1024**3
    assert lxc[301]["status"] == "stopped" and lxc[301]["cpu"] == 0
    assert [e["vmid"] for e in data] == sorted(e["vmid"] for e in data)
    assert [c["vmid"] for c in client.get("/nodes/pve2/lxc")] == [300]
    assert client.get("/nodes/pve1/qemu") and all(v["vmid"] != 301 for v in client.get("/nodes/pve1/qemu"))


def test_nextid_skips_container_vmids(backend: Backend, client: Client) -> None:
    # pve-manager API2/Cluster.pm::nextid looks at the cluster's vmlist: VMs and containers
    first = int(client.get("/cluster/nextid"))
    with backend.mu:
        backend.state.containers[first] = Container.generate(first, "pve1", running=False)
    assert int(client.get("/cluster/nextid")) == first + 1
    r = client.call("GET", "/cluster/nextid", {"vmid": first})
    assert r.status == 400 and r.json["errors"] == {"vmid": f"VM {first} already exists"}


def test_guests_without_rrd_data_carry_no_stats(backend: Backend, client: Client) -> None:
    # API2Tools.pm::extract_vm_stats: without the guest's RRD entry (pmxcfs drops it 5 minutes after its
    # node went away) the entry is id, vmid, node, type and status `unknown` only; Cluster.pm::resources
    # adds lock and tags from the config (get_guest_config_properties)
    with backend.mu:
        backend.state.containers[310] = Container.generate(310, "pve3", running=True)
        on_pve3 = [v for v in backend.state.vms.values() if v.node == "pve3"]
        on_pve3[0].config["tags"] = "db"
        backend.set_node_online("pve3", False)
        backend.offline_since["pve3"] = time.time() - 3600
    data = client.get("/cluster/resources")
    gone = [e for e in data if e.get("node") == "pve3" and e["type"] in ("qemu", "lxc")]
    assert next(e for e in gone if e["vmid"] == on_pve3[0].vmid)["tags"] == "db"
    assert {e["vmid"] for e in gone} == {v.vmid for v in on_pve3} | {310}
    for e in gone:
        base = {"id": f"{e['type']}/{e['vmid']}", "vmid": e["vmid"], "node": "pve3", "type": e["type"],
                "status": "unknown"}
        guest = backend.state.vms if e["type"] == "qemu" else backend.state.containers
        conf = guest[e["vmid"]].config
        extra = {k: conf[k] for k in ("lock", "tags") if conf.get(k)}
        assert e == dict(base, **extra)
    # extract_node_stats: an offline node without RRD data: no level, no stats
    assert next(e for e in data if e["id"] == "node/pve3") == {"id": "node/pve3", "type": "node", "node": "pve3",
                                                               "status": "offline"}


def test_offline_node_with_recent_rrd_data_keeps_its_maxima(backend: Backend, client: Client) -> None:
    # extract_node_stats: while the node's RRD entry is fresh, `level` and maxcpu/maxmem/maxdisk stay;
    # uptime, cpu, mem and disk only for an online member
    with backend.mu:
        backend.set_node_online("pve3", False)
    node = next(e for e in client.get("/cluster/resources", {"type": "node"}) if e["id"] == "node/pve3")
    assert node["status"] == "offline" and node["level"] == ""
    assert node["maxcpu"] > 0 and node["maxmem"] > 0 and node["maxdisk"] > 0
    assert not {"uptime", "cpu", "mem", "disk"} & set(node)
