"""The simulated cluster's state: nodes, storages and volumes, VMs and their configs, tokens and ACLs.

Plain dataclasses that serialise to JSON (`State.to_json` / `State.from_json`), so that a simulator can
save itself into `--state-dir` and come back. Behaviour lives in `backend`; this module only holds
facts and generates a realistic starting cluster.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

GIB = 1024**3
MIB = 1024**2

# Proxmox's own OUI, used for generated MACs unless datacenter.cfg sets `mac_prefix`
# (qemu-server `QemuServer/Network.pm` add_random_macs; pve-semantics §4.3).
MAC_PREFIX = "BC:24:11"

# Privileges of PVE 9 (pve-access-control `src/PVE/AccessControl.pm`, `$privgroups` and the
# single privileges added to it). Roles are the built-in ones that matter for VM work.
ALL_PRIVS: tuple[str, ...] = (
    "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
    "Group.Allocate", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify",
    "Pool.Allocate", "Pool.Audit", "Realm.Allocate", "Realm.AllocateUser", "SDN.Allocate", "SDN.Audit",
    "SDN.Use", "Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify",
    "Sys.PowerMgmt", "Sys.Syslog", "User.Modify", "VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone",
    "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit", "VM.Config.Disk", "VM.Config.HWType",
    "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Console", "VM.GuestAgent.Audit",
    "VM.GuestAgent.FileRead", "VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.FileWrite",
    "VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.PowerMgmt", "VM.Replicate", "VM.Snapshot",
    "VM.Snapshot.Rollback",
)
_VM_USER = ("VM.Audit", "VM.Backup", "VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console",
            "VM.GuestAgent.Audit", "VM.PowerMgmt")
ROLES: dict[str, tuple[str, ...]] = {
    "Administrator": ALL_PRIVS,
    "PVEAuditor": ("Datastore.Audit", "Mapping.Audit", "Pool.Audit", "SDN.Audit", "Sys.Audit", "VM.Audit",
                   "VM.GuestAgent.Audit"),
    "PVEVMUser": _VM_USER,
    "PVEVMAdmin": tuple(p for p in ALL_PRIVS if p.startswith("VM.")) + ("Mapping.Use", "SDN.Use"),
    "PVEDatastoreUser": ("Datastore.AllocateSpace", "Datastore.Audit"),
    "NoAccess": (),
}


@dataclass
class Node:
    name: str
    nodeid: int
    ip: str = ""
    port: int = 8006
    online: bool = True              # corosync membership, as /cluster/status reports it
    maxcpu: int = 16
    mem_total: int = 128 * GIB
    mem_host_used: int = 6 * GIB     # what the host itself uses, before any VM
    cpu_base: float = 0.02
    boot_time: float = 0.0           # epoch seconds
    cpu_model: str = "AMD EPYC 7313P 16-Core Processor"
    rootfs_total: int = 100 * GIB
    rootfs_used: int = 9 * GIB
    next_pid: int = 2000


# Write throughput (bytes per PVE second) that all disk copies onto one storage share: full clones
# (`qemu-img convert`, drive-mirror) and migration disk copies. This describes the hardware behind a
# storage, not a Proxmox rule (see backend.StorageBandwidth). Local storage has it once per node, shared
# storage once for the cluster.
# - lvmthin / lvm / zfspool: 900 MiB/s, what one copy onto a node's NVMe-backed local pool gets
#   (sparse thin volumes copy fast; the rate the simulator always used for one clone);
# - dir: 600 MiB/s, qcow2/raw files through a filesystem on the same kind of disk;
# - rbd: 500 MiB/s for the whole pool, a small external Ceph cluster (the PVE nodes run no Ceph daemons,
#   see sim/readers/ceph.py): 3 storage hosts with 2 SATA SSD OSDs each
#   (~450 MB/s sequential), size=3: every client byte is written three times (~900 MB/s of client
#   writes from 2.7 GB/s raw), about half of that after BlueStore's WAL/metadata writes and the
#   replication round trips over a 10 GbE cluster network;
# - nfs / cifs: 110 MiB/s, one 1 GbE link to the NAS.
COPY_THROUGHPUT: dict[str, int] = {
    "lvmthin": 900 * MIB, "lvm": 900 * MIB, "zfspool": 900 * MIB, "dir": 600 * MIB, "rbd": 500 * MIB,
    "nfs": 110 * MIB, "cifs": 110 * MIB,
}
DEFAULT_COPY_THROUGHPUT = 900 * MIB


@dataclass
class Storage:
    sid: str
    plugintype: str                  # dir | lvmthin | rbd | nfs ...
    content: str                     # e.g. "images,rootdir"
    shared: bool
    total: int
    nodes: list[str] | None = None   # None = available on every node
    enabled: bool = True
    copy_throughput: int = 0         # bytes per PVE second shared by concurrent copies; 0: COPY_THROUGHPUT

    def throughput(self) -> int:
        return self.copy_throughput or COPY_THROUGHPUT.get(self.plugintype, DEFAULT_COPY_THROUGHPUT)


@dataclass
class Volume:
    volid: str                       # "local-lvm:vm-100-disk-0"
    size: int                        # bytes
    vmid: int
    node: str | None                 # None for shared storage
    # the base volume a linked clone was made from: LVM-thin and RBD keep that relation in the storage,
    # not in the volume name (pve-storage LvmThinPlugin.pm::clone_image, volume_has_feature)
    base: str | None = None


_REVISIONS = itertools.count(1)


class ConfigDict(dict):  # type: ignore[type-arg]
    """A guest config that stamps itself with a new, never reused revision on every change, so readers
    can cache what they derive from it (`sim/resources.py`) without re-parsing every answer."""

    __slots__ = ("revision",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.revision = next(_REVISIONS)

    def _touch(self) -> None:
        self.revision = next(_REVISIONS)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._touch()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._touch()

    def pop(self, *args: Any) -> Any:
        self._touch()
        return super().pop(*args)

    def popitem(self) -> tuple[str, Any]:
        self._touch()
        return super().popitem()

    def clear(self) -> None:
        super().clear()
        self._touch()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._touch()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._touch()
        return super().setdefault(key, default)

    def __ior__(self, other: Any) -> ConfigDict:
        self.update(other)
        return self


@dataclass
class VM:
    vmid: int
    node: str
    config: dict[str, Any]           # current config, values as PVE stores them
    pending: dict[str, Any] = field(default_factory=dict)
    pending_delete: list[str] = field(default_factory=list)
    status: str = "stopped"          # running | stopped
    qmpstatus: str = "stopped"
    pid: int | None = None
    started_at: float | None = None
    guest_ip: str = ""               # what the guest agent reports once it is up
    cpu_load: float = 0.0            # fraction of its vCPUs in use while running
    mem_fraction: float = 0.0        # fraction of maxmem in use while running
    created_at: float = 0.0
    status_changed_at: float = 0.0   # for pvestatd's lag in /cluster/resources
    prev_status: str = "stopped"
    # snapshot name -> its config section (`[name]` in the config file; pve-guest-common AbstractConfig.pm)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "config" and not isinstance(value, ConfigDict):
            value = ConfigDict(value)
        object.__setattr__(self, name, value)

    @property
    def is_template(self) -> bool:
        return bool(int(self.config.get("template", 0) or 0))


@dataclass
class Container:
    """An LXC container: listed and read (`/nodes/{node}/lxc`, `/cluster/resources`), never written."""

    vmid: int
    node: str
    config: dict[str, Any]           # as pve-container stores it (hostname, ostype, rootfs, net0, ...)
    status: str = "stopped"
    pid: int | None = None
    started_at: float | None = None
    cpu_load: float = 0.0
    mem_fraction: float = 0.0

    @classmethod
    def generate(cls, vmid: int, node: str, *, running: bool, now: float | None = None,
                 mac: str = "BC:24:11:4C:00:01") -> Container:
        now = time.time() if now is None else now
        config = {"arch": "amd64", "cores": 1, "hostname": f"ct-{vmid}", "memory": 512, "swap": 512,
                  "ostype": "debian", "unprivileged": 1, "features": "nesting=1", "tags": "ct",
                  "rootfs": f"local-lvm:vm-{vmid}-disk-0,size=8G",
                  "net0": f"name=eth0,bridge=vmbr0,hwaddr={mac},ip=dhcp,type=veth"}
        ct = cls(vmid, node, config)
        if running:
            ct.status, ct.pid, ct.started_at = "running", 4000 + vmid, now - 3600
            ct.cpu_load, ct.mem_fraction = 0.01, 0.25
        return ct


@dataclass
class Token:
    tokenid: str                     # "user@realm!name"
    secret: str
    # ACL path -> privileges (roles already expanded); entries propagate to sub-paths.
    acl: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class TaskRecord:
    """A finished or running task, as the node's task index holds it."""

    upid: str
    node: str
    lines: list[str]
    status: str                      # running | stopped
    exitstatus: str | None = None
    endtime: int | None = None


@dataclass
class State:
    cluster_name: str
    nodes: dict[str, Node]
    storages: dict[str, Storage]
    volumes: dict[str, Volume]       # key: volid for shared storage, "node/volid" for local
    vms: dict[int, VM]
    tokens: dict[str, Token]
    tasks: list[TaskRecord] = field(default_factory=list)
    config_version: int = 3
    containers: dict[int, Container] = field(default_factory=dict)
    datacenter: dict[str, Any] = field(default_factory=dict)   # datacenter.cfg (GET /cluster/options)

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster_name": self.cluster_name,
            "config_version": self.config_version,
            "nodes": [asdict(n) for n in self.nodes.values()],
            "storages": [asdict(s) for s in self.storages.values()],
            "volumes": {k: asdict(v) for k, v in self.volumes.items()},
            "vms": [asdict(v) for v in self.vms.values()],
            "tokens": [asdict(t) for t in self.tokens.values()],
            "tasks": [asdict(t) for t in self.tasks if t.status == "stopped"],
            "containers": [asdict(c) for c in self.containers.values()],
            "datacenter": self.datacenter,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> State:
        return cls(
            cluster_name=d["cluster_name"],
            config_version=d.get("config_version", 3),
            nodes={n["name"]: Node(**n) for n in d["nodes"]},
            storages={s["sid"]: Storage(**s) for s in d["storages"]},
            volumes={k: Volume(**v) for k, v in d["volumes"].items()},
            vms={v["vmid"]: VM(**v) for v in d["vms"]},
            tokens={t["tokenid"]: Token(**t) for t in d["tokens"]},
            tasks=[TaskRecord(**t) for t in d.get("tasks", [])],
            containers={c["vmid"]: Container(**c) for c in d.get("containers", [])},
            datacenter=d.get("datacenter", {}),
        )


def volume_key(storage: Storage, node: str, volid: str) -> str:
    return volid if storage.shared else f"{node}/{volid}"


def random_mac(rng: random.Random) -> str:
    return MAC_PREFIX + "".join(f":{rng.randrange(256):02X}" for _ in range(3))


def format_size(size: int) -> str:
    """Drive `size=` as qemu-server prints it (`PVE::JSONSchema::format_size`: largest exact unit)."""
    for unit, factor in (("T", 1024**4), ("G", GIB), ("M", MIB), ("K", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


_VM_NAMES = ("web", "db", "app", "cache", "mq", "api", "worker", "proxy", "monitor", "ci", "vault", "dns")
_VM_TAGS = {"web": "prod;web", "db": "db;prod", "app": "prod", "cache": "prod;redis", "mq": "rabbitmq",
            "api": "prod;web", "worker": "batch", "proxy": "edge", "monitor": "ops", "ci": "ci;dev",
            "vault": "prod;security", "dns": "infra"}
# The `templates` VMID range the written cluster-config.yaml declares (`vmid_ranges.templates: 9000-9999`):
# generated VMs never take an ID from it, however many there are.
TEMPLATE_VMIDS = range(9000, 10000)
_TEMPLATES = (("ubuntu-24.04-cloud", "ubuntu", 32), ("debian-12-cloud", "debian", 20),
              ("rocky-9-cloud", "rocky", 20), ("alma-9-cloud", "alma", 20))


def generate_state(*, nodes: int, vms: int, templates: int, seed: int = 0, containers: int = 0,
                   cluster_name: str = "simcluster", now: float | None = None) -> State:
    """A realistic cluster: nodes pve1..pveN, local + local-lvm on each, a shared Ceph pool, VMs
    with scsi0 on local-lvm and a cloud-init drive, some running with the guest agent, one
    protected VM, and templates (tagged `template`) in the template VMID range 9000+."""
    if templates > len(TEMPLATE_VMIDS):
        raise ValueError(f"at most {len(TEMPLATE_VMIDS)} templates fit the template VMID range "
                         f"{TEMPLATE_VMIDS.start}-{TEMPLATE_VMIDS.stop - 1}")
    rng = random.Random(seed)
    now = time.time() if now is None else now
    node_map: dict[str, Node] = {}
    for i in range(1, nodes + 1):
        node_map[f"pve{i}"] = Node(
            name=f"pve{i}", nodeid=i, boot_time=now - rng.randrange(3, 40) * 86400 - rng.randrange(86400),
            cpu_base=round(rng.uniform(0.01, 0.06), 4), next_pid=rng.randrange(1500, 9000),
        )
    storages = {
        "local": Storage("local", "dir", "backup,iso,vztmpl", False, 100 * GIB),
        "local-lvm": Storage("local-lvm", "lvmthin", "images,rootdir", False, 1800 * GIB),
        "ceph-vm": Storage("ceph-vm", "rbd", "images,rootdir", True, 12 * 1024 * GIB),
    }
    state = State(cluster_name=cluster_name, nodes=node_map, storages=storages, volumes={}, vms={},
                  tokens={})
    names = list(node_map)

    def add_disk(vm: VM, key: str, size: int, base: bool = False, index: int = 0) -> None:
        volid = f"local-lvm:{'base' if base else 'vm'}-{vm.vmid}-disk-{index}"
        vm.config[key] = f"{volid},iothread=1,size={format_size(size)}"
        state.volumes[f"{vm.node}/{volid}"] = Volume(volid, size, vm.vmid, vm.node)

    def add_cloudinit(vm: VM) -> None:
        volid = f"local-lvm:vm-{vm.vmid}-cloudinit"
        vm.config["ide2"] = f"{volid},media=cdrom"
        state.volumes[f"{vm.node}/{volid}"] = Volume(volid, 4 * MIB, vm.vmid, vm.node)

    for t in range(templates):
        tname, os_tag, disk_gib = _TEMPLATES[t % len(_TEMPLATES)]
        vmid = TEMPLATE_VMIDS.start + t
        node = names[t % len(names)]
        vm = VM(vmid=vmid, node=node, created_at=now - 90 * 86400, config={
            "name": tname if t < len(_TEMPLATES) else f"{tname}-{t}",
            "template": 1, "tags": f"{os_tag};template", "cores": 2, "sockets": 1, "memory": "2048",
            "ostype": "l26", "scsihw": "virtio-scsi-single", "boot": "order=scsi0", "agent": "1",
            "serial0": "socket", "vga": "serial0", "cpu": "x86-64-v2-AES",
            "net0": f"virtio={random_mac(rng)},bridge=vmbr0",
            "smbios1": f"uuid={_uuid(rng)}", "vmgenid": _uuid(rng), "meta": f"creation-qemu=9.2.0,ctime={int(now) - 90 * 86400}",
        })
        add_disk(vm, "scsi0", disk_gib * GIB, base=True)
        # A template's cloud-init drive is a base volume too in real clusters, but keeps its name.
        add_cloudinit(vm)
        state.vms[vmid] = vm

    protected_done = False
    for i, vmid in enumerate(_vm_ids(vms)):
        kind = _VM_NAMES[i % len(_VM_NAMES)]
        node = names[i % len(names)]
        cores = rng.choice((1, 2, 2, 4, 4, 8))
        mem_mib = rng.choice((1024, 2048, 4096, 4096, 8192, 16384))
        running = rng.random() < 0.65
        vm = VM(vmid=vmid, node=node, created_at=now - rng.randrange(1, 60) * 86400, config={
            "name": f"{kind}-{i // len(_VM_NAMES) + 1:02d}", "tags": _VM_TAGS[kind], "cores": cores,
            "sockets": 1, "memory": str(mem_mib), "ostype": "l26", "scsihw": "virtio-scsi-single",
            "boot": "order=scsi0", "cpu": "x86-64-v2-AES", "net0": f"virtio={random_mac(rng)},bridge=vmbr0",
            "ipconfig0": "ip=dhcp", "ciuser": "ubuntu", "smbios1": f"uuid={_uuid(rng)}", "vmgenid": _uuid(rng),
            "meta": f"creation-qemu=9.2.0,ctime={int(now) - 30 * 86400}",
        })
        if rng.random() < 0.7:
            vm.config["agent"] = "1"
        add_disk(vm, "scsi0", rng.choice((32, 32, 50, 64, 100)) * GIB)
        add_cloudinit(vm)
        if not protected_done and kind == "db":
            vm.config["protection"] = 1
            protected_done = True
        if running:
            node_obj = node_map[node]
            vm.status = vm.qmpstatus = vm.prev_status = "running"
            vm.pid = node_obj.next_pid = node_obj.next_pid + rng.randrange(5, 400)
            vm.started_at = now - rng.randrange(600, 20 * 86400)
            vm.cpu_load = round(rng.uniform(0.01, 0.35), 4)
            vm.mem_fraction = round(rng.uniform(0.2, 0.8), 3)
        vm.guest_ip = f"10.10.{(vmid // 250) % 250}.{vmid % 250 + 2}"
        state.vms[vmid] = vm
    # containers take the VMIDs after the VMs (one VMID namespace for both, pve-cluster vmlist)
    for i, vmid in enumerate(_vm_ids(vms + containers)[vms:]):
        node = names[i % len(names)]
        ct = Container.generate(vmid, node, running=i % 2 == 0, now=now, mac=random_mac(rng))
        state.volumes[f"{node}/local-lvm:vm-{vmid}-disk-0"] = Volume(f"local-lvm:vm-{vmid}-disk-0", 8 * GIB, vmid,
                                                                     node)
        state.containers[vmid] = ct
    return state


def _vm_ids(count: int) -> list[int]:
    """`count` VMIDs from 100 upwards, stepping over the template range."""
    low = list(range(100, min(100 + count, TEMPLATE_VMIDS.start)))
    rest = count - len(low)
    return low + list(range(TEMPLATE_VMIDS.stop, TEMPLATE_VMIDS.stop + rest))


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:32]}"
