"""Delete a VM, after the guards of DESIGN §5 checked on fresh state (status, config, lock, the
VMID ranges of the config, and a confirmation: `yes=True`, or `confirm(name)` returning True)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import PvectlError
from ..guards import check_delete
from ..results import OpResult
from ..taskwrites import start_task, wait_naming_task
from ..tasks.task import Task
from ..units import parse_prop
from .reads import resolve

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..deadline import Deadline
    from ..session import Session
    from ..tasks.task import TaskResult

# config keys that hold a disk (qemu-server PVE/QemuServer/Drive.pm: the bus prefixes; efidisk,
# tpmstate; unusedN for detached volumes)
_DISK_KEYS = ("ide", "scsi", "virtio", "sata", "efidisk", "tpmstate", "unused")


def vm_disks(config: dict[str, Any]) -> list[str]:
    """The volumes `config` refers to that a delete destroys (a CD-ROM's ISO is not one of them, a
    cloud-init drive is)."""
    disks = []
    for key, value in sorted(config.items()):
        if key.rstrip("0123456789") in _DISK_KEYS:
            volid, opts = parse_prop(str(value))
            if volid and ":" in volid and (opts.get("media") != "cdrom" or "cloudinit" in volid):
                disks.append(volid)
    return disks


def delete(session: Session, ref: str | int, *, yes: bool = False, confirm: Callable[[str], bool] | None = None,
           allow_template: bool = False, purge: bool = True, destroy_unreferenced_disks: bool = True,
           wait: bool = True, timeout: Deadline | float | None = None) -> OpResult | Task[OpResult]:
    """Destroy a VM and its disks. `confirm(name)` is asked when `yes` is False (the CLI has the VM
    name typed on a terminal). The result lists the disks (`extra["disks"]`) and, once the task has
    ended, its log (`extra["log"]`)."""
    deadline = session.deadline(timeout)
    with session.transport.bounded(deadline):
        vm = resolve(session, ref)
        st: dict[str, Any] = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/status/current", node=vm.node)
        config: dict[str, Any] = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/config", {"current": 1},
                                                       node=vm.node)
        if st.get("lock") and "lock" not in config:
            config["lock"] = st["lock"]
        ranges = session.config.vmid_ranges
        confirmed = yes or (confirm is not None and confirm(vm.name))
        check_delete(vmid=vm.vmid, name=vm.name, status=st.get("status", "unknown"), config=config,
                            vm_range=ranges.vms, template_range=ranges.templates, allow_template=allow_template,
                            yes=confirmed)
        from ..writes import Write

        disks = vm_disks(config)
        params = {}
        if purge:
            params["purge"] = 1
        if destroy_unreferenced_disks:
            params["destroy-unreferenced-disks"] = 1
        res = OpResult(vm.vmid, vm.name, vm.node, "delete", "done", extra={"disks": disks})
        write = Write("DELETE", f"/nodes/{vm.node}/qemu/{vm.vmid}", params, vm.node,
                      f"delete VM {vm.vmid} ({vm.name}) on {vm.node} and its disks: {', '.join(disks) or 'none'}")

        def finish(result: TaskResult) -> OpResult:
            # the task's result decides: the VM is gone; a log that cannot be read now is a warning
            # (an error here would hide the UPID of a destroy that happened)
            res.outcome, res.exitstatus, res.warnings = "done", result.exitstatus, list(result.warnings)
            try:
                with session.transport.reporting():
                    lines, _ = Task(session, result.upid).log(start=0, limit=0)
            except PvectlError as exc:
                res.warnings.append(f"VM {vm.vmid} was deleted (task {result.upid}), but its task log could not "
                                    f"be read: {exc.message}")
                return res
            res.extra["log"] = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("TASK ")]
            return res

        task = start_task(session, session.writer(), write, res, deadline=deadline, finish=finish)
        return wait_naming_task(task) if wait else task
