"""`pve.vms`: every VM operation, reads and writes, as methods (`VmsApi`). Each method is a thin
face over a function of a `Session` in this package's modules (reads) or in the operation modules."""

from __future__ import annotations

from .reads import VmStatus, VmSummary, list_vms, resolve, split_tags, vm_config, vm_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..session import Session

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
