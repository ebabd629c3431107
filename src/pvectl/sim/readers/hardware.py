"""Node hardware readers: PCI and USB devices, LVM scans, CPU flags, the system log.

Every simulated node is the same small server: an AMD EPYC host with two Intel I350 ports (eno1, eno2),
one NVMe disk holding the volume group `pve` with the thin pool `data`, and a BMC's virtual USB hub.
"""

from __future__ import annotations

import time
from typing import Any

from ..models import GIB
from .base import Ctx, reader

# (id, class, vendor, device, vendor name, device name, IOMMU group) as pve-manager API2/Hardware/PCI.pm
# lists them from sysfs (PVE::SysFSTools::lspci)
_PCI = (
    ("0000:00:00.0", "0x060000", "0x1022", "0x1480", "Advanced Micro Devices, Inc. [AMD]",
     "Starship/Matisse Root Complex", 0),
    ("0000:01:00.0", "0x010802", "0x144d", "0xa80a", "Samsung Electronics Co Ltd",
     "NVMe SSD Controller PM9A1/PM9A3/980PRO", 14),
    ("0000:41:00.0", "0x020000", "0x8086", "0x1521", "Intel Corporation", "I350 Gigabit Network Connection", 28),
    ("0000:41:00.1", "0x020000", "0x8086", "0x1521", "Intel Corporation", "I350 Gigabit Network Connection", 29),
    ("0000:62:00.0", "0x030000", "0x1a03", "0x2000", "ASPEED Technology, Inc.", "ASPEED Graphics Family", 33),
)


@reader("/nodes/{node}/hardware/pci")
def pci(ctx: Ctx) -> list[dict[str, Any]]:
    ctx.backend.node(ctx.node)
    # default `pci-class-blacklist` 05;06;0b: memory controllers, bridges and processors are left out
    blacklist = str(ctx.params.get("pci-class-blacklist", "05;06;0b")).split(";")
    out = []
    for pid, cls, vendor, device, vname, dname, group in _PCI:
        if any(b and cls[2:].startswith(b) for b in blacklist):
            continue
        entry: dict[str, Any] = {"id": pid, "class": cls, "vendor": vendor, "device": device, "iommugroup": group,
                                 "subsystem_vendor": vendor, "subsystem_device": "0x0000"}
        if ctx.params.get("verbose", 1):
            entry.update(vendor_name=vname, device_name=dname)
        out.append(entry)
    return out


@reader("/nodes/{node}/hardware/usb")
def usb(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-manager API2/Hardware/USB.pm (PVE::SysFSTools::scan_usb): the BMC's virtual hub and keyboard
    ctx.backend.node(ctx.node)
    return [{"busnum": 1, "devnum": 2, "level": 1, "port": 1, "class": 9, "vendid": "1d6b", "prodid": "0107",
             "speed": "480", "usbpath": "1", "manufacturer": "American Megatrends Inc.", "product": "Virtual Hub"},
            {"busnum": 1, "devnum": 3, "level": 2, "port": 3, "class": 0, "vendid": "046b", "prodid": "ff10",
             "speed": "480", "usbpath": "1.3", "manufacturer": "American Megatrends Inc.",
             "product": "Virtual Keyboard and Mouse"}]


@reader("/nodes/{node}/scan/lvm")
def scan_lvm(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-storage API2/Storage/Scan.pm::lvmscan (LVMPlugin::lvm_vgs)
    n = ctx.backend.node(ctx.node)
    return [{"vg": "pve", "size": n.rootfs_total + 1900 * GIB, "free": 16 * GIB}]


@reader("/nodes/{node}/scan/lvmthin")
def scan_lvmthin(ctx: Ctx) -> list[dict[str, Any]]:
    # Scan.pm::thinlvmscan: the thin pools of one volume group
    ctx.backend.node(ctx.node)
    return [{"lv": "data"}] if ctx.params["vg"] == "pve" else []


_CPU_FLAGS = (("md-clear", "Required to let the guest OS know if MDS is mitigated correctly"),
              ("pcid", "Meltdown fix cost reduction on Westmere, Sandy-, and IvyBridge Intel CPUs"),
              ("spec-ctrl", "Allows improved Spectre mitigation with Intel CPUs"),
              ("ssbd", "Protection for \"Speculative Store Bypass\" for Intel models"),
              ("ibpb", "Allows improved Spectre mitigation with AMD CPUs"),
              ("virt-ssbd", "Basis for \"Speculative Store Bypass\" protection for AMD models"),
              ("amd-ssbd", "Improves Spectre mitigation performance with AMD CPUs, best used with \"virt-ssbd\""),
              ("amd-no-ssb", "Notifies guest OS that host is not vulnerable for Spectre on AMD CPUs"),
              ("pdpe1gb", "Allow guest OS to use 1GB size pages, if host HW supports it"),
              ("hv-tlbflush", "Improve performance in overcommitted Windows guests. May lead to guest bluescreens on "
                              "old CPUs."),
              ("hv-evmcs", "Improve performance for nested virtualization. Only supported on Intel CPUs."),
              ("aes", "Activate AES instruction set for HW acceleration."))


@reader("/nodes/{node}/capabilities/qemu/cpu-flags")
def cpu_flags(ctx: Ctx) -> list[dict[str, Any]]:
    # qemu-server QemuServer/CPUConfig.pm `$cpu_flag_supported_re` list with its descriptions
    return [{"name": n, "description": d} for n, d in _CPU_FLAGS]


def _log_lines(ctx: Ctx) -> list[str]:
    """The node's syslog: boot, then the start and end of every task the node ran (pvedaemon)."""
    b = ctx.backend
    n = b.node(ctx.node)
    lines = [f"{time.strftime('%b %d %H:%M:%S', time.gmtime(n.boot_time))} {n.name} systemd[1]: Started "
             "pveproxy.service - PVE API Proxy Server."]
    for rec in b.engine.records():
        if rec.node != n.name:
            continue
        start = int(rec.upid.split(":")[4], 16)
        stamp = time.strftime("%b %d %H:%M:%S", time.gmtime(start))
        user = rec.upid.split(":")[7]
        daemon = f"{n.name} pvedaemon[{int(rec.upid.split(':')[2], 16)}]: <{user}>"
        lines.append(f"{stamp} {daemon} starting task {rec.upid}")
        if rec.endtime:
            end = time.strftime("%b %d %H:%M:%S", time.gmtime(rec.endtime))
            lines.append(f"{end} {daemon} end task {rec.upid} {rec.exitstatus}")
    return lines


@reader("/nodes/{node}/syslog")
def syslog(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-manager API2/Nodes.pm::syslog (journalctl via PVE::Tools::dump_journal): {n, t}, 1-based
    lines = _log_lines(ctx)
    start = int(ctx.params.get("start", 0))
    limit = int(ctx.params.get("limit", 50))
    return [{"n": i + 1, "t": lines[i]} for i in range(start, min(start + limit, len(lines)))]


@reader("/nodes/{node}/journal")
def journal(ctx: Ctx) -> list[str]:
    # API2/Nodes.pm::get_journal (mini-journalreader): plain lines, the last `lastentries`
    lines = _log_lines(ctx)
    last = ctx.params.get("lastentries")
    return lines[-int(last):] if last else lines
