"""Provisioning workflows: allocate a VMID, place, clone from a template, configure, grow, start, wait for IP.

    from pvectl.provision import CloneSpec, provision
    from pvectl.tasks import Deadline
    from pvectl.writes import Writer

    with pvectl.Cluster.from_config() as pve:
        res = provision(pve, CloneSpec("ubuntu-24.04-cloud", "web-1", cores=4, memory="4G", start=True,
                                       wait_ip=True),
                        deadline=Deadline(600), writer=Writer(pve, "provision web-1"))
        print(res.vmid, res.node, res.ip)

One workflow per VM (seed "VM Creation from Template (Clone)" + "Post-clone configuration"):

1. plan (reads only): resolve the template (VMID, name or tag), wait for clones in flight whose name is
   not known yet, refuse a name already used by a VM that was not cloned from that template, read the
   template's config, choose node and storage, allocate a VMID from `vmid_ranges.vms` using
   `/cluster/resources` (`/cluster/nextid` reserves nothing: pve-semantics §10.3); a bulk run is
   refused up front when the range has too few free VMIDs.
2. clone (clone.py): right before each POST the name is checked again (names.py: one VM per name
   across retries, processes and machines), and no POST goes out after the deadline or Ctrl-C.
   `POST /nodes/{template node}/qemu/{template}/clone` (`full=1` unless `linked`), with a `description`
   line that marks the VM as made from this template by this request (what makes re-runs idempotent
   and tells an own clone from another one). `already exists` (SYNC 500 on the same node, `File exists`
   in the task for another node: §4.2) takes the next free VMID; a lock timeout (`can't lock file ...
   got timeout`: §3.3/§3.4) is retried with a backoff. After an uncertain write the state is re-read
   and an own clone in flight is adopted with its UPID. After the clone, the lowest VMID that carries
   the name keeps it; a run that lost removes its own VM and reports the other.
3. configure (steps.py): ONE `PUT /config` (cores, memory, net0, ipconfig0, ciuser, sshkeys, tags, and
   `; configured` on the marker line) with the digest read after the clone.
4. grow the boot disk (`PUT /resize`, a task since qemu-server 8.0.2: §8), start, and poll the guest
   agent for an address (§13).

A re-run finds the VM by name and marker and finishes what an earlier run left (configure, grow, start,
IP); what differs on a finished VM is reported in `differs` and not changed. A failure after the VM
exists reports it (VMID, node, state, the steps done) with the hint to delete or finish it;
`cleanup_on_failure` deletes it. A failed clone task leaves nothing behind (Proxmox frees the volumes
and unlinks the config: §4.4), which is verified by a re-read. Ctrl-C raises ProvisionInterrupted with
every VM made or in flight.

Every step reports `ProvisionEvent`s to `on_event` (CLI progress, MCP notifications).
"""

from __future__ import annotations

from ..units import parse_memory
from .cloudinit import (
    boot_disk,
    encode_sshkeys,
    ipconfig_value,
    net_bridge,
    net_with_bridge,
    pick_ip,
    read_ssh_keys,
)
from .plan import MARKER, _check_spec, bulk_names, next_free_index, specs_for_count
from .run import provision, provision_many
from .types import (
    CloneSpec,
    EventCallback,
    ProvisionEvent,
    ProvisionFailed,
    ProvisionInterrupted,
    ProvisionResult,
)
from .vmids import VmidAllocator, allocator_for

__all__ = [
    "MARKER", "CloneSpec", "EventCallback", "ProvisionEvent", "ProvisionFailed", "ProvisionInterrupted", "ProvisionResult", "VmidAllocator",
    "_check_spec", "allocator_for", "boot_disk", "bulk_names", "encode_sshkeys", "ipconfig_value", "net_bridge",
    "net_with_bridge", "next_free_index", "parse_memory", "pick_ip", "provision", "provision_many", "read_ssh_keys",
    "specs_for_count",
]
