"""Delete: SYNC early checks, then the qmdestroy task that frees volumes.

Spec: pve-semantics row 4 and §6, §3.2 (locked VM: task error), Appendix A.
"""

from __future__ import annotations

from apiharness import Client

from pvectl.sim.backend import Backend
from pvectl.sim.models import GIB, Volume


def test_running_vm_is_sync_error(client: Client) -> None:
    r = client.fail("DELETE", "/nodes/pve3/qemu/102")
    assert (r.status, r.reason) == (500, "VM 102 is running - destroy failed")
    assert r.json == {"data": None, "message": "VM 102 is running - destroy failed\n"}


def test_protected_vm(client: Client, backend: Backend) -> None:
    protected = [v for v in backend.state.vms.values() if v.config.get("protection")]
    assert [v.vmid for v in protected] == [101]
    # protection is checked before the running state (row 4)
    assert protected[0].status == "running"
    r = client.fail("DELETE", "/nodes/pve2/qemu/101")
    assert (r.status, r.reason) == (500, "can't remove VM 101 - protection mode enabled")


def test_missing_vm(client: Client) -> None:
    r = client.fail("DELETE", "/nodes/pve1/qemu/555")
    assert (r.status, r.reason) == (500, "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist")


def test_delete_removes_vm_and_volumes(client: Client, backend: Backend) -> None:
    upid = client.ok("DELETE", "/nodes/pve1/qemu/103")
    assert upid.split(":")[5:7] == ["qmdestroy", "103"]
    assert client.wait(upid)["exitstatus"] == "OK"
    assert client.log(upid) == ['  Logical volume "vm-103-cloudinit" successfully removed.',
                                '  Logical volume "vm-103-disk-0" successfully removed.', "TASK OK"]
    r = client.fail("GET", "/nodes/pve1/qemu/103/config")
    assert r.reason == "Configuration file 'nodes/pve1/qemu-server/103.conf' does not exist"
    assert not [v for v in backend.state.volumes.values() if v.vmid == 103]
    assert 103 not in [e["vmid"] for e in client.get("/cluster/resources", {"type": "vm"})]
    assert client.get("/cluster/nextid", {"vmid": 103}) == "103"


def test_destroy_unreferenced_disks(client: Client, backend: Backend) -> None:
    for vmid in (103, 106):
        backend.state.volumes[f"pve1/local-lvm:vm-{vmid}-disk-7"] = Volume(f"local-lvm:vm-{vmid}-disk-7", GIB, vmid,
                                                                             "pve1")
    status, lines = client.run("DELETE", "/nodes/pve1/qemu/103", {"destroy-unreferenced-disks": 1})
    assert status == "OK"
    assert '  Logical volume "vm-103-disk-7" successfully removed.' in lines
    assert "pve1/local-lvm:vm-103-disk-7" not in backend.state.volumes
    status, lines = client.run("DELETE", "/nodes/pve1/qemu/106")
    assert status == "OK"
    assert '  Logical volume "vm-106-disk-7" successfully removed.' not in lines
    assert "pve1/local-lvm:vm-106-disk-7" in backend.state.volumes      # default 0 keeps orphans (§6)


def test_purge_logs(client: Client) -> None:
    status, lines = client.run("DELETE", "/nodes/pve1/qemu/103", {"purge": 1})
    assert status == "OK" and "purging VM 103 from related configurations.." in lines


def test_locked_vm_fails_in_task(client: Client, backend: Backend) -> None:
    backend.state.vms[103].config["lock"] = "backup"
    status, _ = client.run("DELETE", "/nodes/pve1/qemu/103")
    assert status == "VM is locked (backup)"
    assert client.get("/nodes/pve1/qemu/103/config")["lock"] == "backup"


def test_template_with_linked_clones(client: Client, backend: Backend) -> None:
    status, _ = client.run("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300})
    assert status == "OK"
    status, _ = client.run("DELETE", "/nodes/pve1/qemu/9000")
    assert status == "base volume 'local-lvm:base-9000-disk-0' is still in use by linked cloned"
    assert client.get("/nodes/pve1/qemu/9000/config")["template"] == 1
    # once the linked clone is gone the template can go
    assert client.run("DELETE", "/nodes/pve1/qemu/300")[0] == "OK"
    assert client.run("DELETE", "/nodes/pve1/qemu/9000")[0] == "OK"
    assert not [v for v in backend.state.volumes.values() if v.vmid == 9000]


def test_full_clone_does_not_block_template_delete(client: Client) -> None:
    assert client.run("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1})[0] == "OK"
    assert client.run("DELETE", "/nodes/pve1/qemu/9000")[0] == "OK"
