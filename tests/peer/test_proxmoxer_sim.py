"""The seed's workflow driven by proxmoxer, an independent Proxmox VE client, against `pvectl.sim`.

proxmoxer knows nothing of the simulator: if it can list, clone, configure, resize, start, read the
guest agent, shut down and delete, and gets Proxmox's error codes and texts back as
`ResourceException`s, the simulator speaks the API as clients expect it. proxmoxer form-encodes its
bodies correctly, so the values that the seed's `curl -d` mangles (`net0`, `ipconfig0`, `+10G`,
`sshkeys`) go through here.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from simpeer import served
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

from pvectl.sim.cluster import Cluster

SSH_KEYS = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxjZ8a++Tfx3jLg48CXksqky0yqsWrUhUnTezatRKy1 e2e@pvectl\n"
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAWlPlNrcsOKVfZarkZ6VIy+D0oi3eNTn/rkTMsZc+DT ops@pvectl"
)
GIB = 1024**3


@pytest.fixture(scope="module")
def sim() -> Iterator[Cluster]:
    with served(nodes=3, vms=12, templates=2, time_scale=0.02) as c:
        yield c


def connect(sim: Cluster, node: str = "pve1") -> ProxmoxAPI:
    host, port = sim.nodes[node]
    user, _, token_name = sim.token_id.partition("!")
    return ProxmoxAPI(host, port=port, user=user, token_name=token_name, token_value=sim.token_secret,
                      verify_ssl=str(sim.ca_path), timeout=30)


@pytest.fixture(scope="module")
def prox(sim: Cluster) -> ProxmoxAPI:
    assert sim.token_id == "root@pam!pvectl"
    return connect(sim)


def wait(prox: ProxmoxAPI, upid: str, timeout: float = 60) -> dict[str, Any]:
    status = Tasks.blocking_status(prox, upid, timeout=timeout, polling_interval=0.1)
    assert status is not None, f"task {upid} did not end within {timeout}s"
    return status


def wait_ok(prox: ProxmoxAPI, upid: str) -> dict[str, Any]:
    status = wait(prox, upid)
    assert status["status"] == "stopped" and status["exitstatus"] == "OK", status
    return status


def test_list_resources(prox: ProxmoxAPI, sim: Cluster) -> None:
    nodes = prox.nodes.get()
    assert sorted(n["node"] for n in nodes) == sorted(sim.nodes)
    assert all(n["status"] == "online" for n in nodes)
    vms = prox.cluster.resources.get(type="vm")
    assert {v["vmid"] for v in vms} == set(sim.backend.state.vms)
    templates = [v for v in vms if v["template"] == 1]
    assert templates and all("template" in v["tags"].split(";") and v["vmid"] >= 9000 for v in templates)
    everything = prox.cluster.resources.get()
    assert {"node", "storage", "qemu"} <= {r["type"] for r in everything}
    status = prox.cluster.status.get()
    assert [s["name"] for s in status if s["type"] == "node" and s["online"] == 1] == sorted(sim.nodes)


def test_clone_configure_run_delete(prox: ProxmoxAPI, sim: Cluster) -> None:
    tpl = min((v for v in prox.cluster.resources.get(type="vm") if v["template"] == 1), key=lambda v: v["vmid"])
    newid = int(prox.cluster.nextid.get())
    assert newid not in sim.backend.state.vms

    upid = prox.nodes(tpl["node"]).qemu(tpl["vmid"]).clone.post(newid=newid, name="peer-web-01", full=1)
    decoded = Tasks.decode_upid(upid)
    assert decoded["node"] == tpl["node"] and decoded["type"] == "qmclone" and decoded["id"] == str(tpl["vmid"])
    assert decoded["user"] == "root@pam" and decoded["upid"] == upid
    wait_ok(prox, upid)
    log = Tasks.decode_log(prox.nodes(tpl["node"]).tasks(upid).log.get(start=0, limit=1000))
    assert log.splitlines()[0] == f"creating a clone of VM {tpl['vmid']} with ID {newid}"
    assert log.splitlines()[-1] == "TASK OK"
    node = tpl["node"]
    vm = prox.nodes(node).qemu(newid)

    # post-clone configuration: proxmoxer encodes each value once for the form, so `=` and `+` survive
    encoded_keys = urllib.parse.quote(SSH_KEYS, safe="")
    assert vm.config.put(cores=2, memory=2048, net0="virtio,bridge=vmbr0", ipconfig0="ip=dhcp", ciuser="ops",
                         sshkeys=encoded_keys) is None
    cfg = vm.config.get()
    assert cfg["cores"] == 2 and int(cfg["memory"]) == 2048 and cfg["ciuser"] == "ops"
    assert re.fullmatch(r"virtio=([0-9A-F]{2}:){5}[0-9A-F]{2},bridge=vmbr0", cfg["net0"])
    assert cfg["ipconfig0"] == "ip=dhcp"
    assert cfg["sshkeys"] == encoded_keys and urllib.parse.unquote(cfg["sshkeys"]) == SSH_KEYS
    assert sim.backend.state.vms[newid].config["cores"] == 2

    # disk resize: a task since qemu-server 8.0.2
    size = int(re.search(r"size=(\d+)G", cfg["scsi0"]).group(1))  # type: ignore[union-attr]
    upid = vm.resize.put(disk="scsi0", size="+10G")
    assert Tasks.decode_upid(upid)["type"] == "resize"
    wait_ok(prox, upid)
    assert f"size={size + 10}G" in vm.config.get()["scsi0"]

    # start, then wait for the guest agent
    upid = vm.status.start.post()
    assert Tasks.decode_upid(upid)["type"] == "qmstart"
    wait_ok(prox, upid)
    assert vm.status.current.get()["status"] == "running"
    deadline = time.monotonic() + 60
    while True:
        try:
            ifaces = vm.agent("network-get-interfaces").get()["result"]
            break
        except ResourceException as e:
            assert e.status_code == 500, e     # "QEMU guest agent is not running" while it boots
            assert time.monotonic() < deadline, f"the guest agent never answered: {e}"
            time.sleep(0.2)
    addrs = [a["ip-address"] for i in ifaces for a in i.get("ip-addresses", []) if a["ip-address-type"] == "ipv4"]
    assert "127.0.0.1" in addrs and any(not a.startswith("127.") for a in addrs), ifaces

    # deleting it while it runs: Proxmox's 500 with the reason in the status line
    with pytest.raises(ResourceException) as ei:
        vm.delete(purge=1, **{"destroy-unreferenced-disks": 1})
    assert ei.value.status_code == 500
    assert ei.value.content == f"VM {newid} is running - destroy failed"
    assert newid in sim.backend.state.vms

    # shutdown, delete
    upid = vm.status.shutdown.post()
    assert Tasks.decode_upid(upid)["type"] == "qmshutdown"
    wait_ok(prox, upid)
    assert vm.status.current.get()["status"] == "stopped"
    upid = vm.delete(purge=1, **{"destroy-unreferenced-disks": 1})
    assert Tasks.decode_upid(upid)["type"] == "qmdestroy"
    wait_ok(prox, upid)
    assert newid not in {v["vmid"] for v in prox.cluster.resources.get(type="vm")}
    assert not [v for v in sim.backend.state.volumes.values() if v.vmid == newid]
    with pytest.raises(ResourceException) as ei:
        vm.status.current.get()
    assert ei.value.status_code == 500
    assert ei.value.content == f"Configuration file 'nodes/{node}/qemu-server/{newid}.conf' does not exist"


def test_errors_are_resource_exceptions(prox: ProxmoxAPI, sim: Cluster) -> None:
    state = sim.backend.state
    protected = next(v for v in state.vms.values() if str(v.config.get("protection", 0)) == "1")
    with pytest.raises(ResourceException) as ei:
        prox.nodes(protected.node).qemu(protected.vmid).delete()
    assert (ei.value.status_code, ei.value.content) == (
        500, f"can't remove VM {protected.vmid} - protection mode enabled")
    assert protected.vmid in state.vms

    # parameter errors: 400, the reason, and the per-field errors object
    some = next(v for v in state.vms.values() if not v.is_template)
    with pytest.raises(ResourceException) as ei:
        prox.nodes(some.node).qemu(some.vmid).resize.put(disk="scsi0", size="10GB")
    assert ei.value.status_code == 400
    assert ei.value.content == "Parameter verification failed."
    assert ei.value.errors == {"size": "value does not match the regex pattern"}

    # sshkeys not encoded for the API: what the seed's curl -d delivers
    with pytest.raises(ResourceException) as ei:
        prox.nodes(some.node).qemu(some.vmid).config.put(sshkeys=SSH_KEYS)
    assert ei.value.status_code == 400
    assert ei.value.errors == {"sshkeys": f"invalid format - invalid urlencoded string: {SSH_KEYS}\n"}

    # not found / bad token
    with pytest.raises(ResourceException) as ei:
        prox.nodes("pve1").qemu(777).status.current.get()
    assert ei.value.status_code == 500 and "does not exist" in ei.value.content
    host, port = sim.nodes["pve1"]
    bad = ProxmoxAPI(host, port=port, user="root@pam", token_name="pvectl", token_value="0" * 36,
                     verify_ssl=str(sim.ca_path), timeout=30)
    with pytest.raises(ResourceException) as ei:
        bad.version.get()
    assert ei.value.status_code == 401


def test_failed_task_log(prox: ProxmoxAPI, sim: Cluster) -> None:
    """A live migration of local-lvm disks without with-local-disks fails inside its task."""
    state = sim.backend.state
    vm = next(v for v in state.vms.values() if v.status == "running" and not v.is_template
              and str(v.config.get("scsi0", "")).startswith("local-lvm:"))
    target = next(n for n in sim.nodes if n != vm.node)
    upid = prox.nodes(vm.node).qemu(vm.vmid).migrate.post(target=target, online=1)
    d = Tasks.decode_upid(upid)
    assert (d["node"], d["type"], d["id"]) == (vm.node, "qmigrate", str(vm.vmid))
    status = wait(prox, upid)
    assert status["status"] == "stopped" and status["exitstatus"] == "migration aborted"
    log = Tasks.decode_log(prox.nodes(vm.node).tasks(upid).log.get(start=0, limit=1000))
    assert "can't live migrate attached local disks without with-local-disks option" in log
    assert log.splitlines()[-1] == "TASK ERROR: migration aborted"
    assert state.vms[vm.vmid].node == vm.node


def test_any_node_answers(sim: Cluster) -> None:
    """Requests for another node are proxied, as pveproxy does."""
    vm = next(v for v in sim.backend.state.vms.values() if not v.is_template)
    other = next(n for n in sim.nodes if n != vm.node)
    st = connect(sim, other).nodes(vm.node).qemu(vm.vmid).status.current.get()
    assert st["vmid"] == vm.vmid and st["status"] == vm.status
