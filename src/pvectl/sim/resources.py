"""`GET /cluster/resources`, encoded fast enough for 10,000 guests without an answer cache.

The answer is the same as `Backend.cluster_resources` (pve-manager API2/Cluster.pm::resources,
API2Tools.pm::extract_vm_stats; pve-semantics §10.2), plus the seeded LXC containers. What makes it
fast: the part of a guest's entry that only depends on its config (name, tags, lock, template, vCPUs,
memory, boot disk size) is encoded to JSON once per config revision (`models.ConfigDict`) and node, and
cached; each answer only formats the fields that move with time (status, usage counters) into that
prefix, and the permission check is made once for `/vms` when the token's ACL covers every guest.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from .backend import memory_mib, parse_size, unknown_guest, vm_cpus
from .models import MIB

if TYPE_CHECKING:
    from .backend import Backend
    from .models import VM, Container, Token

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


class _Static:
    """A guest's entry with its config-derived fields already encoded: whole for a stopped or unknown
    guest, as a %-template for a running one (status, cpu, mem, uptime and the counters)."""

    __slots__ = ("key", "stopped", "unknown", "running", "maxmem", "maxcpu")

    def __init__(self, key: tuple[int, str], ident: str, head: str, tail: str, maxcpu: int, maxmem: int,
                 maxdisk: int) -> None:
        self.key = key
        self.maxmem = maxmem
        self.maxcpu = maxcpu
        self.stopped = (f'{head}"stopped","cpu":0,"maxcpu":{maxcpu},"mem":0,"maxmem":{maxmem},"disk":0,'
                        f'"maxdisk":{maxdisk},"uptime":0,"netin":0,"netout":0,"diskread":0,"diskwrite":0,'
                        f'"memhost":0{tail}')
        # API2Tools.pm::extract_vm_stats without RRD data: identity and status only (lock/tags from the config)
        self.unknown = f'{ident}"status":"unknown"{tail}'
        self.running = (head.replace("%", "%%") + '%s,"cpu":%r,"maxcpu":' + str(maxcpu) + ',"mem":%d,"maxmem":'
                        + str(maxmem) + ',"disk":0,"maxdisk":' + str(maxdisk) + ',"uptime":%d,"netin":%d,'
                        '"netout":%d,"diskread":%d,"diskwrite":%d,"memhost":%d' + tail.replace("%", "%%"))


def boot_disk_size(backend: Backend, vm: VM) -> int:
    """`maxdisk` as Backend.vm_usage reports it: the first non-cloud-init disk in key order."""
    for key, volid, opts in backend.vm_drives(vm):
        if not key.startswith("unused") and "cloudinit" not in volid:
            return parse_size(opts.get("size", "0"))
    return 0


class ResourceEncoder:
    """Builds the JSON body of `/cluster/resources` for one backend; call with the backend's lock held."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._static: dict[int, _Static] = {}
        self._usage: dict[tuple[str, str | None], int] = {}
        self._usage_key: tuple[int, int] | None = None

    def _vm_static(self, vm: VM) -> _Static:
        conf = vm.config
        key = (conf.revision, vm.node)
        ident = f'{{"id":"qemu/{vm.vmid}","type":"qemu","vmid":{vm.vmid},"node":{_dumps(vm.node)},'
        head = f'{ident}"name":{_dumps(conf.get("name", f"VM {vm.vmid}"))},"template":{int(vm.is_template)},"status":'
        tail = "".join(f',"{k}":{_dumps(conf[k])}' for k in ("lock", "tags") if conf.get(k)) + "}"
        st = _Static(key, ident, head, tail, vm_cpus(conf), memory_mib(conf) * MIB, boot_disk_size(self.backend, vm))
        if len(self._static) > 2 * len(self.backend.state.vms) + 64:
            self._static.clear()          # forget deleted guests
        self._static[vm.vmid] = st
        return st

    def _vm_entries(self, token: Token, now: float,
                    load: dict[str, list[float]]) -> list[tuple[int, str]]:
        """Guest entries; adds every running guest's memory and CPU to `load[node]` (Backend.node_usage)."""
        b = self.backend
        all_vms = b.has(token, "/vms", "VM.Audit")
        recent = now - max(b.scale(10), 1e-6)     # changes since then may not have reached pvestatd yet
        stale = {n for n in b.state.nodes if not b._rrd_fresh(n)}  # noqa: SLF001 - the backend's rule
        tick = int(now)
        # Backend.vm_usage's cpu jitter, 1 + 0.1 * (k - 5) / 5 for k = (vmid * 7919 + second) % 11
        jitter = [1 + 0.1 * (k - 5) / 5 for k in range(11)]
        out: list[tuple[int, str]] = []
        append = out.append
        statics = self._static
        for vm in b.state.vms.values():
            vmid = vm.vmid
            node = vm.node
            st = statics.get(vmid)
            if st is None or st.key != (vm.config.revision, node):
                st = self._vm_static(vm)
            running = vm.status == "running"
            if running and node in load:
                acc = load[node]
                acc[0] += int(st.maxmem * max(vm.mem_fraction, 0.3))
                acc[1] += vm.cpu_load * st.maxcpu / acc[2]
            if not all_vms and not b.has(token, f"/vms/{vmid}", "VM.Audit"):
                continue
            # Backend.resource_status, with the statd-tick arithmetic only for recent changes
            if node in stale:
                append((vmid, st.unknown))
                continue
            if vm.created_at > recent and b._statd_tick(vm.created_at) > now:  # noqa: SLF001
                append((vmid, st.unknown))
                continue
            if vm.status_changed_at > recent and b._statd_tick(vm.status_changed_at) > now:  # noqa: SLF001
                status = vm.prev_status
            elif running and vm.qmpstatus not in ("running", ""):
                status = vm.qmpstatus
            else:
                status = vm.status
            if status == "stopped":
                append((vmid, st.stopped))
            elif running and vm.started_at:
                uptime = int(now - vm.started_at)
                cpu = round(min(1.0, vm.cpu_load * jitter[(vmid * 7919 + tick) % 11]), 6)
                mem = int(st.maxmem * vm.mem_fraction)
                append((vmid, st.running % ('"running"' if status == "running" else _dumps(status), cpu, mem, uptime,
                                            uptime * 3100, uptime * 1200, uptime * 40960, uptime * 20480, mem)))
            else:       # a status pvestatd has not caught up with: the stopped figures under that status
                append((vmid, st.stopped.replace('"status":"stopped"', f'"status":{_dumps(status)}', 1)))
        return out

    def _ct_entries(self, token: Token, now: float) -> list[tuple[int, str]]:
        from .readers.lxc import ct_status

        b = self.backend
        out = []
        stale = {n for n in b.state.nodes if not b._rrd_fresh(n)}  # noqa: SLF001 - the backend's rule
        for ct in b.state.containers.values():
            if b.has(token, f"/vms/{ct.vmid}", "VM.Audit"):
                entry = unknown_guest("lxc", ct.vmid, ct.node, ct.config) if ct.node in stale else \
                    container_resource(ct, ct_status(ct, now))
                out.append((ct.vmid, _dumps(entry)))
        return out

    def encode(self, token: Token, rtype: str | None) -> bytes:
        """The whole response body, `{"data":[...]}`."""
        now = time.time()
        b = self.backend
        parts: list[str] = []
        load = {n.name: [float(n.mem_host_used), n.cpu_base, float(n.maxcpu)] for n in b.state.nodes.values()}
        guests = self._vm_entries(token, now, load) if rtype in (None, "vm", "node") else []
        if rtype in (None, "vm"):
            if b.state.containers:
                guests += self._ct_entries(token, now)
            guests.sort()
            parts += [g[1] for g in guests]
        if rtype in (None, "node"):
            parts.extend(_dumps(e) for e in self._node_entries(token, load))
        if rtype in (None, "storage"):
            parts.extend(_dumps(e) for e in self._storage_entries(token))
        if rtype in (None, "sdn"):
            parts.extend(_dumps(e) for e in b.cluster_resources(token, "sdn"))
        return ('{"data":[' + ",".join(parts) + "]}").encode()


    def _storage_entries(self, token: Token) -> list[dict[str, Any]]:
        """Backend.cluster_resources' storage part, its one pass over all volumes done again only when
        the state changed (Backend.changed, bumped by every write) or volumes came or went."""
        b = self.backend
        key = (b.version_counter, len(b.state.volumes))
        if self._usage_key != key:
            self._usage = b.storage_usage()
            self._usage_key = key
        return b.cluster_resources(token, "storage", used=self._usage)

    def _node_entries(self, token: Token, load: dict[str, list[float]]) -> list[dict[str, Any]]:
        # the node part of Backend.cluster_resources, with Backend.node_usage's sums from one pass
        b = self.backend
        out = []
        for n in b.state.nodes.values():
            entry = b.node_resource(n, token)
            if n.online and "maxmem" in entry:
                used, cpu, _ = load[n.name]
                entry.update(mem=min(int(used), n.mem_total), cpu=round(min(cpu, 1.0), 6),
                             uptime=int(time.time() - n.boot_time), disk=n.rootfs_used)
                entry["cgroup-mode"] = 2
            out.append(entry)
        return out


def container_resource(ct: Container, status: dict[str, Any]) -> dict[str, Any]:
    """A container's `/cluster/resources` entry (API2Tools.pm::extract_vm_stats for type lxc)."""
    entry: dict[str, Any] = {"id": f"lxc/{ct.vmid}", "type": "lxc", "vmid": ct.vmid, "node": ct.node,
                             "name": status["name"], "template": 0, "status": ct.status}
    for key in ("cpu", "maxmem", "mem", "disk", "maxdisk", "uptime", "netin", "netout", "diskread", "diskwrite"):
        entry[key] = status[key]
    entry["maxcpu"] = status["cpus"]
    entry["memhost"] = entry["mem"]
    for key in ("lock", "tags"):
        if key in status:
            entry[key] = status[key]
    return entry
