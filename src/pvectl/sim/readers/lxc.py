"""LXC containers, read-only: list, status, config, RRD data, migration precondition, interfaces.

pve-container API2/LXC.pm and API2/LXC/Status.pm; `PVE::LXC::vmstatus` gives the list fields. Writes
to containers are not simulated (they keep answering 501).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from ..backend import ApiFail, parse_size
from ..models import MIB, Container
from .base import Ctx, reader
from .rrd import ROWS, STEPS


def container(ctx: Ctx) -> Container:
    vmid = int(ctx.params["vmid"])
    ct = ctx.backend.state.containers.get(vmid)
    if ct is None or ct.node != ctx.node:
        # pve-container LXC/Config.pm::load_config
        raise ApiFail(f"Configuration file 'nodes/{ctx.node}/lxc/{vmid}.conf' does not exist")
    return ct


def ct_status(ct: Container, now: float) -> dict[str, Any]:
    """PVE::LXC::vmstatus for one container (also /cluster/resources' usage fields)."""
    conf = ct.config
    maxmem = int(conf.get("memory", 512)) * MIB
    running = ct.status == "running"
    uptime = int(now - ct.started_at) if running and ct.started_at else 0
    rootfs = str(conf.get("rootfs", ""))
    size = next((p.split("=", 1)[1] for p in rootfs.split(",") if p.startswith("size=")), "0")
    maxdisk = parse_size(size)
    d: dict[str, Any] = {
        "vmid": ct.vmid, "name": conf.get("hostname", f"CT{ct.vmid}"), "status": ct.status, "type": "lxc",
        "cpus": int(conf.get("cores", 1)), "maxmem": maxmem, "maxswap": int(conf.get("swap", 512)) * MIB,
        "maxdisk": maxdisk, "disk": int(maxdisk * 0.21) if running else 0, "uptime": uptime,
        "cpu": round(ct.cpu_load, 6) if running else 0, "mem": int(maxmem * ct.mem_fraction) if running else 0,
        "swap": 0, "netin": uptime * 900 if running else 0, "netout": uptime * 400 if running else 0,
        "diskread": uptime * 2048 if running else 0, "diskwrite": uptime * 1024 if running else 0,
    }
    if running:
        d["pid"] = ct.pid
        # cgroup pressure stall averages (avg10) of lxc/<vmid>, only for a running container
        d.update(pressurecpusome=0.0, pressurecpufull=0.0, pressureiosome=0.0, pressureiofull=0.0,
                 pressurememorysome=0.0, pressurememoryfull=0.0)
    for key in ("lock", "tags"):
        if conf.get(key):
            d[key] = conf[key]
    return d


@reader("/nodes/{node}/lxc")
def lxc_list(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-container API2/LXC.pm::vmlist: only containers with VM.Audit
    b = ctx.backend
    b.node(ctx.node)
    now = time.time()
    return [ct_status(ct, now) for ct in sorted(b.state.containers.values(), key=lambda c: c.vmid)
            if ct.node == ctx.node and b.has(ctx.caller.token, f"/vms/{ct.vmid}", "VM.Audit")]


@reader("/nodes/{node}/lxc/{vmid}/status/current")
def lxc_status(ctx: Ctx) -> dict[str, Any]:
    d = ct_status(container(ctx), time.time())
    d["ha"] = {"managed": 0}
    return d


def _config(ct: Container) -> dict[str, Any]:
    conf = dict(ct.config)
    text = "".join(f"{k}: {v}\n" for k, v in sorted(conf.items()))
    conf["digest"] = hashlib.sha1(text.encode()).hexdigest()
    return conf


@reader("/nodes/{node}/lxc/{vmid}/config")
def lxc_config(ctx: Ctx) -> dict[str, Any]:
    return _config(container(ctx))


@reader("/nodes/{node}/lxc/{vmid}/pending")
def lxc_pending(ctx: Ctx) -> list[dict[str, Any]]:
    ct = container(ctx)
    return [{"key": k, "value": str(v)} for k, v in sorted(ct.config.items())]


@reader("/nodes/{node}/lxc/{vmid}/feature")
def lxc_feature(ctx: Ctx) -> dict[str, Any]:
    container(ctx)
    return {"hasFeature": ctx.params["feature"] in ("snapshot", "clone", "copy")}


@reader("/nodes/{node}/lxc/{vmid}/migrate")
def lxc_migrate(ctx: Ctx) -> dict[str, Any]:
    # pve-container API2/LXC.pm::migrate_vm_precondition: local rootfs -> no other node has it
    ct = container(ctx)
    others = [n for n in ctx.backend.state.nodes if n != ct.node]
    return {"running": ct.status == "running", "allowed-nodes": [],
            "not-allowed-nodes": {n: {"unavailable-storages": ["local-lvm"]} for n in others},
            "local-volumes": ["rootfs"]}


@reader("/nodes/{node}/lxc/{vmid}/interfaces")
def lxc_interfaces(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-container API2/LXC.pm::ip: from the running container's network namespace
    ct = container(ctx)
    if ct.status != "running":
        raise ApiFail(f"CT {ct.vmid} not running")
    mac = next((p.split("=", 1)[1] for p in str(ct.config.get("net0", "")).split(",") if p.startswith("hwaddr=")),
               "BC:24:11:00:00:01").lower()
    ip = f"10.20.0.{ct.vmid % 250 + 2}"
    return [{"name": "lo", "hwaddr": "00:00:00:00:00:00", "hardware-address": "00:00:00:00:00:00",
             "inet": "127.0.0.1/8", "inet6": "::1/128",
             "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "inet", "prefix": 8},
                              {"ip-address": "::1", "ip-address-type": "inet6", "prefix": 128}]},
            {"name": "eth0", "hwaddr": mac, "hardware-address": mac, "inet": f"{ip}/24",
             "ip-addresses": [{"ip-address": ip, "ip-address-type": "inet", "prefix": 24}]}]


@reader("/nodes/{node}/lxc/{vmid}/rrddata")
def lxc_rrddata(ctx: Ctx) -> list[dict[str, Any]]:
    ct = container(ctx)
    d = ct_status(ct, time.time())
    step = STEPS[str(ctx.params["timeframe"])]
    last = int(time.time()) // step * step
    return [{"time": last - (ROWS - 1 - i) * step, "cpu": d["cpu"], "maxcpu": d["cpus"], "mem": d["mem"],
             "maxmem": d["maxmem"], "disk": d["disk"], "maxdisk": d["maxdisk"]} for i in range(ROWS)]


@reader("/nodes/{node}/lxc/{vmid}/snapshot")
def lxc_snapshots(ctx: Ctx) -> list[dict[str, Any]]:
    ct = container(ctx)
    return [{"name": "current", "description": "You are here!", "running": int(ct.status == "running")}]


@reader("/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/config")
def lxc_snapshot_config(ctx: Ctx) -> dict[str, Any]:
    container(ctx)
    raise ApiFail(f"snapshot '{ctx.params['snapname']}' does not exist")


@reader("/nodes/{node}/lxc/{vmid}")
def lxc_index(ctx: Ctx) -> list[dict[str, str]]:
    # pve-container API2/LXC.pm::vmdiridx: the container must exist (load_config), then a fixed list
    container(ctx)
    return [{"subdir": s} for s in ("config", "pending", "status", "vncproxy", "termproxy", "vncwebsocket",
                                    "spiceproxy", "migrate", "clone", "rrd", "rrddata", "firewall", "snapshot",
                                    "resize", "interfaces")]
