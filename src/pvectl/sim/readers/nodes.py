"""Node readers: version, subscription, time, DNS, hosts, RRD data, services, capabilities, hardware."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from ..backend import KVERSION, PVE_VERSION, ApiFail
from ..models import GIB
from .base import Ctx, reader
from .rrd import node_rrd, rrd_png

# pve-manager API2/Nodes.pm::version: the same package as GET /version, from the node itself
@reader("/nodes/{node}/version")
def version(ctx: Ctx) -> dict[str, Any]:
    ctx.backend.node(ctx.node)
    return dict(PVE_VERSION)


@reader("/nodes/{node}/subscription")
def subscription(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/Subscription.pm::get without a key: status "notfound", the message below, and
    # the server id (a hash of the host key) only for users with Sys.Audit
    n = ctx.backend.node(ctx.node)
    out: dict[str, Any] = {"status": "notfound", "message": "There is no subscription key", "url":
                           "https://www.proxmox.com/en/proxmox-virtual-environment/pricing",
                           "sockets": 1}
    if ctx.backend.has(ctx.caller.token, f"/nodes/{n.name}", "Sys.Audit"):
        out["serverid"] = hashlib.md5(n.name.encode()).hexdigest().upper()
    return out


@reader("/nodes/{node}/time")
def node_time(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/Nodes.pm (NodeTime): UTC hosts, localtime == time
    ctx.backend.node(ctx.node)
    now = int(time.time())
    return {"timezone": "UTC", "time": now, "localtime": now}


@reader("/nodes/{node}/dns")
def node_dns(ctx: Ctx) -> dict[str, Any]:
    ctx.backend.node(ctx.node)
    return {"search": "lab.example.com", "dns1": "10.0.0.254"}


@reader("/nodes/{node}/hosts")
def node_hosts(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/Nodes.pm::get_etc_hosts: the file and its SHA1 digest
    nodes = ctx.backend.state.nodes.values()
    lines = ["127.0.0.1 localhost.localdomain localhost"]
    lines += [f"10.0.0.{n.nodeid} {n.name}.lab.example.com {n.name}" for n in nodes]
    data = "\n".join(lines) + "\n"
    return {"data": data, "digest": hashlib.sha1(data.encode()).hexdigest()}


@reader("/nodes/{node}/config")
def node_config(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/NodeConfig.pm::get_config: /etc/pve/nodes/<node>/config, empty by default
    ctx.backend.node(ctx.node)
    return {"digest": hashlib.sha1(b"").hexdigest()}


@reader("/nodes/{node}/report")
def node_report(ctx: Ctx) -> str:
    n = ctx.backend.node(ctx.node)
    return f"==== general system info ====\n\n# hostname\n{n.name}\n\n# pveversion --verbose\n" \
           f"proxmox-ve: 9.1.0 (running kernel: {KVERSION[1]})\npve-manager: {PVE_VERSION['version']}\n"


@reader("/nodes/{node}/rrddata")
def node_rrddata(ctx: Ctx) -> list[dict[str, Any]]:
    return node_rrd(ctx.backend, ctx.node, str(ctx.params["timeframe"]), ctx.params.get("cf", "AVERAGE"))


@reader("/nodes/{node}/rrd", "/nodes/{node}/qemu/{vmid}/rrd", "/nodes/{node}/lxc/{vmid}/rrd",
        "/nodes/{node}/storage/{storage}/rrd")
def rrd_graph(ctx: Ctx) -> dict[str, Any]:
    # pve-manager PVE/API2Tools.pm / RRD.pm::create_rrd_graph: a PNG written to a temporary file
    return rrd_png(str(ctx.params.get("ds", "cpu")))


@reader("/nodes/{node}/netstat")
def netstat(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-manager API2/Nodes.pm::netstat: per tap device of running guests, from /proc/net/dev
    b = ctx.backend
    now = time.time()
    out = []
    for vm in sorted(b.state.vms.values(), key=lambda v: v.vmid):
        if vm.node != ctx.node or vm.status != "running" or not vm.started_at:
            continue
        up = int(now - vm.started_at)
        for key in sorted(k for k in vm.config if k.startswith("net") and k[3:].isdigit()):
            out.append({"dev": f"tap{vm.vmid}i{key[3:]}", "vmid": str(vm.vmid), "in": str(up * 1200),
                        "out": str(up * 3100)})
    return out


_SERVICES = ("chrony", "corosync", "cron", "ksmtuned", "postfix", "pve-cluster", "pve-firewall",
             "pve-ha-crm", "pve-ha-lrm", "pvedaemon", "pvefw-logger", "pveproxy", "pvescheduler",
             "pvestatd", "qmeventd", "spiceproxy", "sshd", "syslog", "systemd-journald", "systemd-timesyncd")


def _service(name: str) -> dict[str, Any]:
    # pve-manager API2/Services.pm::service_state (systemd unit state)
    return {"service": name, "name": name, "desc": f"{name} service", "state": "running",
            "active-state": "active", "unit-state": "enabled"}


@reader("/nodes/{node}/services")
def services(ctx: Ctx) -> list[dict[str, Any]]:
    ctx.backend.node(ctx.node)
    return [_service(s) for s in _SERVICES]


@reader("/nodes/{node}/services/{service}/state")
def service_state(ctx: Ctx) -> dict[str, Any]:
    ctx.backend.node(ctx.node)
    return _service(str(ctx.params["service"]))


@reader("/nodes/{node}/capabilities/qemu/migration")
def migration_caps(ctx: Ctx) -> dict[str, Any]:
    return {"has-dbus-vmstate": True}


@reader("/nodes/{node}/capabilities/qemu/cpu")
def cpu_models(ctx: Ctx) -> list[dict[str, Any]]:
    # qemu-server API2/Qemu/CPU.pm::index: built-in models (custom: 0)
    names = ("host", "kvm64", "qemu64", "x86-64-v2", "x86-64-v2-AES", "x86-64-v3", "x86-64-v4", "EPYC-Milan")
    return [{"name": n, "custom": 0, "vendor": "AuthenticAMD" if n.startswith("EPYC") else "default"}
            for n in names]


@reader("/nodes/{node}/capabilities/qemu/machines")
def machines(ctx: Ctx) -> list[dict[str, Any]]:
    return [{"id": f"pc-{t}-9.2", "type": t, "version": "9.2"} for t in ("i440fx", "q35")]


@reader("/nodes/{node}/network/{iface}")
def network_iface(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/Network.pm::network_config
    for iface in ctx.backend.node_network(ctx.node, None):
        if iface["iface"] == ctx.params["iface"]:
            return iface
    raise ApiFail(f"network interface '{ctx.params['iface']}' does not exist")


@reader("/nodes/{node}/disks/list")
def disks(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-storage API2/Disks.pm::list: one NVMe system disk holding the LVM volume group `pve`
    n = ctx.backend.node(ctx.node)
    return [{"devpath": "/dev/nvme0n1", "type": "nvme", "size": n.rootfs_total + 1900 * GIB,
             "model": "SAMSUNG MZQL21T9HCJR-00A07", "serial": f"S64GNE0R{n.nodeid:06d}", "vendor": "unknown",
             "health": "PASSED", "gpt": 1, "mounted": 0, "used": "LVM", "osdid": -1, "osdid-list": [], "rpm": 0,
             "wwn": f"eui.36344730526{n.nodeid:05d}", "by_id_link": f"/dev/disk/by-id/nvme-S64GNE0R{n.nodeid:06d}"}]


@reader("/nodes/{node}/disks/smart")
def smart(ctx: Ctx) -> dict[str, Any]:
    if ctx.params["disk"] != "/dev/nvme0n1":
        raise ApiFail(f"no such disk '{ctx.params['disk']}'")
    return {"health": "PASSED", "type": "text",
            "text": "SMART overall-health self-assessment test result: PASSED\n"}


@reader("/nodes/{node}/disks/lvm")
def disks_lvm(ctx: Ctx) -> dict[str, Any]:
    # pve-storage API2/Disks/LVM.pm::index: a tree of volume groups and their physical volumes
    n = ctx.backend.node(ctx.node)
    size = n.rootfs_total + 1900 * GIB
    return {"leaf": 0, "children": [{"leaf": 0, "name": "pve", "size": size, "free": 16 * GIB,
                                     "children": [{"leaf": 1, "name": "/dev/nvme0n1p3", "size": size,
                                                   "free": 16 * GIB}]}]}


@reader("/nodes/{node}/disks/lvmthin")
def disks_lvmthin(ctx: Ctx) -> list[dict[str, Any]]:
    store = ctx.backend.state.storages.get("local-lvm")
    if store is None:
        return []
    used = ctx.backend.storage_used(store, ctx.node)
    return [{"lv": "data", "vg": "pve", "lv_size": store.total, "used": used, "metadata_size": GIB,
             "metadata_used": GIB // 50, "lv_state": "a", "lv_type": "thin-pool"}]


@reader("/nodes/{node}/apt/repositories")
def apt_repositories(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/APT.pm::repositories (proxmox-apt): the no-subscription repository enabled
    entry = {"Types": ["deb"], "URIs": ["http://download.proxmox.com/debian/pve"], "Suites": ["trixie"],
             "Components": ["pve-no-subscription"], "Options": [], "Comment": "", "FileType": "sources",
             "Enabled": True}
    path = "/etc/apt/sources.list.d/proxmox.sources"
    digest = hashlib.sha256(b"proxmox.sources").hexdigest()
    files = [{"path": path, "file-type": "sources", "repositories": [entry], "digest": list(bytes.fromhex(digest))}]
    return {"files": files,
            "errors": [], "digest": digest,
            "infos": [], "standard-repos": [{"handle": "no-subscription", "name": "No-Subscription", "status": 1}]}


@reader("/nodes/{node}/apt/changelog")
def apt_changelog(ctx: Ctx) -> str:
    return f"{ctx.params['name']} ({PVE_VERSION['version']}) trixie; urgency=medium\n\n  * release\n"


@reader("/nodes/{node}/apt/versions")
def apt_versions(ctx: Ctx) -> list[dict[str, Any]]:
    return [{"Package": "pve-manager", "Version": PVE_VERSION["version"], "Title": "Proxmox Virtual Environment",
             "Description": "The Proxmox Virtual Environment", "Arch": "all", "Priority": "optional",
             "Section": "admin", "Origin": "Proxmox", "OldVersion": PVE_VERSION["version"], "CurrentState": "Installed",
             "RunningKernel": KVERSION[1], "ManagerVersion": PVE_VERSION["version"]}]


@reader("/nodes/{node}/vzdump/defaults")
def vzdump_defaults(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/VZDump.pm::defaults: /etc/vzdump.conf's (empty) settings plus the storage
    ctx.backend.node(ctx.node)
    return {"storage": "local"}


@reader("/nodes/{node}/certificates/info")
def certificates(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-manager API2/Certificates.pm::info: the CA and the node certificate from the state dir
    n = ctx.backend.node(ctx.node)
    fp = ctx.backend.fingerprints.get(n.name, "")
    subject = f"/OU=PVE Cluster Node/O=Proxmox Virtual Environment/CN={n.name}.lab.example.com"
    issuer = "/CN=Proxmox Virtual Environment/OU=pvectl-sim/O=PVE Cluster Manager CA"
    return [{"filename": "pve-ssl.pem", "fingerprint": fp, "subject": subject, "issuer": issuer,
             "public-key-type": "id-ecPublicKey", "san": [n.name, "127.0.0.1"]}]
