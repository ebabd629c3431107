"""Write tools (`--allow-writes`): provision, configure, start, shut down, reboot, resize. Each calls one
library method; the library reads fresh state, applies its guards and audits the write (`via: mcp`).
Operations that run as Proxmox tasks are started with `wait=False` and waited for here, so the task
log drives MCP progress and the deadline returns the UPID instead of failing."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from . import registry
from .models import OperationOut, Open
from .runtime import Runtime, event_sender
from .tools_read import ClusterArg, VmArg

Wait = Annotated[float, Field(gt=0, le=600, description="seconds to wait for the task; then the answer is "
                                                        "outcome `running` with the UPID and how to resume")]


def register(srv: MCPServer, rt: Runtime, enabled: set[str]) -> None:
    async def vm_provision(template: Annotated[str | int, Field(description="template VMID, name or tag")],
                           name: Annotated[str, Field(description="name of the new VM (with count: the prefix)")],
                           count: Annotated[int | None, Field(ge=1, le=50)] = None,
                           node: Annotated[str | None, Field(description="target node, or `auto`")] = None,
                           cores: Annotated[int | None, Field(ge=1)] = None,
                           memory: Annotated[str | None, Field(description="MiB (4096) or with a unit (4G)")] = None,
                           disk_size: Annotated[str | None, Field(description="grow the boot disk to this (20G)")] = None,
                           ip: Annotated[str | None, Field(description="`dhcp` or CIDR (10.0.0.5/24)")] = None,
                           gw: str | None = None,
                           start: bool = True, wait_ip: bool = False,
                           cluster: ClusterArg = None, ctx: Context | None = None) -> Open:
        """Make VMs from a template: clone, cloud-init, grow the disk, start, wait for the IP. Never
        makes a second VM with a name it is asked to make."""
        pve = rt.cluster(cluster).with_options(on_event=event_sender(ctx))
        made = await rt.call(pve.vms.clone, template, name, count=count, node=node, cores=cores, memory=memory,
                             disk_size=disk_size, ip=ip, gw=gw, start=start, wait_ip=wait_ip)
        if isinstance(made, list):
            return Open.model_validate({"vms": [m.to_dict() for m in made]})
        return Open.model_validate(made.to_dict())

    async def vm_set_config(vm: VmArg,
                            values: Annotated[dict[str, str], Field(description="config keys and values "
                                                                                "(checked against the API schema)")],
                            delete: Annotated[list[str] | None, Field(description="keys to remove")] = None,
                            cluster: ClusterArg = None) -> OperationOut:
        """Set or remove VM config keys, sent with the config digest so a concurrent change is refused."""
        pve = rt.cluster(cluster)
        res = await rt.call(pve.vms.set, vm, values, delete=delete)
        return OperationOut.model_validate(res.to_dict())

    async def vm_start(vm: VmArg, timeout: Wait = 120.0, cluster: ClusterArg = None,
                       ctx: Context | None = None) -> OperationOut:
        """Start a VM (already running: nothing to do)."""
        pve = rt.cluster(cluster)
        started = await rt.call(pve.vms.start, vm, wait=False)
        return OperationOut.model_validate(await rt.finish(ctx, started, timeout))

    async def vm_shutdown(vm: VmArg,
                          guest_timeout: Annotated[int | None, Field(ge=0, description="seconds the guest gets "
                                                                                      "(Proxmox default 60)")] = None,
                          force_stop: Annotated[bool, Field(description="hard-stop if it does not power off "
                                                                        "in time")] = False,
                          timeout: Wait = 180.0, cluster: ClusterArg = None,
                          ctx: Context | None = None) -> OperationOut:
        """Shut a VM down gracefully (ACPI or guest agent); already stopped: nothing to do."""
        pve = rt.cluster(cluster)
        started = await rt.call(pve.vms.shutdown, vm, guest_timeout=guest_timeout, force_stop=force_stop, wait=False)
        return OperationOut.model_validate(await rt.finish(ctx, started, timeout))

    async def vm_reboot(vm: VmArg, timeout: Wait = 180.0, cluster: ClusterArg = None,
                        ctx: Context | None = None) -> OperationOut:
        """Reboot a running VM (applies pending changes)."""
        pve = rt.cluster(cluster)
        started = await rt.call(pve.vms.reboot, vm, wait=False)
        return OperationOut.model_validate(await rt.finish(ctx, started, timeout))

    async def vm_resize(vm: VmArg, cores: Annotated[int | None, Field(ge=1)] = None,
                        memory: Annotated[str | None, Field(description="MiB (4096) or with a unit (4G)")] = None,
                        disk: Annotated[str | None, Field(description="disk to grow, e.g. scsi0")] = None,
                        size: Annotated[str | None, Field(description="+10G to grow by 10 GiB, or 50G absolute")] = None,
                        allow_running: Annotated[bool, Field(description="change CPU/memory of a running VM "
                                                                         "(hot-plugged or pending)")] = False,
                        cluster: ClusterArg = None) -> OperationOut:
        """More CPU, memory or disk. Disks only grow."""
        pve = rt.cluster(cluster)
        res = await rt.call(pve.vms.resize, vm, cores=cores, memory=memory, disk=disk, size=size,
                            allow_running=allow_running)
        return OperationOut.model_validate(res.to_dict())

    for fn in (vm_provision, vm_set_config, vm_start, vm_shutdown, vm_reboot, vm_resize):
        registry.add(srv, enabled, fn)
