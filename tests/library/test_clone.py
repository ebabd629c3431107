"""`pve.vms.clone` and `pvectl.sim.Cluster.client()`, written only against the public surface
(`import pvectl`, `pvectl.sim`), against the simulator.

What the cluster holds afterwards is read back through the library itself (or the simulator's
request log, for "nothing was sent")."""

from __future__ import annotations

import json
from typing import Any

import pytest

import pvectl
import pvectl.sim
from simclient import TEMPLATE, events, pve, writes  # noqa: F401 - fixtures

# --------------------------------------------------------------------------------------- sim.client
def test_sim_client_is_a_connected_library_cluster_with_its_own_audit_log(sim: pvectl.sim.Cluster) -> None:
    with sim.client() as pve:
        assert isinstance(pve, pvectl.Cluster)
        assert pve.status().quorate and [n.name for n in pve.nodes.list()] == ["pve1", "pve2", "pve3"]
        assert pve.config.tls is not None and pve.config.tls.ca_file == str(sim.ca_path)   # TLS verified
        r = pve.vms.clone(TEMPLATE, "web-1")
        assert pve.vms.status("web-1").vmid == r.vmid
    entries = [json.loads(line) for line in (sim.state_dir / "audit.jsonl").read_text().splitlines()]
    assert any(e.get("path") == "/nodes/pve1/qemu/9000/clone" and e.get("via") == "library" for e in entries)


def test_sim_client_takes_the_cluster_options(sim: pvectl.sim.Cluster) -> None:
    with sim.client(dry_run=True, audit=False) as pve:
        assert pve.dry_run
        r = pve.vms.clone(TEMPLATE, "web-1")
        assert r.result == "planned"
    assert writes(sim) == []
    assert not (sim.state_dir / "audit.jsonl").exists()


# -------------------------------------------------------------------------------------------- clone
def test_clone_one_vm_configures_and_starts_it(sim: pvectl.sim.Cluster, pve: pvectl.Cluster,
                                               events: list[dict[str, Any]]) -> None:
    r = pve.vms.clone(TEMPLATE, "web-1", cores=2, memory="2G", ip="10.0.0.5/24", gw="10.0.0.1", start=True)
    assert isinstance(r, pvectl.ProvisionResult)
    assert (r.name, r.result, r.state, r.template) == ("web-1", "created", "running", 9000)
    assert pve.vms.resolve("web-1").vmid == r.vmid
    assert pve.vms.status("web-1").status == "running"        # live, not /cluster/resources (it lags)
    conf = pve.vms.config("web-1")
    assert (int(conf["cores"]), int(conf["memory"]), conf["ipconfig0"]) == (2, 2048, "ip=10.0.0.5/24,gw=10.0.0.1")
    clone_events = [e for e in events if e["event"] == "clone"]
    assert {e["step"] for e in clone_events} >= {"clone", "config", "start", "done"}
    assert all(e["name"] == "web-1" for e in clone_events)
    # the same call again: the VM exists, nothing is made twice
    again = pve.vms.clone(TEMPLATE, "web-1", cores=2, memory="2G", ip="10.0.0.5/24", gw="10.0.0.1", start=True)
    assert (again.result, again.vmid, again.changed) == ("exists", r.vmid, False)
    assert [v.name for v in pve.vms.list()].count("web-1") == 1


def test_clone_count_makes_a_list_and_name_start_next_continues(pve: pvectl.Cluster) -> None:
    rs = pve.vms.clone(TEMPLATE, "web-{n}", count=3)
    assert isinstance(rs, list) and [r.name for r in rs] == ["web-1", "web-2", "web-3"]
    assert {r.result for r in rs} == {"created"} and len({r.vmid for r in rs}) == 3
    more = pve.vms.clone(TEMPLATE, "web", count=2, name_start="next")      # a prefix: web-{n}
    assert [r.name for r in more] == ["web-4", "web-5"]
    names = {v.name for v in pve.vms.list()}
    assert {f"web-{i}" for i in range(1, 6)} <= names


def test_clone_dry_run_returns_the_planned_writes_and_writes_nothing(sim: pvectl.sim.Cluster,
                                                                     pve: pvectl.Cluster) -> None:
    before = {v.vmid for v in pve.vms.list()}
    mark = len(sim.requests_log())
    dry = pve.with_options(dry_run=True)
    r = dry.vms.clone(TEMPLATE, "web-9", cores=4, disk_size="+2G", start=True, wait_ip=True)
    assert r.result == "planned"
    planned = r.to_dict()["planned"]
    assert [(p["method"], p["path"].rsplit("/", 1)[-1]) for p in planned] == \
        [("POST", "clone"), ("PUT", "config"), ("PUT", "resize"), ("POST", "start")]
    assert planned[0]["params"]["newid"] == r.vmid and planned[0]["node"] == "pve1"
    assert all(p["curl"].startswith("curl ") and sim.token_secret not in p["curl"] for p in planned)
    rs = dry.vms.clone(TEMPLATE, "db-{n}", count=2)
    assert [x.result for x in rs] == ["planned", "planned"]
    assert [[p["params"].get("newid") for p in x.to_dict()["planned"] if p["path"].endswith("/clone")]
            for x in rs] == [[rs[0].vmid], [rs[1].vmid]]
    assert writes(sim, since=mark) == []
    assert {v.vmid for v in pve.vms.list()} == before


def test_bulk_dry_run_gives_each_vm_its_own_planned_writes(sim: pvectl.sim.Cluster, pve: pvectl.Cluster) -> None:
    """Every planned write of a bulk dry run lands in the result of the VM it acts on, once, in order:
    its clone by `newid`, its later steps by the VMID in their path (never the template's)."""
    mark = len(sim.requests_log())
    rs = pve.with_options(dry_run=True).vms.clone(TEMPLATE, "db-{n}", count=3, cores=2, start=True)
    assert len({x.vmid for x in rs}) == 3
    for x in rs:
        planned = x.to_dict()["planned"]
        assert [(p["method"], p["path"].rsplit("/", 1)[-1]) for p in planned] == \
            [("POST", "clone"), ("PUT", "config"), ("POST", "start")]
        assert planned[0]["params"]["newid"] == x.vmid and planned[0]["path"].endswith("/qemu/9000/clone")
        assert all(f"/qemu/{x.vmid}/" in p["path"] for p in planned[1:])
    assert writes(sim, since=mark) == []


def test_clone_refuses_wait_false_and_bad_options_before_any_write(sim: pvectl.sim.Cluster,
                                                                   pve: pvectl.Cluster) -> None:
    with pytest.raises(pvectl.UsageError, match="--no-wait does not apply") as e:
        pve.vms.clone(TEMPLATE, "web-1", wait=False)
    assert e.value.exit_code == 2 and e.value.hint and "--timeout" in e.value.hint
    with pytest.raises(pvectl.UsageError, match="--count must be at least 1"):
        pve.vms.clone(TEMPLATE, "web-{n}", count=0)
    with pytest.raises(pvectl.UsageError, match="--name-start must be a number or 'next'"):
        pve.vms.clone(TEMPLATE, "web-{n}", count=2, name_start="later")
    with pytest.raises(pvectl.UsageError, match="needs a static ip"):
        pve.vms.clone(TEMPLATE, "web-1", ip="dhcp", gw="10.0.0.1")
    with pytest.raises(pvectl.UsageError, match="unknown clone option.*: cpus"):
        pve.vms.clone(TEMPLATE, "web-1", cpus=2)  # type: ignore[call-overload]
    with pytest.raises(pvectl.GuardRefused):                 # the name belongs to a VM not made from the template
        pve.vms.clone(TEMPLATE, "web-01")
    assert writes(sim) == []

