"""Reads: cluster and node status, /cluster/resources, guest status and config, storage, network."""

from __future__ import annotations

import time
from typing import Any

from ..models import GIB, MIB, VM, Node, Token
from .common import (
    KVERSION,
    NET_MODELS,
    PVE_MANAGER,
    PVE_VERSION,
    ApiFail,
    memory_mib,
    param_fail,
    parse_prop,
    parse_size,
    unknown_guest,
    vm_cpus,
)
from .core import BackendCore
from .vmstatus import balloon_fields, display_fields, pressure_fields, running_detail


class ReadMixin(BackendCore):
    def version(self) -> dict[str, Any]:
        return dict(PVE_VERSION)

    def cluster_status(self, local: str) -> list[dict[str, Any]]:
        # pve-manager API2/Cluster.pm::get_status; pmxcfs status.c (pve-semantics §10.1)
        out: list[dict[str, Any]] = [{
            "type": "cluster", "id": "cluster", "name": self.state.cluster_name,
            "nodes": len(self.state.nodes), "quorate": int(self.quorate()), "version": self.state.config_version,
        }]
        for n in self.state.nodes.values():
            out.append({"type": "node", "id": f"node/{n.name}", "name": n.name, "nodeid": n.nodeid,
                        "online": int(n.online), "local": int(n.name == local), "ip": n.ip, "level": ""})
        return out

    def resource_status(self, vm: VM, now: float) -> str:
        if not self._rrd_fresh(vm.node):
            return "unknown"
        if self._statd_tick(vm.created_at) > now:
            return "unknown"          # no RRD data yet for a brand-new VM
        current = vm.qmpstatus if vm.status == "running" and vm.qmpstatus not in {"running", ""} else vm.status
        if self._statd_tick(vm.status_changed_at) > now:
            return vm.prev_status
        return current

    def vm_usage(self, vm: VM, now: float) -> dict[str, Any]:
        conf = vm.config
        maxmem = memory_mib(conf) * MIB
        running = vm.status == "running"
        uptime = int(now - vm.started_at) if running and vm.started_at else 0
        jitter = 1 + 0.1 * ((vm.vmid * 7919 + int(now)) % 11 - 5) / 5
        maxdisk = 0
        for key, volid, opts in self.vm_drives(vm):
            if not key.startswith("unused") and "cloudinit" not in volid:
                maxdisk = parse_size(opts.get("size", "0"))
                break
        return {
            "cpu": round(min(1.0, vm.cpu_load * jitter), 6) if running else 0,
            "maxcpu": vm_cpus(conf), "mem": int(maxmem * vm.mem_fraction) if running else 0, "maxmem": maxmem,
            "disk": 0, "maxdisk": maxdisk, "uptime": uptime,
            "netin": uptime * 3100 if running else 0, "netout": uptime * 1200 if running else 0,
            "diskread": uptime * 40960 if running else 0, "diskwrite": uptime * 20480 if running else 0,
        }

    def cluster_resources(self, token: Token, rtype: str | None,
                          used: dict[tuple[str, str | None], int] | None = None) -> list[dict[str, Any]]:
        # pve-manager API2/Cluster.pm::resources, API2Tools.pm::extract_*_stats (pve-semantics §10.2)
        now = time.time()
        out: list[dict[str, Any]] = []
        if rtype in (None, "vm"):
            for vm in sorted(self.state.vms.values(), key=lambda v: v.vmid):
                if not self.has(token, f"/vms/{vm.vmid}", "VM.Audit"):
                    continue
                status = self.resource_status(vm, now)
                if status == "unknown":
                    out.append(unknown_guest("qemu", vm.vmid, vm.node, vm.config))
                    continue
                entry: dict[str, Any] = {"id": f"qemu/{vm.vmid}", "type": "qemu", "vmid": vm.vmid,
                                         "node": vm.node, "name": vm.config.get("name", f"VM {vm.vmid}"),
                                         "template": int(vm.is_template), "status": status}
                usage = self.vm_usage(vm, now)
                if status == "stopped":      # pvestatd may not have seen a start yet
                    usage.update(cpu=0, mem=0, uptime=0, netin=0, netout=0, diskread=0, diskwrite=0)
                entry.update(usage)
                entry["memhost"] = entry["mem"]
                for key in ("lock", "tags"):
                    if vm.config.get(key):
                        entry[key] = vm.config[key]
                out.append(entry)
        if rtype in (None, "node"):
            for n in self.state.nodes.values():
                entry = self.node_resource(n, token)
                if n.online and "maxmem" in entry:
                    entry.update(self.node_usage(n))
                    entry["cgroup-mode"] = 2
                out.append(entry)
        if rtype in (None, "storage"):
            used = self.storage_usage() if used is None else used
            for n in self.state.nodes.values():
                for s in self.state.storages.values():
                    if not s.enabled or (s.nodes is not None and n.name not in s.nodes):
                        continue
                    if not self.has(token, f"/storage/{s.sid}", "Datastore.Audit", "Datastore.AllocateSpace"):
                        continue
                    entry = {"id": f"storage/{n.name}/{s.sid}", "type": "storage", "storage": s.sid,
                             "node": n.name, "plugintype": s.plugintype, "shared": int(s.shared),
                             "content": s.content, "status": "available" if n.online else "unknown"}
                    if n.online:
                        entry.update(disk=used.get((s.sid, None if s.shared else n.name), 0), maxdisk=s.total)
                    out.append(entry)
        if rtype in (None, "sdn"):
            for n in self.state.nodes.values():
                if self.has(token, "/sdn/zones/localnetwork", "SDN.Audit"):
                    out.append({"id": f"sdn/{n.name}/localnetwork", "type": "sdn", "sdn": "localnetwork",
                                "node": n.name, "status": "ok" if n.online else "unknown"})
        return out

    def node_resource(self, n: Node, token: Token) -> dict[str, Any]:
        """A node's entry without its live usage (API2Tools.pm::extract_node_stats): `level` and the
        maxima while its RRD entry is fresh (also for a node that just went offline), for a caller with
        Sys.Audit; uptime, cpu, mem and disk come on top for an online member."""
        entry: dict[str, Any] = {"id": f"node/{n.name}", "type": "node", "node": n.name,
                                 "status": "online" if n.online else "offline"}
        if n.online or self._rrd_fresh(n.name):
            entry["level"] = ""
            if self.has(token, f"/nodes/{n.name}", "Sys.Audit"):
                entry.update(maxcpu=n.maxcpu, maxmem=n.mem_total, maxdisk=n.rootfs_total)
        return entry

    def nextid(self, vmid: int | None) -> str:
        # pve-manager API2/Cluster.pm::nextid: the value is a JSON string (pve-semantics row 10)
        # the cluster's vmlist holds VMs and containers alike
        used = self.state.vms.keys() | self.state.containers.keys()
        if vmid is not None:
            if vmid in used:
                raise param_fail({"vmid": f"VM {vmid} already exists"})
            return str(vmid)
        for candidate in range(100, 1_000_000):
            if candidate not in used:
                return str(candidate)
        raise ApiFail("unable to get any free VMID in range [100, 1000000]")

    def nodes_list(self, token: Token) -> list[dict[str, Any]]:
        out = []
        for n in self.state.nodes.values():
            entry: dict[str, Any] = {"node": n.name, "status": "online" if n.online else "offline",
                                     "id": f"node/{n.name}", "type": "node", "level": "",
                                     "ssl_fingerprint": self.fingerprints.get(n.name, "")}
            if n.online and self.has(token, f"/nodes/{n.name}", "Sys.Audit"):
                entry.update(self.node_usage(n))
            out.append(entry)
        return out

    def node_status(self, name: str) -> dict[str, Any]:
        # pve-manager API2/Nodes.pm::status (pve-semantics §11)
        n = self.node(name)
        usage = self.node_usage(n)
        total, used = n.mem_total, usage["mem"]
        free = total - used
        load = f"{usage['cpu'] * n.maxcpu:.2f}"
        return {
            "uptime": usage["uptime"], "idle": 0, "cpu": usage["cpu"], "wait": 0.0012,
            "loadavg": [load, load, f"{usage['cpu'] * n.maxcpu * 0.9:.2f}"],
            "kversion": f"{KVERSION[0]} {KVERSION[1]} {KVERSION[2]}",
            "current-kernel": {"sysname": KVERSION[0], "release": KVERSION[1], "version": KVERSION[2],
                               "machine": KVERSION[3]},
            "boot-info": {"mode": "efi", "secureboot": 0},
            "cpuinfo": {"user_hz": 100, "vendor": "AuthenticAMD", "family": "25", "model": n.cpu_model,
                        "mhz": "3000.000", "cpus": n.maxcpu, "sockets": 1, "cores": n.maxcpu // 2, "hvm": "1",
                        "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov svm"},
            "memory": {"total": total, "used": used, "free": free, "available": free},
            "swap": {"total": 8 * GIB, "used": 0, "free": 8 * GIB},
            "ksm": {"shared": 0},
            "rootfs": {"total": n.rootfs_total, "used": n.rootfs_used, "avail": n.rootfs_total - n.rootfs_used,
                       "free": n.rootfs_total - n.rootfs_used},
            "pveversion": PVE_MANAGER,
        }

    def qemu_list(self, node: str, token: Token, full: bool) -> list[dict[str, Any]]:
        # qemu-server API2/Qemu.pm::vmlist: only VMs with VM.Audit
        self.node(node)
        now = time.time()
        out = []
        for vm in sorted(self.state.vms.values(), key=lambda v: v.vmid):
            if vm.node != node or not self.has(token, f"/vms/{vm.vmid}", "VM.Audit"):
                continue
            out.append(self.vm_status(vm, now, full=full))
        return out

    def vm_status(self, vm: VM, now: float, *, full: bool) -> dict[str, Any]:
        # QemuServer.pm::vmstatus (pve-semantics §5.3); the QMP and cgroup detail: vmstatus.py

        usage = self.vm_usage(vm, now)
        conf = vm.config
        d: dict[str, Any] = {"vmid": vm.vmid, "status": vm.status, "name": conf.get("name", f"VM {vm.vmid}"),
                             "cpus": min(vm_cpus(conf), self.state.nodes[vm.node].maxcpu),
                             "maxmem": usage["maxmem"], "maxdisk": usage["maxdisk"], "disk": 0,
                             "uptime": usage["uptime"], "cpu": usage["cpu"], "mem": usage["mem"],
                             "memhost": usage["mem"], "netin": usage["netin"], "netout": usage["netout"],
                             "diskread": usage["diskread"], "diskwrite": usage["diskwrite"]}
        if vm.pid:
            d["pid"] = vm.pid
        if vm.status == "running":
            d.update(pressure_fields(vm, usage["uptime"]))
        if vm.is_template:
            d["template"] = 1
        for key in ("lock", "tags"):
            if conf.get(key):
                d[key] = conf[key]
        if any(k.startswith("serial") for k in conf):
            d["serial"] = 1
        if conf.get("balloon"):
            d.update(balloon_fields(conf))
        if full:
            d["qmpstatus"] = vm.qmpstatus if vm.status == "running" else vm.status
            d["ha"] = {"managed": 0}
            d.update(display_fields(conf))
            if parse_prop(str(conf.get("agent", "0")))[0] in {"1", "enabled"} or \
                    parse_prop(str(conf.get("agent", "")))[1].get("enabled") == "1":
                d["agent"] = 1
            if vm.status == "running":
                d.update(running_detail(self, vm, usage))
        return d

    def vm_status_current(self, node: str, vmid: int) -> dict[str, Any]:
        vm = self.load_config(node, vmid)
        return self.vm_status(vm, time.time(), full=True)

    def vm_index(self, node: str, vmid: int) -> list[dict[str, str]]:
        self.load_config(node, vmid)
        return [{"subdir": s} for s in ("config", "pending", "cloudinit", "vncproxy", "termproxy", "unlink",
                                        "status", "sendkey", "rrd", "rrddata", "monitor", "agent", "snapshot",
                                        "spiceproxy", "clone", "migrate", "resize", "move", "feature", "firewall")]

    def vm_config(self, node: str, vmid: int, *, current: bool = False) -> dict[str, Any]:
        # qemu-server API2/Qemu.pm::vm_config (pve-semantics §7.1)
        vm = self.load_config(node, vmid)
        conf = dict(vm.config)
        if not current:
            for key in vm.pending_delete:
                conf.pop(key, None)
            conf.update(vm.pending)
        if "cipassword" in conf:
            conf["cipassword"] = "**********"
        conf["digest"] = self.digest(vm)
        return conf

    def vm_pending(self, node: str, vmid: int) -> list[dict[str, Any]]:
        vm = self.load_config(node, vmid)
        out = []
        for key in sorted(set(vm.config) | set(vm.pending) | set(vm.pending_delete)):
            if key == "digest":
                continue
            item: dict[str, Any] = {"key": key}
            if key in vm.config:
                item["value"] = "**********" if key == "cipassword" else vm.config[key]
            if key in vm.pending:
                item["pending"] = vm.pending[key]
            if key in vm.pending_delete:
                item["delete"] = 1
            out.append(item)
        return out

    def agent_network(self, node: str, vmid: int) -> dict[str, Any]:
        # qemu-server API2/Qemu/Agent.pm, QemuServer/Agent.pm::assert_agent_available (row 16)
        vm = self.load_config(node, vmid)
        if "agent" not in vm.config:
            raise ApiFail("No QEMU guest agent configured")
        if vm.status != "running":
            raise ApiFail(f"VM {vmid} is not running")
        enabled = parse_prop(str(vm.config["agent"]))
        if not (enabled[0] in {"1"} or enabled[1].get("enabled") == "1") or not self.agent_ready(vm):
            raise ApiFail("QEMU guest agent is not running")
        mac = (parse_prop(str(vm.config.get("net0", "")))[1] or {})
        mac_addr = next((v for k, v in mac.items() if k in NET_MODELS), "bc:24:11:00:00:01").lower()
        stats = {"rx-bytes": 182736, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 1093,
                 "tx-bytes": 73621, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 641}
        b = mac_addr.split(":")
        ll = f"fe80::{int(b[0], 16) ^ 2:02x}{b[1]}:{b[2]}ff:fe{b[3]}:{b[4]}{b[5]}"
        return {"result": [
            {"name": "lo", "hardware-address": "00:00:00:00:00:00",
             "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
                              {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}],
             "statistics": dict(stats, **{"rx-bytes": 0, "tx-bytes": 0})},
            {"name": "eth0", "hardware-address": mac_addr,
             "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": vm.guest_ip.split("/")[0],
                               "prefix": int(vm.guest_ip.split("/")[1]) if "/" in vm.guest_ip else 24},
                              {"ip-address-type": "ipv6", "ip-address": ll, "prefix": 64}],
             "statistics": stats},
        ]}

    def storage_list(self, node: str, token: Token, content: str | None, enabled: bool) -> list[dict[str, Any]]:
        # pve-manager API2/Storage/Status.pm::index
        n = self.node(node)
        out = []
        for s in self.state.storages.values():
            if s.nodes is not None and node not in s.nodes:
                continue
            if not self.has(token, f"/storage/{s.sid}", "Datastore.Audit", "Datastore.AllocateSpace"):
                continue
            if content and not set(content.split(",")) & set(s.content.split(",")):
                continue
            if enabled and not s.enabled:
                continue
            used = self.storage_used(s, n.name)
            out.append({"storage": s.sid, "type": s.plugintype, "content": s.content, "shared": int(s.shared),
                        "active": 1, "enabled": int(s.enabled), "total": s.total, "used": used,
                        "avail": s.total - used, "used_fraction": round(used / s.total, 6)})
        return out

    def node_network(self, node: str, itype: str | None) -> list[dict[str, Any]]:
        """GET /nodes/{node}/network (pve-manager API2/Network.pm::index): the node's physical NICs,
        the `vmbr0` Linux bridge every VM's net0 uses, and a VLAN-aware `vmbr1` without an address on a
        second NIC. `type` filters (`any_bridge` = bridges)."""
        n = self.node(node)
        idx = n.nodeid
        ifaces = [
            {"iface": "eno1", "type": "eth", "method": "manual", "method6": "manual", "families": ["inet"],
             "active": 1, "exists": 1, "autostart": 0, "priority": 3},
            {"iface": "vmbr0", "type": "bridge", "method": "static", "method6": "manual", "families": ["inet"],
             "active": 1, "autostart": 1, "bridge_ports": "eno1", "bridge_stp": "off", "bridge_fd": "0",
             "cidr": f"10.0.0.{idx}/24", "address": f"10.0.0.{idx}", "netmask": "24", "gateway": "10.0.0.254",
             "priority": 4},
            {"iface": "eno2", "type": "eth", "method": "manual", "method6": "manual", "families": ["inet"],
             "active": 1, "exists": 1, "autostart": 0, "priority": 5},
            {"iface": "vmbr1", "type": "bridge", "method": "manual", "method6": "manual", "families": ["inet"],
             "active": 1, "autostart": 1, "bridge_ports": "eno2", "bridge_stp": "off", "bridge_fd": "0",
             "bridge_vlan_aware": 1, "bridge_vids": "2-4094", "priority": 6},
        ]
        if itype in ("bridge", "any_bridge"):
            return [i for i in ifaces if i["type"] == "bridge"]
        if itype:
            return [i for i in ifaces if i["type"] == itype]
        return ifaces

    def access_permissions(self, token: Token, path: str | None) -> dict[str, dict[str, int]]:
        # pve-access-control API2/AccessControl.pm::permissions: path -> {priv: propagate(0|1)}
        paths = [path] if path else sorted({"/", "/access", "/nodes", "/storage", "/vms", "/pool", "/sdn",
                                            *token.acl.keys()})
        out: dict[str, dict[str, int]] = {}
        for p in paths:
            privs = self.privileges(token, p)
            if privs or path:
                out[p] = {priv: 1 for priv in sorted(privs)}
        return out
