"""Sizes as users type them and as Proxmox wants them."""

from __future__ import annotations

import re

from .errors import UsageError

_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$", re.I)


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
