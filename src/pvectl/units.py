"""Sizes and property strings: as users type them, as Proxmox stores them."""

from __future__ import annotations

import re

from .errors import UsageError

_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$", re.I)
# a drive's `size=` (PVE::JSONSchema::format_size: an integer with K/M/G/T, powers of 1024)
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$")
_UNIT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_memory(value: int | str) -> int:
    """MiB from `4096`, `4096M`, `4G`, `4GiB`, `1.5G` (units are powers of 1024; no unit = MiB, as the
    API's `memory`)."""
    if isinstance(value, int):
        mib = value
    else:
        m = _MEMORY_RE.match(str(value).strip())
        if not m:
            raise UsageError(f"invalid memory size '{value}'", hint="use MiB (4096) or a unit: 4G, 4096M")
        number, unit = float(m.group(1)), m.group(2).upper()
        mib_f = number * {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]
        if mib_f != int(mib_f):
            raise UsageError(f"memory size '{value}' is not a whole number of MiB")
        mib = int(mib_f)
    if mib < 16:   # qemu-server `memory` minimum (16 MiB)
        raise UsageError(f"memory {mib} MiB is below Proxmox's minimum of 16 MiB")
    return mib


def size_bytes(text: str | None) -> int | None:
    """A drive's `size=` value (`32G`, `512M`, bytes without unit) in bytes; None if absent or odd."""
    m = _SIZE_RE.match(text or "")
    return int(float(m.group(1)) * _UNIT[m.group(2)]) if m else None


def parse_prop(value: str) -> tuple[str | None, dict[str, str]]:
    """A property string `a,b=c,d=e` -> (`a` or None, {b: c, d: e}), keeping the key order
    (`local-lvm:vm-100-disk-0,iothread=1,size=32G`, `virtio=BC:24:11:..,bridge=vmbr0`)."""
    first: str | None = None
    opts: dict[str, str] = {}
    for i, part in enumerate(str(value).split(",")):
        if "=" in part:
            k, _, v = part.partition("=")
            opts[k] = v
        elif i == 0:
            first = part
    return first, opts
