"""A running VM's detail in `GET .../status/current`, as qemu-server QemuServer.pm::vmstatus($vmid, 1)
collects it over QMP: `query-blockstats` (one entry per attached drive, keyed by drive id),
/proc/net/dev for every `tap<vmid>i<N>` (`nics`; netin is what the tap transmitted), `query-balloon`
(only with a balloon device, i.e. unless `balloon: 0`; with the guest's statistics it carries the page
fault and swap counters), `query-proxmox-support`, `query-machines`, `query-version`, and the
cgroup's pressure stall averages.

The counters grow with uptime and add up to the VM's totals (`diskread`, `diskwrite`, `netin`,
`netout` of Backend.vm_usage), so a client that sums them gets what /cluster/resources shows.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .common import is_drive_key, parse_prop, parse_size

if TYPE_CHECKING:
    from ..models import VM
    from .core import BackendCore as Backend

QEMU_VERSION = "10.1.2"                      # pve-qemu-kvm of PVE 9.1
MACHINE = "pc-i440fx-10.1+pve0"
# query-proxmox-support of pve-qemu-kvm 10.1 (debian/patches/pve: "PVE-Backup: add query-proxmox-support")
PROXMOX_SUPPORT = {"pbs-dirty-bitmap": True, "query-bitmap-info": True, "pbs-dirty-bitmap-savevm": True,
                   "pbs-dirty-bitmap-migration": True, "pbs-masterkey": True, "backup-fleecing": True,
                   "backup-max-workers": True, "pbs-library-version": "2.0.1 (UNKNOWN)"}
CDROM_BOOT_READ = 344_064                    # what a guest reads from its cloud-init / ISO CD-ROM at boot


def _blockstat(rd: int, wr: int, uptime: int, *, disk: bool, size: int) -> dict[str, Any]:
    """QEMU's BlockDeviceStats (qapi/block-core.json) for a drive that has read `rd` and written `wr`."""
    rd_ops = rd // 40_960 + (1 if rd else 0)
    wr_ops = wr // 9_728
    flush = wr_ops // 10
    unmap = uptime // 400 if disk else 0
    return {
        "rd_bytes": rd, "wr_bytes": wr, "zone_append_bytes": 0, "unmap_bytes": unmap * 33_554_432,
        "rd_operations": rd_ops, "wr_operations": wr_ops, "zone_append_operations": 0,
        "flush_operations": flush, "unmap_operations": unmap,
        "rd_total_time_ns": rd_ops * 455_000, "wr_total_time_ns": wr_ops * 418_000,
        "zone_append_total_time_ns": 0, "flush_total_time_ns": flush * 480_000,
        "unmap_total_time_ns": unmap * 20_300,
        "wr_highest_offset": min(size, wr * 3) // 4096 * 4096 if disk else 0,
        "rd_merged": 0, "wr_merged": 0, "zone_append_merged": 0, "unmap_merged": 0,
        "idle_time_ns": (1_500_000_000 + uptime % 7 * 100_000_000) if disk else max(uptime - 20, 1) * 1_000_000_000,
        "failed_rd_operations": 0, "failed_wr_operations": 0, "failed_zone_append_operations": 0,
        "failed_flush_operations": 0, "failed_unmap_operations": 0,
        "invalid_rd_operations": 0, "invalid_wr_operations": 0, "invalid_zone_append_operations": 0,
        "invalid_flush_operations": 0, "invalid_unmap_operations": 0,
        "account_invalid": True, "account_failed": True, "timed_stats": [],
    }


def _attached_drives(vm: VM) -> list[tuple[str, bool, int]]:
    """(drive id, is a disk, size) for every drive QEMU has (not `unused*`, not tpmstate: swtpm's)."""
    out = []
    for key in sorted(vm.config):
        if not is_drive_key(key) or key.startswith(("unused", "tpmstate")):
            continue
        volid, opts = parse_prop(str(vm.config[key]))
        cdrom = opts.get("media") == "cdrom" or volid in ("none", "cdrom")
        out.append((key, not cdrom, parse_size(opts.get("size", "0")) if not cdrom else 0))
    return out


def _split(total: int, weights: list[int]) -> list[int]:
    """`total` in integer parts proportional to `weights`; the first part takes the rounding rest."""
    whole = sum(weights)
    if not whole:
        return [0] * len(weights)
    parts = [total * w // whole for w in weights]
    parts[0] += total - sum(parts)
    return parts


def running_detail(b: Backend, vm: VM, usage: dict[str, Any]) -> dict[str, Any]:
    """The `full` fields of a running VM (QemuServer.pm::vmstatus callbacks)."""
    uptime = usage["uptime"]
    maxmem = usage["maxmem"]
    mem = usage["mem"]
    drives = _attached_drives(vm)
    # reads: each CD-ROM the guest read at boot, the rest spread over the disks by size; writes: disks
    cdrom_read = min(CDROM_BOOT_READ, usage["diskread"])
    n_cd = sum(1 for _, disk, _ in drives if not disk)
    disk_reads = _split(usage["diskread"] - cdrom_read * n_cd, [s or 1 for _, disk, s in drives if disk])
    disk_writes = _split(usage["diskwrite"], [s or 1 for _, disk, s in drives if disk])
    blockstat: dict[str, Any] = {}
    i = 0
    for key, disk, size in drives:
        if disk:
            blockstat[key] = _blockstat(disk_reads[i], disk_writes[i], uptime, disk=True, size=size)
            i += 1
        else:
            blockstat[key] = _blockstat(cdrom_read, 0, uptime, disk=False, size=0)
    nets = sorted((k for k in vm.config if k.startswith("net") and k[3:].isdigit()), key=lambda k: int(k[3:]))
    nics = {}
    for key, nin, nout in zip(nets, _split(usage["netin"], [1] * len(nets)), _split(usage["netout"], [1] * len(nets))):
        nics[f"tap{vm.vmid}i{key[3:]}"] = {"netin": nin, "netout": nout}
    out: dict[str, Any] = {
        "running-machine": MACHINE, "running-qemu": QEMU_VERSION, "proxmox-support": dict(PROXMOX_SUPPORT),
        "blockstat": blockstat, "nics": nics, "memhost": mem,
    }
    if str(vm.config.get("balloon", "")) != "0":
        # virtio-balloon with guest statistics (PVE sets guest-stats-polling-interval=2)
        total = maxmem - maxmem // 32           # what the guest kernel sees (firmware/kernel reserve)
        free = max(total - mem, 0)
        out.update(balloon=maxmem, freemem=free, mem=total - free, ballooninfo={
            "actual": maxmem, "max_mem": maxmem, "total_mem": total, "free_mem": free,
            "major_page_faults": 900 + uptime // 90, "minor_page_faults": 1_200_000 + uptime * 22,
            "mem_swapped_in": 0, "mem_swapped_out": 0, "last_update": int(time.time()) // 2 * 2,
        })
    return out


def pressure_fields(vm: VM, uptime: int) -> dict[str, float]:
    """The avg10 pressure stall figures of qemu.slice/<vmid>.scope, which vmstatus reads for every running
    VM (listed or not in full)."""
    wobble = (vm.vmid * 31 + uptime // 10) % 7
    return {"pressurecpusome": round(0.02 * wobble, 2), "pressurecpufull": 0.0,
            "pressureiosome": round(0.01 * wobble, 2), "pressureiofull": 0.0, "pressurememorysome": 0.0,
            "pressurememoryfull": 0.0}


def balloon_fields(conf: dict[str, Any]) -> dict[str, Any]:
    """vmstatus for any VM with a `balloon` target: its minimum in bytes and the `shares` weight
    (default 1000, QemuServer.pm load_defaults)."""
    if not int(conf.get("balloon") or 0):     # Perl truth: "0" is false
        return {}
    return {"balloon_min": int(conf["balloon"]) * 1024 * 1024, "shares": int(conf.get("shares", 1000))}


def display_fields(conf: dict[str, Any]) -> dict[str, Any]:
    """qemu-server API2/Qemu.pm::vm_status with a `vga` entry: `spice` for SPICE-capable displays
    (virtio*, qxl, qxl2..4: QemuServer.pm::vga_conf_has_spice) and `clipboard` as configured (null if
    not set: the handler copies the parsed value unconditionally)."""
    if not conf.get("vga"):
        return {}
    first, opts = parse_prop(str(conf["vga"]))
    kind = opts.get("type", first or "")
    out: dict[str, Any] = {"clipboard": opts.get("clipboard")}
    if kind.startswith("virtio") or kind in ("qxl", "qxl2", "qxl3", "qxl4"):
        out["spice"] = 1
    return out
