"""`pve.vms`: every VM operation, reads and writes, as methods (`VmsApi`). Each method is a thin
face over a function of a `Session` in this package's modules (reads) or in the operation modules."""

from __future__ import annotations

from .reads import VmStatus, VmSummary, list_vms, resolve, split_tags, vm_config, vm_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins
    from typing import Any, overload

    from ..deadline import Deadline
    from ..provision import ProvisionResult
    from ..session import Session
else:
    def overload(f: object) -> object:
        return f

__all__ = ["VmStatus", "VmSummary", "VmsApi", "split_tags"]


class VmsApi:
    def __init__(self, session: Session) -> None:
        self._s = session

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

    # ------------------------------------------------------------------------------------- clone
    @overload
    def clone(self, template: str | int, name: str | None, *, count: None = ..., name_start: int | str = ...,
              max_per_node: int = ..., max_per_storage: int = ..., wait: bool = ...,
              timeout: Deadline | float | None = ..., **options: Any) -> ProvisionResult: ...
    @overload
    def clone(self, template: str | int, name: str | None, *, count: int, name_start: int | str = ...,
              max_per_node: int = ..., max_per_storage: int = ..., wait: bool = ...,
              timeout: Deadline | float | None = ..., **options: Any) -> builtins.list[ProvisionResult]: ...

    def clone(self, template: str | int, name: str | None, *, count: int | None = None,
              name_start: int | str = 1, max_per_node: int = 2, max_per_storage: int = 2, wait: bool = True,
              timeout: Deadline | float | None = None,
              **options: Any) -> ProvisionResult | builtins.list[ProvisionResult]:
        """Make VM `name` from `template` (VMID, name or tag), or `count` VMs named by the pattern `name`
        (`web-{n}`, or the prefix `web`) from `name_start` (a number, or `next`). Options: `vmid`,
        `node` (a node or `auto`), `storage`, `linked`, `cores`, `memory` (MiB or `4G`), `bridge`,
        `ip` (`dhcp` or CIDR), `gw`, `ciuser`, `ssh_keys_file`, `disk`, `disk_size` (`+10G` or
        `50G`), `start`, `wait_ip`, `cleanup_on_failure`. Runs the whole workflow: `wait=False` is
        refused (UsageError). One result, or a list with `count` (see `pvectl.vms.clone`)."""
        from .clone import clone

        return clone(self._s, template, name, count=count, name_start=name_start, max_per_node=max_per_node,
                     max_per_storage=max_per_storage, wait=wait, timeout=timeout, **options)
