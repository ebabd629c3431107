"""Cloning a VM or template (qemu-server API2/Qemu.pm::clone_vm, QemuServer.pm::clone_disk)."""

from __future__ import annotations

import time
from typing import Any

from ..models import VM, Volume, random_mac, volume_key
from ..tasks import Interrupted, LockTimeout, TaskContext, TaskError
from .common import (
    CLONE_SKIP,
    NET_MODELS,
    ApiFail,
    Caller,
    _uuid4,
    param_fail,
    parse_prop,
    parse_size,
)
from .core import BackendCore
from .snapdisks import LINKED_FROM_SNAPSHOT, linked_clone_source


class CloneMixin(BackendCore):
    def vm_clone(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        # qemu-server API2/Qemu.pm::clone_vm; checks in `$load_and_check` run before the fork (§4.2)
        newid = int(params["newid"])
        self.check(caller.token, f"/vms/{vmid}", "VM.Clone")
        self.check(caller.token, f"/vms/{newid}", "VM.Allocate")
        target = params.get("target")
        if target in (node, "localhost"):
            target = None
        # `my $running = check_running($vmid)` comes first: assert_config_exists_on_node
        self.check_running_vm(node, vmid)
        pool = params.get("pool")
        if pool:
            # $load_and_check: RPCEnvironment::check_pool_exist -> raise_perm_exc
            raise ApiFail(f"Permission check failed (pool '{pool}' does not exist)", 403)
        if target is not None:
            self.node(target)
        self.require_quorum()
        src = self.load_config(node, vmid)
        self.check_lock(src)
        running = src.status == "running"

        snapname = params.get("snapname")
        src_conf = linked_clone_source(src, snapname)      # `$oldconf`: the snapshot's section with snapname
        full = bool(params["full"]) if "full" in params else not src.is_template
        storage_id = params.get("storage")
        if not full:
            if storage_id:
                raise ApiFail("parameter 'storage' not allowed for linked clones")
            if params.get("format"):
                raise ApiFail("parameter 'format' not allowed for linked clones")
        if storage_id:
            self.check(caller.token, f"/storage/{storage_id}", "Datastore.AllocateSpace")
            st = self.state.storages.get(storage_id)
            if st is None:
                raise ApiFail(f"storage '{storage_id}' does not exist")
            if not st.enabled:
                raise ApiFail(f"storage '{storage_id}' is disabled")
            if st.nodes is not None and node not in st.nodes:
                raise ApiFail(f"storage '{storage_id}' is not available on node '{node}'")
            if "images" not in st.content.split(","):
                raise param_fail({"storage": f"storage '{storage_id}' does not support vm images"})
            if target is not None and not st.shared:
                raise ApiFail(f"can't clone to non-shared storage '{storage_id}'")
        drives = self.vm_drives(src, src_conf)
        if target is not None:
            for key, volid, _ in drives:
                if not self.state.storages[volid.split(":", 1)[0]].shared:
                    raise ApiFail(f"can't clone VM to node '{target}' (VM uses local storage)")
        for key, volid, _ in drives:
            if key.startswith("unused") or full or "cloudinit" in volid:
                continue
            # volume_has_feature('clone'): from a base volume, or from a snapshot on LVM-thin/RBD
            if snapname:
                if self.state.storages[volid.split(":", 1)[0]].plugintype not in LINKED_FROM_SNAPSHOT:
                    raise ApiFail(f"Linked clone feature is not supported for a snapshot of '{volid}' ({key})")
            elif not volid.split(":", 1)[1].startswith("base-"):
                raise ApiFail(f"Linked clone feature is not supported for '{volid}' ({key})")
        existing = self.state.vms.get(newid)
        if (existing is not None and existing.node == node) or newid in self._reserved:
            raise ApiFail(f"unable to create VM {newid}: config file already exists")
        name = params.get("name") or (f"Copy-of-VM-{src.config['name']}" if src.config.get("name") else f"Copy-of-VM-{vmid}")
        description = params.get("description")
        bwlimit = params.get("bwlimit")

        def worker(ctx: TaskContext) -> None:
            # Qemu.pm::clone_vm `$lock_source_vm`: shared flock for a stopped source, exclusive for a
            # running one; `$lock_target_vm`: exclusive on newid; 1 s each, both inside the worker (§3.4)
            try:
                with ctx.config_lock(vmid, shared=not running, timeout=1), ctx.config_lock(newid, timeout=1):
                    self._clone_work(ctx, node, vmid, newid, target, full, storage_id, name, description, bwlimit,
                                     running, snapname)
            finally:
                with self.mu:
                    self._reserved.discard(newid)

        self._reserved.add(newid)
        return self.engine.start(node, "qmclone", str(vmid), caller.userid, worker,
                                 interrupt_message="clone failed: interrupted by signal",
                                 intro=f"creating a clone of VM {vmid} with ID {newid}")

    def _clone_work(self, ctx: TaskContext, node: str, vmid: int, newid: int, target: str | None, full: bool,
                    storage_id: str | None, name: str, description: str | None, bwlimit: int | None,
                    running: bool, snapname: str | None = None) -> None:
        ctx.log(f"creating a clone of VM {vmid} with ID {newid}")      # (the engine's `intro` too)
        with self.mu:
            self._reserved.discard(newid)
            if newid in self.state.vms or newid in self.state.containers:
                # pmxcfs refuses the temp config with EEXIST (memdb.c vmlist_different_vm_exists: the
                # vmlist entry has another node or another type, a container included)
                raise TaskError(f"close (rename) atomic file '/etc/pve/nodes/{node}/qemu-server/{newid}.conf' "
                                "failed: File exists")
            src = self.load_config(node, vmid)
            if src.pending:
                ctx.log(f"found pending changes for '{','.join(sorted(src.pending))}', discarding for clone")
            # Qemu.pm::clone_vm writes "# qmclone temporary file\nlock: clone\n" first; parse_vm_config
            # reads `#` lines as the description
            newvm = VM(vmid=newid, node=node, config={"lock": "clone", "description": " qmclone temporary file\n"},
                       created_at=time.time(), status_changed_at=time.time())
            self.state.vms[newid] = newvm
            self.changed()

            src_conf = dict(linked_clone_source(src, snapname))
            drives = self.vm_drives(src, src_conf)
            # `$newconf`: every other key (new MACs, smbios uuid, vmgenid, name), written with each disk
            newconf = self._clone_config(src_conf, {k for k, _, _ in drives}, name, description)
        allocated: list[tuple[str, str]] = []     # (node, volid) to free on failure
        new_disks: dict[str, str] = {}
        try:
            for key, volid, opts in drives:
                if key.startswith("unused"):
                    continue
                ctx.check_interrupt()
                with self.mu:
                    src_storage, src_vol = self.storage_volume(volid, node)
                    size = src_vol.size if src_vol else parse_size(opts.get("size", "0"))
                    is_ci = "cloudinit" in volid
                    dst_sid = storage_id if (full and storage_id and not is_ci) else src_storage.sid
                    if is_ci and storage_id:
                        dst_sid = storage_id
                    dst_storage = self.state.storages[dst_sid]
                    new_volid = self.next_disk_name(dst_storage, node, newid, "cloudinit" if is_ci else "disk") \
                        if not is_ci else f"{dst_sid}:vm-{newid}-cloudinit"
                    if is_ci and self.state.volumes.get(volume_key(dst_storage, node, new_volid)):
                        new_volid = self.next_disk_name(dst_storage, node, newid)
                    owner_node = None if dst_storage.shared else node
                    linked = not full and not is_ci
                    self.state.volumes[volume_key(dst_storage, node, new_volid)] = Volume(
                        new_volid, size, newid, owner_node, base=volid if linked else None)
                    allocated.append((node, new_volid))
                ctx.log(f"create {'linked' if linked else 'full'} clone of drive {key} ({volid})")
                if full or is_ci:
                    ctx.log(f"allocated target volume '{new_volid}'")
                if dst_storage.plugintype == "lvmthin":
                    ctx.log(f'  Logical volume "{new_volid.split(":", 1)[1]}" created.')
                if linked:
                    ctx.sleep(0.6)
                    new_disks[key] = f"{dst_sid}:{volid.split(':', 1)[1]}/{new_volid.split(':', 1)[1]}" \
                        if dst_storage.plugintype == "dir" else new_volid
                elif is_ci:
                    ctx.sleep(0.2)
                    new_disks[key] = new_volid
                else:
                    # QemuServer.pm::clone_disk: qemu-img reads a snapshot, drive-mirror only the live disk
                    self._copy_progress(ctx, key, size, running and not snapname, bwlimit, dst_storage, node)
                    new_disks[key] = new_volid
                # the new config is rewritten after each disk, still with `lock: clone` (§4.3)
                with self.mu:
                    _, src_opts = parse_prop(str(src_conf[key]))
                    newconf[key] = ",".join([new_disks[key]] + [f"{k}={v}" for k, v in src_opts.items()])
                    self.state.vms[newid].config = {"lock": "clone", **newconf}
                    self.changed()
        except (TaskError, LockTimeout, Interrupted) as exc:
            with self.mu:
                for vnode, v in allocated:
                    st = self.state.storages[v.split(":", 1)[0]]
                    self.state.volumes.pop(volume_key(st, vnode, v), None)
                self.state.vms.pop(newid, None)
                self.changed()
            msg = str(exc)
            raise TaskError(msg if msg.startswith("clone failed") else f"clone failed: {msg}") from None
        with self.mu:
            vm = self.state.vms[newid]
            vm.config = newconf          # `delete $newconf->{lock}`, the final write
            vm.guest_ip = f"10.20.{(newid // 250) % 250}.{newid % 250 + 2}"
            if target is not None:
                vm.node = target      # the config is moved to the target node at the end (§4.3)
                for key_ in [k for k, v in self.state.volumes.items() if v.vmid == newid and v.node == node]:
                    moved = self.state.volumes.pop(key_)
                    moved.node = target
                    self.state.volumes[f"{target}/{moved.volid}"] = moved
            self.changed()

    def _clone_config(self, src_conf: dict[str, Any], drive_keys: set[str], name: str,
                      description: str | None) -> dict[str, Any]:
        """Qemu.pm::clone_vm `$newconf` without the disks still to clone: snapshot keys, unused disks
        and `template` dropped, new MACs, a new smbios uuid and vmgenid, the name (§4.3)."""
        conf: dict[str, Any] = {}
        for key, value in src_conf.items():
            if key in CLONE_SKIP or key.startswith("unused") or key in drive_keys:
                continue
            conf[key] = value
        conf["name"] = name
        if description is not None:
            conf["description"] = description
        for key in list(conf):
            if key.startswith("net") and key[3:].isdigit():
                model, opts = parse_prop(str(conf[key]))
                model_name = next((m for m in NET_MODELS if m in opts), model or "virtio")
                opts.pop(model_name, None)
                conf[key] = ",".join([f"{model_name}={random_mac(self.rng)}"] + [f"{k}={v}" for k, v in opts.items()])
        if "smbios1" in conf:
            _, opts = parse_prop(str(conf["smbios1"]))
            opts["uuid"] = _uuid4(self.rng)
            conf["smbios1"] = ",".join(f"{k}={v}" for k, v in opts.items())
        if "vmgenid" in conf:
            conf["vmgenid"] = _uuid4(self.rng)
        return conf


