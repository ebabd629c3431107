"""Clone: SYNC checks, the new VM's config, progress lines, locking, interruption.

Spec: pve-semantics §4 (clone rules, new config, cleanup), row 5 and §3.4 (shared vs exclusive flock),
§2.1 (clone task log), §1.4 (stopping a clone), Appendix A.
"""

from __future__ import annotations

import re
import urllib.parse

import pytest
from apiharness import Client, wait_until
from testkit import move_to_shared

from pvectl.sim.backend import Backend
from pvectl.sim.models import Container

PROGRESS = re.compile(r"^transferred (\d+\.\d) (B|KiB|MiB|GiB|TiB) of (\d+\.\d) (B|KiB|MiB|GiB|TiB) \((\d+\.\d\d)%\)$")


def config_or_none(client: Client, node: str, vmid: int) -> dict | None:
    r = client.call("GET", f"/nodes/{node}/qemu/{vmid}/config")
    return r.data if r.status == 200 else None


# ---------------------------------------------------------------- SYNC errors (§4.2, row 5)
def test_newid_exists_on_same_node(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 103})
    assert (r.status, r.reason) == (500, "unable to create VM 103: config file already exists")


def test_newid_exists_on_other_node_fails_in_task(client: Client) -> None:
    # §4.2: not checked SYNC; pmxcfs refuses the temporary config (derived, UNCERTAIN in the spec)
    status, lines = client.run("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 104})
    assert status == "close (rename) atomic file '/etc/pve/nodes/pve1/qemu-server/104.conf' failed: File exists"
    assert client.get("/nodes/pve2/qemu/104/config")["name"] == "mq-01"


def test_linked_clone_of_non_template(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/103/clone", {"newid": 300, "full": 0})
    assert (r.status, r.reason) == (500, "Linked clone feature is not supported for 'local-lvm:vm-103-disk-0' (scsi0)")


def test_clone_to_other_node_from_local_storage(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "target": "pve2"})
    assert (r.status, r.reason) == (500, "can't clone VM to node 'pve2' (VM uses local storage)")


def test_linked_clone_with_storage_or_format(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "storage": "ceph-vm"})
    assert (r.status, r.reason) == (500, "parameter 'storage' not allowed for linked clones")
    r = client.fail("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "format": "raw"})
    assert r.reason == "parameter 'format' not allowed for linked clones"


def test_clone_storage_checks(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1, "storage": "nope"})
    assert r.reason == "storage 'nope' does not exist"
    r = client.fail("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1, "storage": "local"})
    assert r.status == 400 and r.json["errors"] == {"storage": "storage 'local' does not support vm images"}
    r = client.fail("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "target": "pve9"})
    assert r.reason == "no such cluster node 'pve9'"


def test_clone_bad_name_is_400(client: Client) -> None:
    r = client.fail("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "name": "bad_name!"})
    assert r.status == 400
    assert r.json["errors"] == {"name": "invalid format - value does not look like a valid DNS name\n"}


# ---------------------------------------------------------------- the new VM (§4.3, §2.1)
def test_full_clone_of_template(client: Client, backend: Backend) -> None:
    src = dict(backend.state.vms[9000].config)
    # bwlimit (KiB/s) slows the copy so the checks during the clone have time
    upid = client.ok("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "name": "web-new", "full": 1,
                                                             "bwlimit": 307200})
    assert upid.split(":")[5:7] == ["qmclone", "9000"]             # the task id is the SOURCE vmid (§1.1)
    wait_until(lambda: config_or_none(client, "pve1", 300) is not None, "temporary config")
    during = client.get("/nodes/pve1/qemu/300/config")
    assert during["lock"] == "clone"
    assert client.get("/nodes/pve1/qemu/300/status/current")["lock"] == "clone"
    assert "lock" not in client.get("/nodes/pve1/qemu/9000/config")      # the source gets no lock (§3.4)
    st = client.wait(upid)
    assert st["exitstatus"] == "OK"
    lines = client.log(upid)
    assert lines[0] == "creating a clone of VM 9000 with ID 300"
    assert "create full clone of drive scsi0 (local-lvm:base-9000-disk-0)" in lines
    progress = [line for line in lines if line.startswith("transferred ")]
    assert all(PROGRESS.match(line) for line in progress), progress[:3]
    assert progress[0] == "transferred 0.0 B of 32.0 GiB (0.00%)"
    assert lines[-2:] == ["transferred 32.0 GiB of 32.0 GiB (100.00%)", "TASK OK"]
    assert progress.count("transferred 32.0 GiB of 32.0 GiB (100.00%)") == 1
    percents = [float(PROGRESS.match(line).group(5)) for line in progress]  # type: ignore[union-attr]
    assert percents == sorted(percents)

    conf = client.get("/nodes/pve1/qemu/300/config")
    assert "lock" not in conf and "template" not in conf
    assert conf["name"] == "web-new"
    for key in ("cores", "memory", "ostype", "scsihw", "boot", "agent", "tags", "cpu"):
        assert conf[key] == src[key], key
    assert conf["scsi0"].startswith("local-lvm:vm-300-disk-0,") and "size=32G" in conf["scsi0"]
    assert conf["ide2"].startswith("local-lvm:vm-300-cloudinit,") and "media=cdrom" in conf["ide2"]
    assert re.fullmatch(r"virtio=BC:24:11(:[0-9A-F]{2}){3},bridge=vmbr0", conf["net0"])
    assert conf["net0"] != src["net0"]
    assert conf["smbios1"] != src["smbios1"] and conf["vmgenid"] != src["vmgenid"]
    assert "pve1/local-lvm:vm-300-disk-0" in backend.state.volumes
    cur = client.get("/nodes/pve1/qemu/300/status/current")
    assert cur["status"] == "stopped" and "lock" not in cur


def test_linked_clone_default_for_template(client: Client, backend: Backend) -> None:
    status, lines = client.run("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300})
    assert status == "OK"
    assert "create linked clone of drive scsi0 (local-lvm:base-9000-disk-0)" in lines
    assert not [line for line in lines if line.startswith("transferred")]
    conf = client.get("/nodes/pve1/qemu/300/config")
    assert conf["name"] == "Copy-of-VM-ubuntu-24.04-cloud"
    assert conf["scsi0"].startswith("local-lvm:vm-300-disk-0,")


def test_full_clone_of_stopped_vm_default(client: Client) -> None:
    status, lines = client.run("POST", "/nodes/pve1/qemu/103/clone", {"newid": 300})
    assert status == "OK"
    assert "create full clone of drive scsi0 (local-lvm:vm-103-disk-0)" in lines
    assert client.get("/nodes/pve1/qemu/300/config")["name"] == "Copy-of-VM-cache-01"


def test_clone_to_target_on_shared_storage(client: Client, backend: Backend) -> None:
    move_to_shared(backend, 9000)
    status, _ = client.run("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "target": "pve3"})
    assert status == "OK"
    assert client.get("/nodes/pve3/qemu/300/config")["scsi0"].startswith("ceph-vm:vm-300-disk-0,")
    r = client.fail("GET", "/nodes/pve1/qemu/300/config")
    assert r.reason == "Configuration file 'nodes/pve1/qemu-server/300.conf' does not exist"
    entry = next(e for e in client.get("/cluster/resources", {"type": "vm"}) if e["vmid"] == 300)
    assert entry["node"] == "pve3"


def test_full_clone_to_other_storage(client: Client, backend: Backend) -> None:
    status, _ = client.run("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1, "storage": "ceph-vm"})
    assert status == "OK"
    assert client.get("/nodes/pve1/qemu/300/config")["scsi0"].startswith("ceph-vm:vm-300-disk-0,")
    assert "ceph-vm:vm-300-disk-0" in backend.state.volumes


def test_clone_of_running_vm_uses_drive_mirror(client: Client) -> None:
    status, lines = client.run("POST", "/nodes/pve1/qemu/100/clone", {"newid": 300})
    assert status == "OK"
    assert "drive mirror is starting for drive-scsi0" in lines
    mirror = [line for line in lines if line.startswith("drive-scsi0: transferred")]
    assert mirror[-1].startswith("drive-scsi0: transferred 64.0 GiB of 64.0 GiB (100.00%) in ")
    assert mirror[-1].endswith(", ready")
    assert lines[-5:] == ["all 'mirror' jobs are ready", "drive-scsi0: Completing block job...",
                          "drive-scsi0: Completed successfully.", "drive-scsi0: mirror-job finished", "TASK OK"]


# ---------------------------------------------------------------- locking (row 5, §3.4)
def test_concurrent_clones_of_a_template(client: Client) -> None:
    upids = [client.ok("POST", "/nodes/pve1/qemu/9000/clone", {"newid": n, "full": 1}) for n in (301, 302, 303)]
    # all three hold the shared source lock at the same time: each new config carries `lock: clone`
    # only while its task runs, so seeing all three at once proves they overlap
    def all_locked() -> bool:
        confs = [config_or_none(client, "pve1", n) for n in (301, 302, 303)]
        return all(c is not None and c.get("lock") == "clone" for c in confs)

    wait_until(all_locked, "three clones running at once")
    assert [client.wait(u)["exitstatus"] for u in upids] == ["OK", "OK", "OK"]
    assert not [line for u in upids for line in client.log(u) if line.startswith("trying to acquire lock")]


def test_concurrent_clones_of_a_running_vm_are_exclusive(client: Client) -> None:
    first = client.ok("POST", "/nodes/pve1/qemu/100/clone", {"newid": 301})
    second = client.ok("POST", "/nodes/pve1/qemu/100/clone", {"newid": 302})
    results = sorted([client.wait(first)["exitstatus"], client.wait(second)["exitstatus"]])
    assert results == ["OK", "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"]
    loser = second if client.wait(second)["exitstatus"] != "OK" else first
    assert client.log(loser)[-2:] == ["trying to acquire lock...",
                                      "TASK ERROR: can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"]


def test_new_vm_is_locked_during_clone(client: Client) -> None:
    upid = client.ok("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1, "bwlimit": 307200})
    wait_until(lambda: config_or_none(client, "pve1", 300) is not None, "temporary config")
    r = client.fail("PUT", "/nodes/pve1/qemu/300/config", {"cores": 4})
    assert (r.status, r.reason) == (500, "VM is locked (clone)")
    start = client.ok("POST", "/nodes/pve1/qemu/300/status/start")
    st = client.wait(start)
    assert st["exitstatus"] in ("VM is locked (clone)",
                                "can't lock file '/var/lock/qemu-server/lock-300.conf' - got timeout")
    assert client.wait(upid)["exitstatus"] == "OK"


def test_second_clone_to_same_newid(client: Client) -> None:
    upid = client.ok("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1})
    # same node: the temporary config file exists (§4.2)
    r = client.fail("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1})
    assert (r.status, r.reason) == (500, "unable to create VM 300: config file already exists")
    wait_until(lambda: config_or_none(client, "pve1", 300) is not None, "temporary config")
    # another node only learns it from pmxcfs, inside its task
    status, _ = client.run("POST", "/nodes/pve2/qemu/9001/clone", {"newid": 300})
    assert status == "close (rename) atomic file '/etc/pve/nodes/pve2/qemu-server/300.conf' failed: File exists"
    assert client.wait(upid)["exitstatus"] == "OK"


# ---------------------------------------------------------------- interruption (§1.4, §4.4)
def test_stop_running_clone(client: Client, backend: Backend) -> None:
    upid = client.ok("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300, "full": 1})
    wait_until(lambda: any(line.startswith("transferred") for line in client.log(upid)), "copy started")
    assert client.ok("DELETE", f"/nodes/pve1/tasks/{urllib.parse.quote(upid, safe='')}") is None
    st = client.wait(upid)
    assert st["exitstatus"] == "clone failed: interrupted by signal"
    assert client.log(upid)[-1] == "TASK ERROR: clone failed: interrupted by signal"
    r = client.fail("GET", "/nodes/pve1/qemu/300/config")
    assert r.reason == "Configuration file 'nodes/pve1/qemu-server/300.conf' does not exist"
    assert not [v for v in backend.state.volumes.values() if v.vmid == 300]
    # the newid is free again
    status, _ = client.run("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 300})
    assert status == "OK"


# ---------------------------------------------------------------- the new config while the clone runs (§4.3)
def test_clone_in_flight_shows_the_temporary_config(client: Client, backend: Backend) -> None:
    # Qemu.pm::clone_vm writes "# qmclone temporary file\nlock: clone\n" before the first disk;
    # parse_vm_config turns the comment into the description. 103 keeps only scsi0 here, copied slowly.
    backend.state.vms[103].config.pop("ide2")
    upid = client.ok("POST", "/nodes/pve1/qemu/103/clone", {"newid": 301, "name": "slow", "bwlimit": 1024})
    wait_until(lambda: config_or_none(client, "pve1", 301) is not None, "temporary config")
    during = client.get("/nodes/pve1/qemu/301/config")
    assert set(during) == {"lock", "description", "digest"}
    assert (during["lock"], during["description"]) == ("clone", " qmclone temporary file\n")
    assert re.fullmatch(r"[0-9a-f]{40}", during["digest"])
    # pvestatd names a VM without `name` "VM <vmid>"; the lock comes from the config (Cluster.pm::resources)
    def entry() -> dict:
        return next(e for e in client.get("/cluster/resources", {"type": "vm"}) if e["vmid"] == 301)
    wait_until(lambda: entry()["status"] != "unknown", "first pvestatd round")
    assert (entry()["name"], entry()["lock"], entry()["status"]) == ("VM 301", "clone", "stopped")
    client.ok("DELETE", f"/nodes/pve1/tasks/{urllib.parse.quote(upid, safe='')}")
    assert client.wait(upid)["exitstatus"] == "clone failed: interrupted by signal"
    assert config_or_none(client, "pve1", 301) is None


def test_clone_config_is_rewritten_after_each_disk(client: Client, backend: Backend) -> None:
    src = backend.state.vms[103].config
    # disks in sorted order: ide2 (cloud-init, quick), then scsi0 (slow)
    upid = client.ok("POST", "/nodes/pve1/qemu/103/clone", {"newid": 302, "name": "half", "bwlimit": 1024})
    wait_until(lambda: "ide2" in (config_or_none(client, "pve1", 302) or {}), "first disk written")
    during = client.get("/nodes/pve1/qemu/302/config")
    assert during["lock"] == "clone" and during["name"] == "half" and "scsi0" not in during
    assert during["ide2"].startswith("local-lvm:vm-302-cloudinit,") and during["cores"] == src["cores"]
    assert "description" not in during and during["net0"] != src["net0"]
    client.ok("DELETE", f"/nodes/pve1/tasks/{urllib.parse.quote(upid, safe='')}")
    client.wait(upid)


@pytest.mark.parametrize("ct_node", ["pve1", "pve2"])
def test_newid_held_by_a_container_fails_in_task(client: Client, backend: Backend, ct_node: str) -> None:
    # the cluster's vmlist holds containers too: pmxcfs refuses a qemu-server config for a VMID that a
    # CT has, on any node (memdb.c vmlist_different_vm_exists: other type or other node -> EEXIST);
    # `-f` on the local qemu-server path finds nothing, so the refusal comes inside the task
    with backend.mu:
        backend.state.containers[450] = Container.generate(450, ct_node, running=False)
    status, _ = client.run("POST", "/nodes/pve1/qemu/9000/clone", {"newid": 450})
    assert status == "close (rename) atomic file '/etc/pve/nodes/pve1/qemu-server/450.conf' failed: File exists"
    assert 450 not in backend.state.vms
    assert client.call("GET", "/nodes/pve1/qemu/450/config").status == 500
    assert [e["vmid"] for e in client.get("/cluster/resources", {"type": "vm"})].count(450) == 1
