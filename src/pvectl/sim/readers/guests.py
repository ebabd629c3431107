"""QEMU guest detail readers: guest agent commands, feature checks, cloud-init, RRD data, firewall
options (snapshots are served by sim/snapshots.py)."""

from __future__ import annotations

import time
from typing import Any

from ..backend import VM, ApiFail, is_cloudinit_key, is_drive_key, memory_mib, vm_cpus
from ..backend.snapdisks import has_feature
from ..models import GIB, MIB
from .base import Ctx, reader
from .rrd import vm_rrd


def _vm(ctx: Ctx) -> VM:
    return ctx.backend.load_config(ctx.node, int(ctx.params["vmid"]))


def _agent_vm(ctx: Ctx) -> VM:
    # QemuServer/Agent.pm::assert_agent_available: the same checks as network-get-interfaces
    ctx.backend.agent_network(ctx.node, int(ctx.params["vmid"]))
    return _vm(ctx)


_AGENT_COMMANDS = ("fsfreeze-freeze", "fsfreeze-status", "fsfreeze-thaw", "fstrim", "get-fsinfo", "get-host-name",
                   "get-memory-block-info", "get-memory-blocks", "get-osinfo", "get-time", "get-timezone",
                   "get-users", "get-vcpus", "info", "network-get-interfaces", "ping", "shutdown",
                   "suspend-disk", "suspend-hybrid", "suspend-ram")


@reader("/nodes/{node}/qemu/{vmid}/agent/info")
def agent_info(ctx: Ctx) -> dict[str, Any]:
    _agent_vm(ctx)
    # qemu-ga's guest-info answer (QEMU qga/commands.c qmp_guest_info)
    cmds = [{"name": f"guest-{c}", "enabled": True, "success-response": c not in ("shutdown", "suspend-disk",
                                                                                   "suspend-hybrid", "suspend-ram")}
            for c in _AGENT_COMMANDS]
    return {"result": {"version": "8.2.2", "supported_commands": cmds}}


@reader("POST /nodes/{node}/qemu/{vmid}/agent/ping")
def agent_ping(ctx: Ctx) -> dict[str, Any]:
    _agent_vm(ctx)
    return {"result": {}}


@reader("/nodes/{node}/qemu/{vmid}/agent/get-osinfo")
def agent_osinfo(ctx: Ctx) -> dict[str, Any]:
    _agent_vm(ctx)
    return {"result": {"id": "ubuntu", "name": "Ubuntu", "pretty-name": "Ubuntu 24.04.3 LTS",
                       "version": "24.04.3 LTS (Noble Numbat)", "version-id": "24.04", "machine": "x86_64",
                       "kernel-release": "6.8.0-85-generic",
                       "kernel-version": "#85-Ubuntu SMP PREEMPT_DYNAMIC Thu Sep 18 15:26:59 UTC 2025"}}


@reader("/nodes/{node}/qemu/{vmid}/agent/get-host-name")
def agent_hostname(ctx: Ctx) -> dict[str, Any]:
    vm = _agent_vm(ctx)
    return {"result": {"host-name": str(vm.config.get("name", f"vm{vm.vmid}"))}}


@reader("/nodes/{node}/qemu/{vmid}/agent/get-time")
def agent_time(ctx: Ctx) -> dict[str, Any]:
    _agent_vm(ctx)
    return {"result": time.time_ns()}


@reader("/nodes/{node}/qemu/{vmid}/agent/get-timezone")
def agent_timezone(ctx: Ctx) -> dict[str, Any]:
    _agent_vm(ctx)
    return {"result": {"zone": "UTC", "offset": 0}}


@reader("/nodes/{node}/qemu/{vmid}/agent/get-users")
def agent_users(ctx: Ctx) -> dict[str, Any]:
    _agent_vm(ctx)
    return {"result": []}


@reader("/nodes/{node}/qemu/{vmid}/agent/get-vcpus")
def agent_vcpus(ctx: Ctx) -> dict[str, Any]:
    vm = _agent_vm(ctx)
    return {"result": [{"logical-id": i, "online": True, "can-offline": i > 0} for i in range(vm_cpus(vm.config))]}


@reader("/nodes/{node}/qemu/{vmid}/agent/get-fsinfo")
def agent_fsinfo(ctx: Ctx) -> dict[str, Any]:
    vm = _agent_vm(ctx)
    size = ctx.backend.vm_usage(vm, time.time())["maxdisk"]
    disk = {"bus-type": "scsi", "bus": 0, "target": 0, "unit": 0, "dev": "/dev/sda1",
            "serial": "0QEMU_QEMU_HARDDISK_drive-scsi0",
            "pci-controller": {"domain": 0, "bus": 9, "slot": 1, "function": 0}}
    return {"result": [{"name": "sda1", "mountpoint": "/", "type": "ext4", "total-bytes": size - GIB,
                        "used-bytes": int(size * 0.18), "disk": [disk]}]}


@reader("/nodes/{node}/qemu/{vmid}/agent/get-memory-blocks")
def agent_memory_blocks(ctx: Ctx) -> dict[str, Any]:
    vm = _agent_vm(ctx)
    blocks = memory_mib(vm.config) // 128
    return {"result": [{"phys-index": i, "online": True, "can-offline": i > 0} for i in range(blocks)]}


@reader("/nodes/{node}/qemu/{vmid}/agent/get-memory-block-info")
def agent_memory_block_info(ctx: Ctx) -> dict[str, Any]:
    _agent_vm(ctx)
    return {"result": {"size": 128 * MIB}}


@reader("/nodes/{node}/qemu/{vmid}/agent/file-read")
def agent_file_read(ctx: Ctx) -> dict[str, Any]:
    vm = _agent_vm(ctx)
    if ctx.params["file"] == "/etc/hostname":
        return {"content": f"{vm.config.get('name', vm.vmid)}\n"}
    # qemu-ga guest-file-open: the guest's errno text
    raise ApiFail(f"Agent error: failed to open file '{ctx.params['file']}': No such file or directory")


@reader("/nodes/{node}/qemu/{vmid}/agent/exec-status")
def agent_exec_status(ctx: Ctx) -> dict[str, Any]:
    _agent_vm(ctx)
    # qemu-ga guest-exec-status for a PID it did not start
    raise ApiFail("Agent error: Invalid parameter 'pid'")


@reader("/nodes/{node}/qemu/{vmid}/feature")
def feature(ctx: Ctx) -> dict[str, Any]:
    # qemu-server API2/Qemu.pm::vm_feature: the snapshot's section with `snapname`, then
    # QemuConfig.pm::has_feature (`return $err ? 0 : 1`) and QemuServer.pm::shared_nodes
    vm = _vm(ctx)
    conf: dict[str, Any] = vm.config
    snapname = ctx.params.get("snapname")
    if snapname:
        if snapname not in vm.snapshots:
            raise ApiFail(f"snapshot '{snapname}' does not exist")
        conf = vm.snapshots[snapname]
    ok = has_feature(ctx.backend, conf, str(ctx.params["feature"]), snapname)
    return {"hasFeature": int(ok), "nodes": _shared_nodes(ctx, conf, vm.node)}


def _shared_nodes(ctx: Ctx, conf: dict[str, Any], node: str) -> list[str]:
    """QemuServer.pm::shared_nodes: the cluster's nodes (online or not) that reach every volume,
    CD-ROM images included: a disabled storage leaves none, `nodes=` restricts, local keeps this one."""
    b = ctx.backend
    nodes = set(b.state.nodes)
    for key, value in conf.items():
        if not is_drive_key(key):
            continue
        volid = str(value).split(",", 1)[0]
        store = b.state.storages.get(volid.split(":", 1)[0]) if ":" in volid else None
        if store is None:
            continue
        if not store.enabled:
            nodes = set()
        elif store.nodes is not None:
            nodes &= set(store.nodes)
        elif not store.shared:
            nodes &= {node}
    return sorted(nodes)


@reader("/nodes/{node}/qemu/{vmid}/cloudinit")
def cloudinit(ctx: Ctx) -> list[dict[str, Any]]:
    # qemu-server API2/Qemu.pm::cloudinit_pending: cloud-init keys, current and pending
    vm = _vm(ctx)
    out = []
    for key in sorted(set(vm.config) | set(vm.pending)):
        if not is_cloudinit_key(key):
            continue
        item: dict[str, Any] = {"key": key}
        if key in vm.config:
            item["value"] = "**********" if key == "cipassword" else str(vm.config[key])
        if key in vm.pending:
            item["pending"] = str(vm.pending[key])
        out.append(item)
    return out


@reader("/nodes/{node}/qemu/{vmid}/cloudinit/dump")
def cloudinit_dump(ctx: Ctx) -> str:
    # qemu-server QemuServer/Cloudinit.pm::dump_cloudinit_config (nocloud)
    vm = _vm(ctx)
    kind = ctx.params["type"]
    name = str(vm.config.get("name", f"VM{vm.vmid}"))
    if kind == "user":
        user = vm.config.get("ciuser", "root")
        return (f"#cloud-config\nhostname: {name}\nmanage_etc_hosts: true\nfqdn: {name}\nuser: {user}\n"
                "chpasswd:\n  expire: False\nusers:\n  - default\npackage_upgrade: true\n")
    if kind == "meta":
        return f"instance-id: {vm.config.get('vmgenid', vm.vmid)}\n"
    return "version: 1\nconfig:\n    - type: physical\n      name: eth0\n      subnets:\n      - type: dhcp4\n"


@reader("/nodes/{node}/qemu/{vmid}/rrddata")
def qemu_rrddata(ctx: Ctx) -> list[dict[str, Any]]:
    return vm_rrd(ctx.backend, _vm(ctx), str(ctx.params["timeframe"]))


@reader("/nodes/{node}/vncwebsocket", "/nodes/{node}/qemu/{vmid}/vncwebsocket", "/nodes/{node}/lxc/{vmid}/vncwebsocket")
def vnc_websocket(ctx: Ctx) -> dict[str, Any]:
    # qemu-server Qemu.pm / pve-manager Nodes.pm vncwebsocket: AccessControl.pm::verify_vnc_ticket first;
    # the simulator hands out no VNC tickets (vncproxy is not simulated), so every ticket is invalid:
    # PVE::Ticket::verify_rsa_ticket raises this with HTTP 401
    raise ApiFail("permission denied - invalid PVEVNC ticket", 401)


@reader("/nodes/{node}/qemu/{vmid}/mtunnelwebsocket", "/nodes/{node}/lxc/{vmid}/mtunnelwebsocket")
def tunnel_websocket(ctx: Ctx) -> dict[str, Any]:
    # mtunnelwebsocket: AccessControl.pm::verify_tunnel_ticket; no mtunnel tickets are ever issued here
    raise ApiFail("permission denied - invalid PVETUNNEL ticket", 401)
