"""RRD series as pvestatd records them and `rrddata` returns them (pve-manager PVE/API2Tools.pm,
pve-cluster `PVE::Cluster::create_rrd_data`): 70 rows per time frame, one per resolution step, each
with `time` and the data sources of the guest, node or storage; usage follows the simulated state
(a stopped guest reads 0, a node its current load), with a small deterministic wobble.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

from ..backend import ApiFail, memory_mib, vm_cpus
from ..models import GIB, MIB

if TYPE_CHECKING:
    from ..backend import Backend
    from ..models import VM

# time frame -> step in seconds (RRD resolution); 70 rows each
STEPS = {"hour": 60, "day": 1800, "week": 10800, "month": 43200, "year": 604800, "decade": 6048000}
ROWS = 70


def _times(timeframe: str) -> list[int]:
    step = STEPS[timeframe]
    last = int(time.time()) // step * step
    return [last - (ROWS - 1 - i) * step for i in range(ROWS)]


def _wobble(seed: int, t: int) -> float:
    return 1 + 0.1 * (((seed * 7919 + t // 60) % 11) - 5) / 5


def node_rrd(b: Backend, node: str, timeframe: str, cf: str = "AVERAGE") -> list[dict[str, Any]]:
    n = b.node(node)
    usage = b.node_usage(n)
    out = []
    for t in _times(timeframe):
        w = _wobble(n.nodeid, t)
        out.append({"time": t, "cpu": round(usage["cpu"] * w, 6), "maxcpu": n.maxcpu,
                    "iowait": round(0.0012 * w, 6), "loadavg": round(usage["cpu"] * n.maxcpu * w, 2),
                    "memtotal": n.mem_total, "memused": int(usage["mem"] * w) if w < 1 else usage["mem"],
                    "swaptotal": 8 * GIB, "swapused": 0, "roottotal": n.rootfs_total, "rootused": n.rootfs_used,
                    "netin": round(180000 * w, 2), "netout": round(95000 * w, 2)})
    return out


def vm_rrd(b: Backend, vm: VM, timeframe: str) -> list[dict[str, Any]]:
    usage = b.vm_usage(vm, time.time())
    maxmem = memory_mib(vm.config) * MIB
    started = vm.started_at or 0.0
    out = []
    for t in _times(timeframe):
        row: dict[str, Any] = {"time": t, "maxcpu": vm_cpus(vm.config), "maxmem": maxmem,
                               "maxdisk": usage["maxdisk"], "disk": 0}
        if vm.status == "running" and t >= started:
            w = _wobble(vm.vmid, t)
            row.update(cpu=round(vm.cpu_load * w, 6), mem=int(maxmem * vm.mem_fraction * min(w, 1.0)),
                       netin=round(3100 * w, 2), netout=round(1200 * w, 2), diskread=round(40960 * w, 2),
                       diskwrite=round(20480 * w, 2))
        out.append(row)
    return out


def storage_rrd(b: Backend, node: str, sid: str, timeframe: str) -> list[dict[str, Any]]:
    store = b.state.storages.get(sid)
    if store is None:
        raise ApiFail(f"storage '{sid}' does not exist")
    used = b.storage_used(store, node)
    return [{"time": t, "total": store.total, "used": used} for t in _times(timeframe)]


# a 1x1 transparent PNG: the graph endpoints return a file name and the image, base64 (RRD.pm)
_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAA"
                        "AABJRU5ErkJggg==")


def rrd_png(ds: str) -> dict[str, Any]:
    return {"filename": f"/var/tmp/rrd-{ds}.png", "image": base64.b64encode(_PNG).decode()}
