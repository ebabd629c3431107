"""Local devices that pin a VM to its node (what `migrate` refuses).

qemu-server `QemuMigrate/Helpers.pm::check_local_resources` (pve-semantics C9): `hostusb`, `hostpci`
(old syntax) and `ivshmem`; every `usbN` except `host=spice`; every `serialN` except `socket`; every
`parallelN` and `virtiofsN`; every `hostpciN`, except a mapped one (`mapping=`) on a stopped VM (the
simulator has no mapping marked `live-migration-capable`). `check_non_migratable_resources` adds
`amd-sev` and `intel-tdx` for a running VM.
"""

from __future__ import annotations

import re
from typing import Any

_NUMBERED = re.compile(r"^(usb|hostpci|serial|parallel|virtiofs)\d+$")


def local_resources(conf: dict[str, Any], *, running: bool) -> list[str]:
    out = [k for k in ("hostusb", "hostpci", "ivshmem") if conf.get(k)]
    for key in sorted(conf):
        m = _NUMBERED.match(key)
        if not m:
            continue
        value = str(conf[key])
        kind = m.group(1)
        if kind == "usb" and value.split(",")[0] in ("spice", "host=spice"):
            continue
        if kind == "serial" and value == "socket":
            continue
        if kind == "hostpci" and "mapping=" in value and not running:
            continue
        out.append(key)
    if running:
        out += [k for k in ("amd-sev", "intel-tdx") if conf.get(k)]
    return out
