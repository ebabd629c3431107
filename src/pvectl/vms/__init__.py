"""`pve.vms`: every VM operation, reads and writes, as methods (`VmsApi`). Each method is a thin
face over a function of a `Session` in this package's modules (reads, power, delete, config) or in
the operation modules.

Writes take a VMID or a unique name, run their guards on fresh state, and return an `OpResult`; with
`wait=False` a `Task` whose `wait()` returns that same result. `timeout` (seconds) is the call's
deadline; None: the cluster's default."""

from __future__ import annotations

from .reads import VmStatus, VmSummary, list_vms, resolve, split_tags, vm_config, vm_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterable
    from typing import Any, Literal, Unpack, overload

    from ..deadline import Deadline
    from ..provision import ProvisionResult
    from ..results import OpResult
    from ..session import Session
    from ..tasks.task import Progress, Task
    from .clone import CloneOptions
    from .migrate import MigrationCheck, MigrationInterrupted, MigrationResult

    Timeout = Deadline | float | None
else:
    def overload(f: object) -> object:
        return f

__all__ = ["MigrationCheck", "MigrationInterrupted", "MigrationResult", "VmStatus", "VmSummary", "VmsApi",
           "split_tags"]

# the migration's types, imported on first use (the VM reads do not need the migration module)
_MIGRATION_TYPES = ("MigrationCheck", "MigrationInterrupted", "MigrationResult")


def __getattr__(name: str) -> Any:
    if name in _MIGRATION_TYPES:
        from . import migrate

        return getattr(migrate, name)
    raise AttributeError(f"module 'pvectl.vms' has no attribute {name!r}")


class VmsApi:
    def __init__(self, session: Session) -> None:
        self._s = session

    # ------------------------------------------------------------------------------------- reads
    def list(self, *, status: str | None = None, node: str | None = None, tag: str | None = None,
             templates: bool | None = None) -> list[VmSummary]:
        """All QEMU VMs the token may see, filtered (`templates`: True only templates, False none)."""
        return list_vms(self._s, status=status, node=node, tag=tag, templates=templates)

    def resolve(self, ref: str | int | VmSummary) -> VmSummary:
        """A VMID or a unique name -> the VM, read fresh."""
        return resolve(self._s, ref)

    def status(self, ref: str | int | VmSummary) -> VmStatus:
        return vm_status(self._s, ref)

    def config(self, ref: str | int | VmSummary, *, current: bool = False) -> dict[str, Any]:
        """The VM's config (with its `digest`); `current=True`: with pending changes applied."""
        return vm_config(self._s, resolve(self._s, ref), current=current)

    # ------------------------------------------------------------------------------------- power
    @overload
    def start(self, ref: str | int, *, wait: Literal[True] = ..., timeout: Timeout = ...) -> OpResult: ...
    @overload
    def start(self, ref: str | int, *, wait: Literal[False], timeout: Timeout = ...) -> Task[OpResult]: ...
    @overload
    def start(self, ref: str | int, *, wait: bool, timeout: Timeout = ...) -> OpResult | Task[OpResult]: ...

    def start(self, ref: str | int, *, wait: bool = True, timeout: Timeout = None) -> OpResult | Task[OpResult]:
        """Start a VM (a running one: outcome `already`, nothing sent). Refused for a template."""
        from .power import power

        return power(self._s, ref, "start", wait=wait, timeout=timeout)

    @overload
    def shutdown(self, ref: str | int, *, timeout: Timeout = ..., guest_timeout: int | None = ...,
                 force_stop: bool = ..., wait: Literal[True] = ...) -> OpResult: ...
    @overload
    def shutdown(self, ref: str | int, *, timeout: Timeout = ..., guest_timeout: int | None = ...,
                 force_stop: bool = ..., wait: Literal[False]) -> Task[OpResult]: ...
    @overload
    def shutdown(self, ref: str | int, *, timeout: Timeout = ..., guest_timeout: int | None = ...,
                 force_stop: bool = ..., wait: bool) -> OpResult | Task[OpResult]: ...

    def shutdown(self, ref: str | int, *, timeout: Timeout = None, guest_timeout: int | None = None,
                 force_stop: bool = False, wait: bool = True) -> OpResult | Task[OpResult]:
        """Ask the guest to power off (ACPI, or the guest agent). `timeout` (s) is the guest's time to
        do so — sent as Proxmox's `timeout` — and the call waits that long plus FORCE_STOP_MARGIN;
        `guest_timeout` sets the guest's time alone. `force_stop`: stop it hard when that time is up."""
        from .power import power

        return power(self._s, ref, "shutdown", wait=wait, timeout=timeout, guest_timeout=guest_timeout,
                     force_stop=force_stop)

    @overload
    def stop(self, ref: str | int, *, yes: bool = ..., wait: Literal[True] = ..., timeout: Timeout = ...) -> OpResult: ...
    @overload
    def stop(self, ref: str | int, *, yes: bool = ..., wait: Literal[False], timeout: Timeout = ...) -> Task[OpResult]: ...
    @overload
    def stop(self, ref: str | int, *, yes: bool = ..., wait: bool, timeout: Timeout = ...) -> OpResult | Task[OpResult]: ...

    def stop(self, ref: str | int, *, yes: bool = False, wait: bool = True,
             timeout: Timeout = None) -> OpResult | Task[OpResult]:
        """Hard power-off (like pulling the plug): refused (GuardRefused, exit 3) unless `yes=True`."""
        from .power import power

        return power(self._s, ref, "stop", wait=wait, timeout=timeout, yes=yes)

    @overload
    def reboot(self, ref: str | int, *, wait: Literal[True] = ..., timeout: Timeout = ...) -> OpResult: ...
    @overload
    def reboot(self, ref: str | int, *, wait: Literal[False], timeout: Timeout = ...) -> Task[OpResult]: ...
    @overload
    def reboot(self, ref: str | int, *, wait: bool, timeout: Timeout = ...) -> OpResult | Task[OpResult]: ...

    def reboot(self, ref: str | int, *, wait: bool = True, timeout: Timeout = None) -> OpResult | Task[OpResult]:
        """Reboot a running VM (a stopped one is refused)."""
        from .power import power

        return power(self._s, ref, "reboot", wait=wait, timeout=timeout)

    def power_many(self, action: str, refs: Iterable[str | int], *, wait: bool = True, yes: bool = False,
                   timeout: Timeout = None, guest_timeout: int | None = None,
                   force_stop: bool = False) -> builtins.list[OpResult]:
        """start | shutdown | stop | reboot several VMs: every guard first, then every task started,
        then all waited for. A failed task makes that VM's result `failed`; the others go on."""
        from .power import power_many

        return power_many(self._s, action, refs, wait=wait, yes=yes, timeout=timeout, guest_timeout=guest_timeout,
                          force_stop=force_stop)

    # ------------------------------------------------------------------------- delete and config
    @overload
    def delete(self, ref: str | int, *, yes: bool = ..., confirm: Callable[[str], bool] | None = ...,
               allow_template: bool = ..., purge: bool = ..., destroy_unreferenced_disks: bool = ...,
               wait: Literal[True] = ..., timeout: Timeout = ...) -> OpResult: ...
    @overload
    def delete(self, ref: str | int, *, yes: bool = ..., confirm: Callable[[str], bool] | None = ...,
               allow_template: bool = ..., purge: bool = ..., destroy_unreferenced_disks: bool = ...,
               wait: Literal[False], timeout: Timeout = ...) -> Task[OpResult]: ...
    @overload
    def delete(self, ref: str | int, *, yes: bool = ..., confirm: Callable[[str], bool] | None = ...,
               allow_template: bool = ..., purge: bool = ..., destroy_unreferenced_disks: bool = ...,
               wait: bool, timeout: Timeout = ...) -> OpResult | Task[OpResult]: ...

    def delete(self, ref: str | int, *, yes: bool = False, confirm: Callable[[str], bool] | None = None,
               allow_template: bool = False, purge: bool = True, destroy_unreferenced_disks: bool = True,
               wait: bool = True, timeout: Timeout = None) -> OpResult | Task[OpResult]:
        """Destroy a VM and its disks, after the guards (running, protected, locked, outside the VM
        range, a template without `allow_template`) and a confirmation: `yes=True` or `confirm(name)`."""
        from .delete import delete

        return delete(self._s, ref, yes=yes, confirm=confirm, allow_template=allow_template, purge=purge,
                      destroy_unreferenced_disks=destroy_unreferenced_disks, wait=wait, timeout=timeout)

    def resize(self, ref: str | int, *, cores: int | None = None, memory: str | int | None = None,
               disk: str | None = None, size: str | None = None, allow_running: bool = False,
               timeout: Timeout = None) -> OpResult:
        """Cores, memory ("4G", MiB as int) and disk growth (`disk="scsi0", size="+10G"` or an absolute
        size; a shrink is refused). CPU/memory of a running VM needs `allow_running=True`."""
        from .config import resize

        return resize(self._s, ref, cores=cores, memory=memory, disk=disk, size=size, allow_running=allow_running,
                      timeout=timeout)

    def set(self, ref: str | int, values: dict[str, str], *, delete: Iterable[str] | None = None,
            timeout: Timeout = None) -> OpResult:
        """Set config keys (checked against the official schema first) and delete others."""
        from .config import set_config

        return set_config(self._s, ref, dict(values), delete=list(delete) if delete else None, timeout=timeout)

    # ------------------------------------------------------------------------------------- clone
    @overload
    def clone(self, template: str | int, name: str | None, *, count: None = ..., name_start: int | str = ...,
              max_per_node: int = ..., max_per_storage: int = ..., wait: bool = ...,
              timeout: Deadline | float | None = ..., **options: Unpack[CloneOptions]) -> ProvisionResult: ...
    @overload
    def clone(self, template: str | int, name: str | None, *, count: int, name_start: int | str = ...,
              max_per_node: int = ..., max_per_storage: int = ..., wait: bool = ...,
              timeout: Deadline | float | None = ...,
              **options: Unpack[CloneOptions]) -> builtins.list[ProvisionResult]: ...

    def clone(self, template: str | int, name: str | None, *, count: int | None = None,
              name_start: int | str = 1, max_per_node: int = 2, max_per_storage: int = 2, wait: bool = True,
              timeout: Deadline | float | None = None,
              **options: Unpack[CloneOptions]) -> ProvisionResult | builtins.list[ProvisionResult]:
        """Make VM `name` from `template` (VMID, name or tag), or `count` VMs named by the pattern `name`
        (`web-{n}`, or the prefix `web`) from `name_start` (a number, or `next`). Options
        (`pvectl.vms.clone.CloneOptions`): `vmid`, `node` (a node or `auto`), `storage`, `linked`,
        `cores`, `memory` (MiB or `4G`), `bridge`, `ip` (`dhcp` or CIDR), `gw`, `ciuser`,
        `ssh_keys_file`, `disk`, `disk_size` (`+10G` or `50G`), `start`, `wait_ip`,
        `cleanup_on_failure`. Runs the whole workflow: `wait=False` is refused (UsageError). One
        result, or a list with `count` (see `pvectl.vms.clone`)."""
        from .clone import clone

        return clone(self._s, template, name, count=count, name_start=name_start, max_per_node=max_per_node,
                     max_per_storage=max_per_storage, wait=wait, timeout=timeout, **options)

    # ----------------------------------------------------------------------------------- migrate
    def migration_check(self, ref: str | int | VmSummary, target: str, *, online: bool | None = None,
                        with_local_disks: bool = False) -> MigrationCheck:
        """Every migration rule on fresh state (target online and in quorum, lock, mode, Proxmox's
        own precondition check, local disks, free memory with a reserve); sends nothing.
        `target="auto"`: the verdict for the node that passes with the most free memory after the
        move (GuardRefused when none does). `online`: None = live if running."""
        from .migrate import migration_check

        return migration_check(self._s, ref, target, online=online, with_local_disks=with_local_disks)

    @overload
    def migrate(self, ref: str | int | VmSummary, target: str, *, online: bool | None = ...,
                bwlimit: int | str | None = ..., with_local_disks: bool = ..., wait: Literal[True] = ...,
                timeout: Deadline | float | None = ...,
                on_progress: Callable[[Progress], None] | None = ...) -> MigrationResult: ...
    @overload
    def migrate(self, ref: str | int | VmSummary, target: str, *, online: bool | None = ...,
                bwlimit: int | str | None = ..., with_local_disks: bool = ..., wait: Literal[False],
                timeout: Deadline | float | None = ...,
                on_progress: Callable[[Progress], None] | None = ...) -> Task[MigrationResult]: ...
    @overload
    def migrate(self, ref: str | int | VmSummary, target: str, *, online: bool | None = ...,
                bwlimit: int | str | None = ..., with_local_disks: bool = ..., wait: bool = ...,
                timeout: Deadline | float | None = ...,
                on_progress: Callable[[Progress], None] | None = ...) -> MigrationResult | Task[MigrationResult]: ...

    def migrate(self, ref: str | int | VmSummary, target: str, *, online: bool | None = None,
                bwlimit: int | str | None = None, with_local_disks: bool = False, wait: bool = True,
                timeout: Deadline | float | None = None,
                on_progress: Callable[[Progress], None] | None = None) -> MigrationResult | Task[MigrationResult]:
        """Move a VM to node `target` (or `auto`) after `migration_check`; any refusal raises
        GuardRefused before anything is sent. Live for a running VM (`online=False` refuses it),
        offline for a stopped one. `bwlimit`: KiB/s, or `50M`, `1G` per second. `with_local_disks`:
        mirror local disks while it runs. Waits for the task (TaskFailed with the log tail; at the
        deadline TaskTimeout with the UPID); `wait=False`: the `Task`, whose `wait()` returns the
        same `MigrationResult`. Progress: `on_progress`, else the session's `on_event`. Ctrl-C once
        the request may have gone out: `MigrationInterrupted` (with the task's UPID)."""
        from .migrate import migrate

        return migrate(self._s, ref, target, deadline=timeout, online=online, with_local_disks=with_local_disks,
                       bwlimit=bwlimit, wait=wait, on_progress=on_progress)
