"""Migration of a VM and its precondition check (qemu-server API2/Qemu.pm, QemuMigrate.pm)."""

from __future__ import annotations

import time
from typing import Any

from ..models import MIB
from ..tasks import Interrupted, TaskContext, TaskError
from .common import ApiFail, Caller, memory_mib, param_fail, parse_size, render_bytes, render_duration
from .core import BackendCore
from ..devices import local_resources
from .snapdisks import migration_scan, precondition_snapshot_disks


class MigrateMixin(BackendCore):
    def migrate_precondition(self, node: str, vmid: int, caller: Caller) -> dict[str, Any]:
        # qemu-server API2/Qemu.pm::migrate_vm_precondition (row 9, §9.1, C9)
        self.check(caller.token, f"/vms/{vmid}", "VM.Migrate")
        self.require_quorum()
        vm = self.load_config(node, vmid)
        self.check_lock(vm)
        not_allowed: dict[str, dict[str, Any]] = {}
        allowed = []
        for n in self.state.nodes:
            if n == node:
                continue
            missing = sorted({volid.split(":", 1)[0] for _, volid, _ in self.vm_drives(vm)
                              if not self._storage_on(volid.split(":", 1)[0], n)})
            if missing:
                not_allowed[n] = {"unavailable_storages": missing}
            else:
                not_allowed[n] = {}
                allowed.append(n)
        local_disks = []
        for key, volid, opts in self.vm_drives(vm):
            storage, vol = self.storage_volume(volid, node)
            if storage.shared:
                continue
            is_ci = "cloudinit" in volid
            local_disks.append({"volid": volid, "size": vol.size if vol else 0, "cdrom": 0,
                                "is_unused": int(key.startswith("unused")), "is_attached": 1, "drivename": key,
                                "replicate": 1, "shared": 0, "is_cloudinit": int(is_ci), "is_vmstate": 0,
                                "is_tpmstate": 0, "referenced_in_config": 1})


        local_disks = precondition_snapshot_disks(self, vm, node, local_disks)
        return {"running": int(vm.status == "running"), "allowed_nodes": allowed,
                "not_allowed_nodes": not_allowed, "local_disks": local_disks,
                "local_resources": local_resources(vm.config, running=vm.status == "running"),
                "mapped-resources": [], "mapped-resource-info": {}, "has-dbus-vmstate": 1}

    def vm_migrate(self, node: str, vmid: int, caller: Caller, params: dict[str, Any]) -> str:
        # qemu-server API2/Qemu.pm::migrate_vm, QemuMigrate.pm (row 9, §9.2)
        target = params["target"]
        if target == node:
            raise param_fail({"target": "target is local node."})
        self.check(caller.token, f"/vms/{vmid}", "VM.Migrate")
        self.require_quorum()
        self.node(target)
        for opt in ("force", "migration_type", "migration_network"):
            if opt in params and not caller.is_root:
                raise param_fail({opt: "Only root may use this option."})
        vm = self.load_config(node, vmid)
        self.check_lock(vm)
        online = bool(params.get("online"))
        if vm.status == "running" and not online:
            raise ApiFail("can't migrate running VM without --online")
        for _, volid, _ in self.vm_drives(vm):
            sid = volid.split(":", 1)[0]
            if not self._storage_on(sid, target) and not params.get("targetstorage"):
                raise ApiFail(f"storage '{sid}' is not available on node '{target}'")
        if vm.status != "running":
            online = False   # "VM isn't running. Doing offline migration instead." goes to the daemon log
        with_local = bool(params.get("with-local-disks"))
        bwlimit = params.get("bwlimit")

        def worker(ctx: TaskContext) -> None:
            self._migrate_work(ctx, node, vmid, target, online, with_local, bwlimit)

        return self.engine.start(node, "qmigrate", str(vmid), caller.userid, worker,
                                 interrupt_message="migration aborted")

    def _migrate_work(self, ctx: TaskContext, node: str, vmid: int, target: str, online: bool, with_local: bool,
                      bwlimit: int | None) -> None:
        started = time.time()

        def log(line: str) -> None:   # AbstractMigrate.pm::log: every line carries a timestamp (§2.2)
            ctx.log(time.strftime("%Y-%m-%d %H:%M:%S ") + line)

        def duration() -> str:
            secs = int((time.time() - started) / (self.time_scale or 1))
            return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"

        def abort(err: str) -> None:
            log(f"ERROR: migration aborted (duration {duration()}): {err}")
            raise TaskError("migration aborted")

        tnode = self.state.nodes[target]
        with ctx.config_lock(vmid, timeout=10):
            ctx.sleep(0.5)
            if not tnode.online:
                # prepare: the ssh check to the target fails (QemuMigrate.pm::prepare, C9)
                ctx.sleep(2.5)
                abort("Can't connect to destination address using public key")
            with self.mu:
                vm = self._worker_config(node, vmid)
                if vm.config.get("lock"):
                    raise TaskError(f"VM is locked ({vm.config['lock']})")
                if online and vm.status != "running":
                    online = False

                # QemuMigrate.pm::prepare, before phase1 (`force`, root@pam only, would let a stopped one go)
                blocking = local_resources(vm.config, running=online)
            if blocking:
                abort(f"can't migrate VM which uses local devices: {', '.join(blocking)}")
            with self.mu:
                local = [(k, v, o) for k, v, o in self.vm_drives(vm)
                         if not self.state.storages[v.split(":", 1)[0]].shared]

                snapshot_only, scan_errors = migration_scan(self, vm, [v for _, v, _ in local], online)
                mem = memory_mib(vm.config) * MIB
                vm.config["lock"] = "migrate"
                self.changed()
            log(f"starting migration of VM {vmid} to node '{target}' ({tnode.ip})")
            try:
                for key, volid, _ in local:
                    log(f"found local disk '{volid}' ({'attached' if not key.startswith('unused') else 'unused'})")
                for volid in snapshot_only:
                    log(f"found local disk '{volid}' (referenced by snapshot(s))")
                if online and local and not with_local:
                    for key, volid, _ in local:
                        scan_errors[volid] = "can't live migrate attached local disks without with-local-disks option"
                if scan_errors:
                    for volid, err in scan_errors.items():
                        log(f"can't migrate local disk '{volid}': {err}")
                    log("ERROR: Problem found while scanning volumes - can't migrate VM - check log")
                    log("aborting phase 1 - cleanup resources")
                    abort("Problem found while scanning volumes - can't migrate VM - check log")
                link = 1100 * MIB                 # the migration network (10 GbE), per copy
                rate = link if not bwlimit else min(link, bwlimit * 1024)
                if local and not online:
                    log("copying local disk images")
                    for key, volid, opts in local:
                        with self.mu:
                            _, vol = self.storage_volume(volid, node)
                        size = vol.size if vol else parse_size(opts.get("size", "0"))
                        # storage_migrate: the target node's storage shares its throughput with other copies
                        self._disk_copy(ctx, key, self.state.storages[volid.split(":", 1)[0]], target, size,
                                        bwlimit=bwlimit, min_secs=0.3, steps=1, link=link)
                        log(f"volume '{volid}' is '{volid}' on the target")
                if online:
                    log(f"starting VM {vmid} on remote node '{target}'")
                    ctx.sleep(1.5)
                    log("start remote tunnel")
                    log("ssh tunnel ver 1")
                    if local:
                        log("starting storage migration")
                        for key, volid, opts in local:
                            with self.mu:
                                _, vol = self.storage_volume(volid, node)
                            size = vol.size if vol else 0
                            log(f"{key}: start migration to nbd:unix:/run/qemu-server/{vmid}_nbd.migrate:exportname=drive-{key}")
                            log(f"drive mirror is starting for drive-{key}")

                            def step(i: int, elapsed: float, key: str = key, size: int = size) -> None:
                                pct = 25 * i
                                log(f"drive-{key}: transferred {render_bytes(size * pct // 100)} of "
                                    f"{render_bytes(size)} ({pct:.2f}%) in {render_duration(elapsed)}"
                                    + (", ready" if pct == 100 else ""))

                            # drive-mirror over NBD writes into the target node's storage
                            self._disk_copy(ctx, key, self.state.storages[volid.split(":", 1)[0]], target, size,
                                            bwlimit=bwlimit, min_secs=0.0, steps=4, on_step=step, link=link)
                        log("all 'mirror' jobs are ready")
                        log("switching mirror jobs to actively synced mode")
                    log(f"starting online/live migration on unix:/run/qemu-server/{vmid}.migrate")
                    log("set migration capabilities")
                    if bwlimit:
                        log(f"migration speed limit: {render_bytes(bwlimit * 1024)}/s")
                    log("migration downtime limit: 100 ms")
                    log("migration cachesize: 256.0 MiB")
                    log("set migration parameters")
                    log(f"start migrate command to unix:/run/qemu-server/{vmid}.migrate")
                    used = int(mem * 0.6)
                    secs = max(used / rate, 1.0)
                    steps = max(2, min(20, int(secs)))
                    for i in range(1, steps + 1):
                        ctx.sleep(secs / steps)
                        log(f"migration active, transferred {render_bytes(used * i // steps)} of {render_bytes(mem)} "
                            f"VM-state, {render_bytes(rate)}/s")
                    log(f"average migration speed: {render_bytes(rate)}/s - downtime 42 ms")
                    log(f"migration completed, transferred {render_bytes(used)} VM-state")
                    log("migration status: completed")
                    if local:
                        for key, _, _ in local:
                            log(f"drive-{key}: Completing block job...")
                            log(f"drive-{key}: Completed successfully.")
                            log(f"drive-{key}: mirror-job finished")
                        log("stopping NBD storage migration server on target.")
                else:
                    ctx.sleep(0.8)
            except Interrupted:
                with self.mu:
                    moving = self.state.vms.get(vmid)
                    if moving is not None:
                        moving.config.pop("lock", None)
                        self.changed()
                log("ERROR: interrupted by signal")
                abort("interrupted by signal")
            except TaskError:
                with self.mu:
                    moving = self.state.vms.get(vmid)
                    if moving is not None:
                        moving.config.pop("lock", None)   # phase1_cleanup removes the lock again
                        self.changed()
                raise
            with self.mu:
                vm = self.state.vms[vmid]
                # phase3_cleanup: config moved to the target, lock cleared there
                for key_ in [k for k, v in self.state.volumes.items() if v.vmid == vmid and v.node == node]:
                    v = self.state.volumes.pop(key_)
                    v.node = target
                    self.state.volumes[f"{target}/{v.volid}"] = v
                vm.node = target
                vm.config.pop("lock", None)
                if online:
                    tnode.next_pid += 11
                    vm.pid = tnode.next_pid
                self.changed()
            log(f"migration finished successfully (duration {duration()})")
