"""Every safety rule in one place (DESIGN §5), each a pure function of observed state.

The CLI, the library and the MCP server call the same functions on state read just before the
write. A refusal raises `GuardRefused` (exit 3) saying why and what would make it allowed. Proxmox
enforces some of these itself (running and protected VMs cannot be destroyed: pve-semantics §6);
checking them here first gives a clear answer before anything is sent, and the rest (templates,
locks, VMID ranges, shrinking) Proxmox would not stop at all or only inside a task.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import GuardRefused

_SIZE_RE = re.compile(r"^(\+?)(\d+(?:\.\d+)?)([KMGT]?)$")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_disk_size(text: str) -> tuple[bool, int]:
    """`+10G` -> (True, bytes), `50G` -> (False, bytes): the resize `size` pattern
    `\\+?\\d+(\\.\\d+)?[KMGT]?`, units in powers of 1024, no unit = bytes (pve-semantics §8)."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise GuardRefused(f"invalid disk size '{text}'",
                           "use +10G to grow by 10 GiB or 50G for an absolute size (K, M, G, T; no shrinking)")
    return m.group(1) == "+", int(float(m.group(2)) * _UNITS[m.group(3)])


def require_yes(yes: bool, action: str, what: str) -> None:
    if not yes:
        raise GuardRefused(f"{action} {what} needs confirmation", "add --yes (or confirm interactively)")


def check_delete(*, vmid: int, name: str, status: str, config: dict[str, Any], vm_range: Any,
                 template_range: Any, allow_template: bool, yes: bool) -> None:
    """Delete: refuse a running VM, a template unless allowed, `protection: 1`, a locked VM, a VMID
    outside the configured ranges; always needs confirmation."""
    what = f"VM {vmid} ({name})"
    if status not in ("stopped",):
        raise GuardRefused(f"{what} is {status}: Proxmox refuses to destroy a running VM",
                           f"shut it down first: pvectl vm shutdown {vmid}")
    if int(config.get("protection", 0) or 0):
        raise GuardRefused(f"{what} has protection enabled",
                           f"turn it off first if you mean it: pvectl vm set {vmid} protection=0")
    lock = config.get("lock")
    if lock:
        raise GuardRefused(f"{what} is locked ({lock}): a task is using it",
                           "wait for the task (pvectl task list --vm VMID) or diagnose it (pvectl task diagnose VMID)")
    is_template = bool(int(config.get("template", 0) or 0))
    if is_template and not allow_template:
        raise GuardRefused(f"{what} is a template", "add --allow-template to delete a template")
    in_vms = vm_range is not None and vm_range.contains(vmid)
    in_templates = template_range is not None and template_range.contains(vmid)
    if not (in_vms or (is_template and in_templates)):
        ranges = ", ".join(f"{label} {r}" for label, r in (("vms", vm_range), ("templates", template_range)) if r)
        raise GuardRefused(f"{what} is outside the VMID ranges this config manages ({ranges or 'none set'})",
                           "only VMs in vmid_ranges are deleted; change vmid_ranges if this VM is yours")
    require_yes(yes, "deleting", what)


def check_disk_resize(*, vmid: int, disk: str, current: int | None, size: str) -> int:
    """Grow only: returns the new size in bytes; refuses a shrink before anything is sent
    (Proxmox fails it only inside the task: `shrinking disks is not supported`)."""
    relative, amount = parse_disk_size(size)
    if current is None:
        raise GuardRefused(f"VM {vmid} has no disk '{disk}'", "see its disks with: pvectl vm status VM -o json")
    new = current + amount if relative else amount
    if new < current:
        raise GuardRefused(f"disk {disk} of VM {vmid} is {current / 1024**3:.1f} GiB; {size} would shrink it "
                           "and Proxmox cannot shrink disks", "give a larger size, or +N to grow by N")
    return new


def check_running_change(*, vmid: int, running: bool, allow_running: bool, keys: list[str]) -> None:
    if running and not allow_running:
        raise GuardRefused(f"VM {vmid} is running: changing {', '.join(keys)} takes effect only after a "
                           "restart (Proxmox keeps it pending)",
                           "shut it down first, or add --allow-running to apply it as pending (or hot-plugged)")


def check_stop(*, vmid: int, yes: bool) -> None:
    if not yes:
        raise GuardRefused(f"stop is a hard power-off of VM {vmid} (like pulling the plug): data may be lost",
                           "prefer: pvectl vm shutdown VM; or add --yes to stop it anyway")
