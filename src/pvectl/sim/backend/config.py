"""Changing a VM's config, pending and hot-plugged (qemu-server API2/Qemu.pm `$update_vm_api`)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..models import VM, random_mac
from ..tasks import LockTimeout, TaskContext, TaskError
from .common import (
    CONFIG_META,
    FAST_PLUG,
    LIVE_OPTIONS,
    NET_MODELS,
    ApiFail,
    Caller,
    _valid_ssh_keys,
    config_privilege,
    config_value,
    is_cloudinit_key,
    is_drive_key,
    param_fail,
    parse_prop,
)
from .core import BackendCore


class ConfigMixin(BackendCore):
    def vm_config_update(self, node: str, vmid: int, caller: Caller, params: dict[str, Any], *,
                         sync: bool) -> str | None:
        # qemu-server API2/Qemu.pm `$update_vm_api` (row 6, §7.2–7.5)
        if params.get("skiplock") and not caller.is_root:
            raise param_fail({"skiplock": "Only root may use this option."})
        changes = {k: config_value(k, v) for k, v in params.items() if k not in CONFIG_META}
        deletes = [d for d in str(params.get("delete", "")).replace(" ", ",").split(",") if d]
        deletes = ["ide2" if d == "cdrom" else d for d in deletes]
        reverts = [r for r in str(params.get("revert", "")).replace(" ", ",").split(",") if r]
        if not changes and not deletes and not reverts:
            raise ApiFail("no options specified")
        for opt in deletes:
            if opt in changes:
                raise param_fail({"delete": f"you can't use '-{opt}' and -delete {opt}' at the same time"})
        for opt in reverts:
            if opt in changes:
                raise param_fail({"revert": f"you can't use '-{opt}' and -revert {opt}' at the same time"})
        for key in set(changes) | set(deletes):
            if key == "lock" and not caller.is_root:
                raise ApiFail("only root can set 'lock' config", 403)
            self.check(caller.token, f"/vms/{vmid}", config_privilege(key))
        if "sshkeys" in changes:
            keys = urllib.parse.unquote(str(changes["sshkeys"]))
            if not _valid_ssh_keys(keys):
                raise ApiFail("SSH public key validation error")
        self.require_quorum()

        def load_and_check() -> VM:
            vm = self.load_config(node, vmid)
            digest = params.get("digest")
            if digest and digest != self.digest(vm):
                raise ApiFail("checksum mismatch (file change by other user?)")
            if not params.get("skiplock"):
                self.check_lock(vm)
            return vm

        with self.mu:
            load_and_check()

        def apply(log: list[str] | None) -> None:
            with self.mu:
                vm = load_and_check()
                summary = " ".join(f"-{k} {'<hidden>' if k == 'cipassword' else v}" for k, v in changes.items())
                if deletes:
                    summary += f" -delete {','.join(deletes)}"
                if log is not None:
                    log.append(f"update VM {vmid}: {summary.strip()}")
                self._apply_changes(vm, changes, deletes, reverts)
                self.changed()

        if sync:
            try:
                with self.locks.hold(node, vmid, timeout=10):
                    apply(None)
            except LockTimeout as exc:
                raise ApiFail(str(exc)) from None
            return None

        def worker(ctx: TaskContext) -> None:
            with ctx.config_lock(vmid, timeout=10):
                lines: list[str] = []
                try:
                    apply(lines)
                except ApiFail as exc:
                    raise TaskError(exc.message) from None
                for line in lines:
                    ctx.log(line)

        return self.engine.start(node, "qmconfig", str(vmid), caller.userid, worker)

    def _apply_changes(self, vm: VM, changes: dict[str, Any], deletes: list[str], reverts: list[str]) -> None:
        for key in reverts:
            vm.pending.pop(key, None)
            if key in vm.pending_delete:
                vm.pending_delete.remove(key)
        for key, value in list(changes.items()):
            if key.startswith("net") and key[3:].isdigit():
                changes[key] = self._net_with_mac(str(value))
        running = vm.status == "running"
        hotplug = str(vm.config.get("hotplug", "network,disk,usb"))
        features = {"network", "disk", "usb"} if hotplug == "1" else set(hotplug.split(","))
        for key, value in changes.items():
            if key == "cipassword":
                vm.config[key] = value        # written straight into the main config (§7.5)
                continue
            if not running or self._hotpluggable(key, value, vm, features):
                vm.config[key] = value
                vm.pending.pop(key, None)
            else:
                vm.pending[key] = value
        for key in deletes:
            if key not in vm.config and key not in vm.pending:
                continue      # only a warning: "cannot delete '<opt>' - not set in current configuration!"
            if not running or key in FAST_PLUG or is_cloudinit_key(key):
                vm.config.pop(key, None)
                vm.pending.pop(key, None)
            elif key not in vm.pending_delete:
                vm.pending_delete.append(key)

    @staticmethod
    def _hotpluggable(key: str, value: Any, vm: VM, features: set[str]) -> bool:
        # QemuServer.pm::vmconfig_hotplug_pending (pve-semantics §7.4)
        if key in FAST_PLUG or is_cloudinit_key(key) or key in LIVE_OPTIONS:
            return True
        if key.startswith("net") and key[3:].isdigit():
            return "network" in features
        if key == "memory":
            return "memory" in features
        if key == "vcpus":
            return "cpu" in features
        if key == "balloon":
            return (int(vm.config.get("balloon", 1) or 0) == 0) == (int(value or 0) == 0)
        if is_drive_key(key) and not key.startswith(("efidisk", "tpmstate", "ide", "sata")):
            return "disk" in features
        return False

    def _net_with_mac(self, value: str) -> str:
        # QemuServer.pm add_random_macs; printed model=MAC first, then the other keys
        first, opts = parse_prop(value)
        model = next((m for m in NET_MODELS if m in opts), None)
        if model is None:
            model = first if first in NET_MODELS else opts.pop("model", "virtio")
            mac = opts.pop("macaddr", None) or random_mac(self.rng)
        else:
            mac = opts.pop(model)
        return ",".join([f"{model}={mac.upper()}"] + [f"{k}={v}" for k, v in sorted(opts.items())])
