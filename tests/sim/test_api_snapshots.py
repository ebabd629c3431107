"""Snapshots: create (with RAM for a running VM), list, config, rollback, delete, and their errors.

Sources: qemu-server `src/PVE/API2/Qemu.pm` (snapshot_list, snapshot, delsnapshot, rollback,
get/update_snapshot_config, vm_config `snapshot=`), `src/PVE/QemuConfig.pm` (__snapshot_* hooks),
pve-guest-common `src/PVE/AbstractConfig.pm` (snapshot_create/_delete/_rollback, check_lock),
pve-storage `volume_has_feature` (which storages can snapshot).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apiharness import Client, auth, migration_log, scaled, wait_until

from pvectl.sim.backend import Backend
from pvectl.sim.models import GIB, State, Storage, Volume
from pvectl.sim.routes import Api
from pvectl.schema import Schema

VM = "/nodes/pve1/qemu"


def snap(client: Client, vmid: int, name: str, **params: object) -> tuple[str, list[str]]:
    return client.run("POST", f"{VM}/{vmid}/snapshot", {"snapname": name, **params})


def names(client: Client, vmid: int) -> dict[str, dict[str, object]]:
    return {item["name"]: item for item in client.get(f"{VM}/{vmid}/snapshot")}


def test_snapshot_of_a_stopped_vm(client: Client, backend: Backend) -> None:
    before = client.get(f"{VM}/103/config")
    status, log = snap(client, 103, "before_upgrade", description="pre-change")
    assert status == "OK"
    # QemuConfig.pm::__snapshot_create_vol_snapshot prints the drive; lvcreate prints the snapshot LV;
    # the cloud-init CD-ROM is skipped (drive_is_cdrom)
    assert log == ["snapshotting 'drive-scsi0' (local-lvm:vm-103-disk-0)",
                   '  Logical volume "snap_vm-103-disk-0_before_upgrade" created.', "TASK OK"]
    listing = client.get(f"{VM}/103/snapshot")
    assert [i["name"] for i in listing] == ["before_upgrade", "current"]
    item, current = listing
    assert item["vmstate"] == 0 and item["description"] == "pre-change" and "parent" not in item
    assert isinstance(item["snaptime"], int) and item["snaptime"] > 0
    config = client.get(f"{VM}/103/config")
    assert current == {"name": "current", "digest": config["digest"], "running": 0,
                       "description": "You are here!", "parent": "before_upgrade"}
    assert config["parent"] == "before_upgrade" and "lock" not in config
    # the snapshot section: the config at that moment, without lock/digest/description/unused
    section = client.get(f"{VM}/103/snapshot/before_upgrade/config")
    expected = {k: v for k, v in before.items() if k not in ("digest", "description")}
    assert section == {**expected, "snaptime": item["snaptime"], "description": "pre-change"}
    # GET config?snapshot= is the same section plus the digest of the whole file
    assert client.get(f"{VM}/103/config", {"snapshot": "before_upgrade"}) == {**section, "digest": config["digest"]}
    assert config["digest"] != before["digest"]      # the file now carries a [before_upgrade] section
    assert client.get(f"{VM}/103/snapshot/before_upgrade") == [{"cmd": "rollback"}, {"cmd": "config"}]


def test_snapshot_tree_and_delete_reparents(client: Client, backend: Backend) -> None:
    for name in ("s1", "s2", "s3"):
        assert snap(client, 103, name)[0] == "OK"
    tree = names(client, 103)
    assert tree["s2"]["parent"] == "s1" and tree["s3"]["parent"] == "s2" and tree["current"]["parent"] == "s3"
    status, log = client.run("DELETE", f"{VM}/103/snapshot/s2")
    assert status == "OK"
    assert log == ['  Logical volume "snap_vm-103-disk-0_s2" successfully removed.', "TASK OK"]
    tree = names(client, 103)
    assert set(tree) == {"s1", "s3", "current"} and tree["s3"]["parent"] == "s1"
    assert client.run("DELETE", f"{VM}/103/snapshot/s3")[0] == "OK"
    assert names(client, 103)["current"]["parent"] == "s1"
    assert client.run("DELETE", f"{VM}/103/snapshot/s1")[0] == "OK"
    assert names(client, 103) == {"current": {"name": "current", "running": 0, "description": "You are here!",
                                              "digest": client.get(f"{VM}/103/config")["digest"]}}
    assert "parent" not in client.get(f"{VM}/103/config")


def test_snapshot_errors(client: Client, backend: Backend) -> None:
    # reserved names: SYNC, before the fork (API2/Qemu.pm::snapshot)
    r = client.fail("POST", f"{VM}/103/snapshot", {"snapname": "current"})
    assert (r.status, r.reason) == (500, "unable to use snapshot name 'current' (reserved name)")
    r = client.fail("POST", f"{VM}/103/snapshot", {"snapname": "Pending"})
    assert (r.status, r.reason) == (500, "unable to use snapshot name 'pending' (reserved name)")
    # pve-snapshot-name is a pve-configid: a letter first
    r = client.fail("POST", f"{VM}/103/snapshot", {"snapname": "1st"})
    assert r.status == 400 and r.json["errors"] == {"snapname": "invalid format - invalid configuration ID '1st'\n"}
    r = client.fail("POST", f"{VM}/103/snapshot", {"snapname": "a" * 41})
    assert r.status == 400 and "snapname" in r.json["errors"]
    r = client.fail("POST", "/nodes/pve2/qemu/103/snapshot", {"snapname": "s1"}, local="pve2")
    assert (r.status, r.reason) == (500, "Configuration file 'nodes/pve2/qemu-server/103.conf' does not exist")
    # inside the task (AbstractConfig.pm::__snapshot_prepare)
    assert snap(client, 103, "s1")[0] == "OK"
    assert snap(client, 103, "s1") == ("snapshot name 's1' already used",
                                       ["TASK ERROR: snapshot name 's1' already used"])
    assert snap(client, 9000, "s1")[0] == "you can't take a snapshot if it's a template"
    assert "lock" not in client.get(f"{VM}/103/config")     # the failed prepare wrote nothing
    # missing snapshots: plain dies (no 404), in the task for delete and rollback
    r = client.fail("GET", f"{VM}/103/snapshot/nope/config")
    assert (r.status, r.reason) == (500, "snapshot 'nope' does not exist")
    r = client.fail("GET", f"{VM}/103/config", {"snapshot": "nope"})
    assert (r.status, r.reason) == (500, "snapshot 'nope' does not exist")
    assert client.run("DELETE", f"{VM}/103/snapshot/nope")[0] == "snapshot 'nope' does not exist"
    assert client.run("POST", f"{VM}/103/snapshot/nope/rollback")[0] == "snapshot 'nope' does not exist"
    r = client.fail("GET", f"{VM}/103/config", {"snapshot": "s1", "current": 1})
    msg = "cannot use 'snapshot' parameter with 'current'"
    assert r.status == 400 and r.json["errors"] == {"snapshot": msg, "current": msg}


def _add_disk(backend: Backend, vmid: int, key: str, storage: Storage, volname: str) -> None:
    state: State = backend.state
    state.storages.setdefault(storage.sid, storage)
    vm = state.vms[vmid]
    volid = f"{storage.sid}:{volname}"
    vm.config[key] = f"{volid},size=8G"
    state.volumes[volid if storage.shared else f"{vm.node}/{volid}"] = Volume(volid, 8 * GIB, vmid,
                                                                              None if storage.shared else vm.node)


def test_snapshot_feature_depends_on_the_storage(client: Client, backend: Backend) -> None:
    # pve-storage Plugin.pm: a dir/NFS storage snapshots qcow2 only; raw files cannot
    nas = Storage("nas", "nfs", "images", True, 2048 * GIB)
    _add_disk(backend, 103, "scsi1", nas, "103/vm-103-disk-1.raw")
    assert snap(client, 103, "s1") == ("snapshot feature is not available",
                                       ["TASK ERROR: snapshot feature is not available"])
    assert "lock" not in client.get(f"{VM}/103/config") and names(client, 103).keys() == {"current"}
    _add_disk(backend, 106, "scsi1", nas, "106/vm-106-disk-1.qcow2")
    status, log = snap(client, 106, "s1")
    assert status == "OK"
    assert log == ["snapshotting 'drive-scsi0' (local-lvm:vm-106-disk-0)",
                   '  Logical volume "snap_vm-106-disk-0_s1" created.',
                   "snapshotting 'drive-scsi1' (nas:106/vm-106-disk-1.qcow2)", "TASK OK"]
    # LVMPlugin.pm (thick LVM): raw logical volumes have no snapshot feature
    _add_disk(backend, 109, "scsi1", Storage("san", "lvm", "images", True, 4096 * GIB), "vm-109-disk-1")
    assert snap(client, 109, "s1")[0] == "snapshot feature is not available"


def test_locked_vm_cannot_be_snapshotted(client: Client, backend: Backend) -> None:
    backend.state.vms[103].config["lock"] = "backup"
    assert snap(client, 103, "s1")[0] == "VM is locked (backup)"
    backend.state.vms[103].config.pop("lock")
    assert snap(client, 103, "s1")[0] == "OK"
    backend.state.vms[103].config["lock"] = "migrate"
    assert client.run("DELETE", f"{VM}/103/snapshot/s1")[0] == "VM is locked (migrate)"
    assert client.run("POST", f"{VM}/103/snapshot/s1/rollback")[0] == "VM is locked (migrate)"
    r = client.fail("PUT", f"{VM}/103/snapshot/s1/config", {"description": "x"})
    assert (r.status, r.reason) == (500, "VM is locked (migrate)")
    backend.state.vms[103].config.pop("lock")
    assert client.ok("PUT", f"{VM}/103/snapshot/s1/config", {"description": "known good"}) is None
    assert client.get(f"{VM}/103/snapshot/s1/config")["description"] == "known good"


def test_running_vm_with_ram(client: Client, backend: Backend) -> None:
    status, log = snap(client, 100, "live", vmstate=1)
    assert status == "OK", log
    # QemuConfig.pm::__snapshot_create_vol_snapshots_hook: savevm progress, then the volumes
    assert log[0] == "saving VM state and RAM using storage 'local-lvm'"
    assert log[-4].startswith("completed saving the VM state in ") and ", saved " in log[-4]
    assert log[-3:] == ["snapshotting 'drive-scsi0' (local-lvm:vm-100-disk-0)",
                        '  Logical volume "snap_vm-100-disk-0_live" created.', "TASK OK"]
    section = client.get(f"{VM}/100/snapshot/live/config")
    assert section["vmstate"] == "local-lvm:vm-100-state-live"
    assert section["runningmachine"].startswith("pc-i440fx-") and section["runningcpu"]
    # the state volume: twice the memory plus 500 MiB (QemuConfig.pm::__snapshot_save_vmstate)
    vol = backend.state.volumes["pve1/local-lvm:vm-100-state-live"]
    assert vol.size == (4096 * 2 + 500) << 20
    assert names(client, 100)["live"]["vmstate"] == 1 and names(client, 100)["current"]["running"] == 1
    # a snapshot of a running VM without RAM: disks only, the VM keeps running
    assert snap(client, 100, "disks")[1] == ["snapshotting 'drive-scsi0' (local-lvm:vm-100-disk-0)",
                                             '  Logical volume "snap_vm-100-disk-0_disks" created.', "TASK OK"]
    assert "vmstate" not in client.get(f"{VM}/100/snapshot/disks/config")
    # deleting the RAM snapshot frees its state volume first
    status, log = client.run("DELETE", f"{VM}/100/snapshot/live")
    assert log == ['  Logical volume "vm-100-state-live" successfully removed.',
                   '  Logical volume "snap_vm-100-disk-0_live" successfully removed.', "TASK OK"]
    assert "pve1/local-lvm:vm-100-state-live" not in backend.state.volumes


def test_rollback_restores_config_and_power_state(client: Client, backend: Backend) -> None:
    assert snap(client, 100, "base")[0] == "OK"                  # running VM, no RAM
    assert client.ok("PUT", f"{VM}/100/config", {"name": "renamed", "cores": 8}) is None
    assert client.run("PUT", f"{VM}/100/resize", {"disk": "scsi0", "size": "+10G"})[0] == "OK"
    status, log = client.run("POST", f"{VM}/100/snapshot/base/rollback")
    assert status == "OK"
    # LvmThinPlugin.pm::volume_snapshot_rollback: lvremove, then lvcreate from the snapshot
    assert log == ['  Logical volume "vm-100-disk-0" successfully removed.',
                   '  Logical volume "vm-100-disk-0" created.', "TASK OK"]
    config = client.get(f"{VM}/100/config")
    section = client.get(f"{VM}/100/snapshot/base/config")
    assert config["name"] == section["name"] != "renamed" and config["cores"] == section["cores"]
    assert config["scsi0"] == section["scsi0"] and config["parent"] == "base"
    assert config["vmgenid"] != section["vmgenid"]     # __snapshot_rollback_hook: a new generation
    assert backend.state.volumes["pve1/local-lvm:vm-100-disk-0"].size == \
        int(section["scsi0"].rsplit("size=", 1)[1][:-1]) * GIB
    # the running VM was stopped for the rollback and stays stopped without `start`
    assert client.get(f"{VM}/100/status/current")["status"] == "stopped"
    assert client.run("POST", f"{VM}/100/snapshot/base/rollback", {"start": 1})[0] == "OK"
    assert client.get(f"{VM}/100/status/current")["status"] == "running"


def test_rollback_to_ram_snapshot_resumes(client: Client, backend: Backend) -> None:
    assert snap(client, 100, "live", vmstate=1)[0] == "OK"
    assert client.run("POST", f"{VM}/100/status/stop")[0] == "OK"
    assert client.run("POST", f"{VM}/100/snapshot/live/rollback")[0] == "OK"
    # a snapshot with RAM always starts the VM (AbstractConfig.pm: __snapshot_rollback_vm_start)
    assert client.get(f"{VM}/100/status/current")["status"] == "running"
    assert "runningmachine" not in client.get(f"{VM}/100/config")


def test_permissions(api: Api, backend: Backend) -> None:
    from apiharness import AUDIT100, AUDIT100_SECRET

    audit = Client(api, auth(AUDIT100, AUDIT100_SECRET))
    assert [i["name"] for i in audit.get(f"{VM}/100/snapshot")] == ["current"]
    r = audit.fail("POST", f"{VM}/100/snapshot", {"snapname": "s1"})
    assert (r.status, r.reason) == (403, "Permission check failed (/vms/100, VM.Snapshot)")
    r = audit.fail("POST", f"{VM}/100/snapshot/s1/rollback")
    assert (r.status, r.reason) == (403, "Permission check failed (/vms/100, VM.Snapshot|VM.Snapshot.Rollback)")
    backend.add_token("ops@pve!rb", "s3cret", privs={"/vms/100": ["VM.Snapshot.Rollback", "VM.Audit"]})
    ops = Client(api, auth("ops@pve!rb", "s3cret"))
    # `start` needs VM.PowerMgmt up front (API2/Qemu.pm::rollback)
    r = ops.fail("POST", f"{VM}/100/snapshot/s1/rollback", {"start": 1})
    assert (r.status, r.reason) == (403, "Permission check failed (/vms/100, VM.PowerMgmt)")


def test_snapshots_survive_a_state_round_trip(client: Client, backend: Backend) -> None:
    assert snap(client, 103, "keep", description="d")[0] == "OK"
    again = State.from_json(backend.state.to_json())
    assert again.vms[103].snapshots == backend.state.vms[103].snapshots
    assert again.vms[103].snapshots["keep"]["description"] == "d"


@pytest.fixture
def slow(schema: Schema) -> Iterator[tuple[Client, Backend]]:
    """time_scale 0.2: each volume snapshot takes 0.1 s, long enough to see the lock."""
    with scaled(schema, 0.2) as pair:
        yield pair


def test_locks_while_tasks_run(slow: tuple[Client, Backend]) -> None:
    client, backend = slow
    locks: list[str] = []

    def seen(upid: str) -> list[str]:
        while client.task_status(upid)["status"] == "running":
            lock = client.get(f"{VM}/103/config").get("lock")
            if lock and lock not in locks:
                locks.append(lock)
        return locks

    upid = client.ok("POST", f"{VM}/103/snapshot", {"snapname": "s1"})
    wait_until(lambda: client.get(f"{VM}/103/config").get("lock") == "snapshot", "lock: snapshot")
    # the list shows the snapshot in its prepare state meanwhile, and other writes are refused
    assert names(client, 103)["s1"]["snapstate"] == "prepare"
    r = client.fail("PUT", f"{VM}/103/config", {"name": "x"})
    assert (r.status, r.reason) == (500, "VM is locked (snapshot)")
    assert seen(upid) == ["snapshot"] and client.wait(upid)["exitstatus"] == "OK"
    locks.clear()
    upid = client.ok("DELETE", f"{VM}/103/snapshot/s1")
    assert seen(upid) == ["snapshot-delete"] and client.wait(upid)["exitstatus"] == "OK"
    assert "lock" not in client.get(f"{VM}/103/config")


def test_clone_from_a_snapshot(client: Client, backend: Backend) -> None:
    # API2/Qemu.pm::clone_vm with snapname: the snapshot's section is the source (`$oldconf`)
    r = client.fail("POST", f"{VM}/103/clone", {"newid": 310, "snapname": "nope"})
    assert (r.status, r.reason) == (500, "snapshot 'nope' does not exist")
    assert snap(client, 103, "golden")[0] == "OK"
    cores = backend.state.vms[103].config["cores"]
    assert client.ok("PUT", f"{VM}/103/config", {"cores": cores * 2}) is None
    # a linked clone of a normal VM works from a snapshot on LVM-thin (`clone => { base => 1, snap => 1 }`)
    status, log = client.run("POST", f"{VM}/103/clone", {"newid": 310, "snapname": "golden", "full": 0,
                                                           "name": "from-golden"})
    assert status == "OK", log
    assert "create linked clone of drive scsi0 (local-lvm:vm-103-disk-0)" in log
    conf = client.get(f"{VM}/310/config")
    assert conf["cores"] == cores and conf["name"] == "from-golden"
    assert not {"parent", "snaptime", "snapstate"} & set(conf)
    # a full clone (the default for a normal VM) copies the snapshot with qemu-img
    status, log = client.run("POST", f"{VM}/103/clone", {"newid": 311, "snapname": "golden"})
    assert status == "OK" and client.get(f"{VM}/311/config")["cores"] == cores
    # pve-storage Plugin.pm: a qcow2 file on NFS can be snapshotted but not linked-cloned from a snapshot
    _add_disk(backend, 106, "scsi1", Storage("nas", "nfs", "images", True, 2048 * GIB), "106/vm-106-disk-1.qcow2")
    assert snap(client, 106, "s1")[0] == "OK"
    r = client.fail("POST", f"{VM}/106/clone", {"newid": 312, "snapname": "s1", "full": 0})
    assert (r.status, r.reason) == (500, "Linked clone feature is not supported for a snapshot of "
                                         "'nas:106/vm-106-disk-1.qcow2' (scsi1)")


def test_destroying_a_vm_removes_its_snapshots(client: Client, backend: Backend) -> None:
    assert snap(client, 100, "live", vmstate=1)[0] == "OK"
    assert snap(client, 100, "disks")[0] == "OK"
    assert client.run("POST", f"{VM}/100/status/stop")[0] == "OK"
    status, log = client.run("DELETE", f"{VM}/100")
    assert status == "OK"
    # LvmThinPlugin.pm::free_image drops the snapshot LVs before the volume; QemuServer.pm::destroy_vm
    # frees the snapshots' vmstate volumes after the config's disks
    assert log == ['  Logical volume "vm-100-cloudinit" successfully removed.',
                   '  Logical volume "snap_vm-100-disk-0_disks" successfully removed.',
                   '  Logical volume "snap_vm-100-disk-0_live" successfully removed.',
                   '  Logical volume "vm-100-disk-0" successfully removed.',
                   '  Logical volume "vm-100-state-live" successfully removed.', "TASK OK"]
    assert not [v for v in backend.state.volumes.values() if v.vmid == 100]


def test_snapshots_on_local_storage_block_migration(client: Client, backend: Backend) -> None:
    # QemuMigrate.pm::scan_local_volumes: "we cannot migrate snapshots on local storage" (LVM-thin here)
    assert snap(client, 103, "s1")[0] == "OK"
    status, lines = client.run("POST", f"{VM}/103/migrate", {"target": "pve2"})
    assert status == "migration aborted"
    text = migration_log(lines)
    assert "can't migrate local disk 'local-lvm:vm-103-disk-0': non-migratable snapshot exists" in text
    assert backend.state.vms[103].node == "pve1" and "lock" not in backend.state.vms[103].config
    # a running VM: storage migration with snapshots is refused as such
    assert snap(client, 100, "live", vmstate=1)[0] == "OK"
    status, lines = client.run("POST", f"{VM}/100/migrate", {"target": "pve2", "online": 1,
                                                              "with-local-disks": 1})
    text = migration_log(lines)
    assert status == "migration aborted"
    assert "found local disk 'local-lvm:vm-100-state-live' (referenced by snapshot(s))" in text
    assert ("can't migrate local disk 'local-lvm:vm-100-disk-0': online storage migration not possible if "
            "non-replicated snapshot exists") in text


def test_migration_precondition_lists_snapshot_references(client: Client) -> None:
    # API2/Qemu.pm::migrate_vm_precondition reports QemuServer.pm::foreach_volid's attributes
    assert snap(client, 100, "live", vmstate=1)[0] == "OK"
    disks = {d["volid"]: d for d in client.get(f"{VM}/100/migrate")["local_disks"]}
    assert disks["local-lvm:vm-100-disk-0"]["referenced_in_snapshot"] == {"live": 1}
    assert disks["local-lvm:vm-100-disk-0"]["is_attached"] == 1
    state = disks["local-lvm:vm-100-state-live"]
    assert (state["is_vmstate"], state["is_attached"], state["referenced_in_snapshot"]) == (1, 0, {"live": 1})
    assert state["size"] == (4096 * 2 + 500) << 20


def test_answers_fit_the_schema(client: Client, schema: Schema) -> None:
    base = "/nodes/{node}/qemu/{vmid}/snapshot"
    upid = client.ok("POST", f"{VM}/100/snapshot", {"snapname": "s1", "vmstate": 1})
    assert schema.check_returns(schema.endpoint("POST", base), upid) == []
    client.wait(upid)
    for method, template, path in (("GET", base, f"{VM}/100/snapshot"),
                                   ("GET", base + "/{snapname}", f"{VM}/100/snapshot/s1"),
                                   ("GET", base + "/{snapname}/config", f"{VM}/100/snapshot/s1/config"),
                                   ("GET", "/nodes/{node}/qemu/{vmid}/config", f"{VM}/100/config?snapshot=s1"),
                                   ("GET", "/nodes/{node}/qemu/{vmid}/migrate", f"{VM}/100/migrate")):
        p, _, query = path.partition("?")
        data = client.get(p, query=query)
        assert schema.check_returns(schema.endpoint(method, template), data) == [], template


def test_feature_endpoint_asks_every_disk(client: Client, backend: Backend) -> None:
    # qemu-server API2/Qemu.pm::vm_feature -> QemuConfig.pm::has_feature: one disk without the feature
    # makes the answer 0, whatever the disks after it offer (pve-storage *Plugin.pm::volume_has_feature)
    nas = Storage("nas", "nfs", "images", True, 2048 * GIB)
    _add_disk(backend, 103, "scsi1", nas, "103/vm-103-disk-1.raw")
    _add_disk(backend, 103, "scsi2", nas, "103/vm-103-disk-2.qcow2")
    feature = client.get(f"{VM}/103/feature", {"feature": "snapshot"})
    # `return $err ? 0 : 1`: a JSON number
    assert type(feature["hasFeature"]) is int and feature["hasFeature"] == 0
    # shared_nodes: a local disk (local-lvm) pins the VM to its node
    assert feature["nodes"] == ["pve1"]
    backend.state.vms[103].config.pop("scsi1")
    assert client.get(f"{VM}/103/feature", {"feature": "snapshot"})["hasFeature"] == 1
    # copy: every format on every storage; clone: base volumes only (a VM, not a template)
    assert client.get(f"{VM}/103/feature", {"feature": "copy"})["hasFeature"] == 1
    assert client.get(f"{VM}/103/feature", {"feature": "clone"})["hasFeature"] == 0
    # with snapname: the snapshot's disks, `snap` key (LVM-thin clones from a snapshot, NFS qcow2 does not)
    assert snap(client, 103, "s1")[0] == "OK"
    r = client.get(f"{VM}/103/feature", {"feature": "clone", "snapname": "s1"})
    assert r["hasFeature"] == 0
    backend.state.vms[103].config.pop("scsi2")
    backend.state.vms[103].snapshots["s1"].pop("scsi2")
    assert client.get(f"{VM}/103/feature", {"feature": "clone", "snapname": "s1"})["hasFeature"] == 1
    r = client.call("GET", f"{VM}/103/feature", {"feature": "clone", "snapname": "nope"})
    assert (r.status, r.reason) == (500, "snapshot 'nope' does not exist")
