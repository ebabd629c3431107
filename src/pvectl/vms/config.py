"""Config changes: `resize` (CPU, memory, disk growth) and `set` (any other key).

Both read the config fresh and send it back with its `digest`, so a concurrent edit is detected
(500 `checksum mismatch`), not overwritten. On a running VM the result says, per key, whether the
change was hot-plugged or stays pending until the next start (pve-semantics §7.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import GuardRefused, UsageError
from ..guards import check_disk_resize, check_running_change
from ..results import OpResult
from ..taskwrites import send_config_write, send_task_write, wait_task
from ..units import disk_size_param, parse_disk_size, parse_memory, parse_prop
from .reads import resolve

if TYPE_CHECKING:
    from ..deadline import Deadline
    from ..session import Session
    from .reads import VmSummary

GIB = 1024**3


def _pending_keys(session: Session, vm: VmSummary) -> set[str]:
    items: list[dict[str, Any]] = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/pending", node=vm.node)
    return {i["key"] for i in items if "pending" in i or i.get("delete")}


def _applied(session: Session, vm: VmSummary, running: bool, keys: list[str]) -> dict[str, str]:
    pending = _pending_keys(session, vm) if running else set()
    return {k: ("pending until the next start" if k in pending else "applied") for k in keys}


def _disk_size(config: dict[str, Any], vm: VmSummary, disk: str) -> int | None:
    """The disk's current size in bytes (None: the VM has no such disk, or it has no size)."""
    if disk not in config:
        return None
    _, opts = parse_prop(str(config[disk]))
    if opts.get("media") == "cdrom":
        raise GuardRefused(f"{disk} of VM {vm.vmid} is a CD-ROM drive; it cannot be resized")
    return parse_disk_size(opts["size"])[1] if "size" in opts else None


def resize(session: Session, ref: str | int, *, cores: int | None = None, memory: str | int | None = None,
           disk: str | None = None, size: str | None = None, allow_running: bool = False,
           timeout: Deadline | float | None = None) -> OpResult:
    """CPU/memory (config PUT with digest) and disk growth (a resize task, waited for). A shrink is
    refused before any request; CPU/memory on a running VM needs `allow_running`."""
    if cores is None and memory is None and disk is None:
        raise UsageError("nothing to resize: give --cores, --memory and/or --disk DISK --size SIZE")
    if (disk is None) != (size is None):
        raise UsageError("--disk and --size go together (e.g. --disk scsi0 --size +10G)")
    if cores is not None and not 1 <= cores <= 1024:
        raise UsageError(f"--cores {cores} is out of range (1-1024)")
    mem_mib = parse_memory(memory) if memory is not None else None
    deadline = session.deadline(timeout)
    writer = session.writer()
    with session.transport.bounded(deadline):
        vm = resolve(session, ref)
        st: dict[str, Any] = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/status/current", node=vm.node)
        running = st.get("status") == "running"
        config: dict[str, Any] = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/config", node=vm.node)
        from ..writes import Write

        res = OpResult(vm.vmid, vm.name, vm.node, "resize", "done")
        new_size = current = None
        if disk is not None:
            current = _disk_size(config, vm, disk)
            new_size = check_disk_resize(vmid=vm.vmid, disk=disk, current=current, size=size or "")
            res.extra["disk"] = {"disk": disk, "from": current, "to": new_size}
        changes: dict[str, Any] = {}
        if cores is not None:
            changes["cores"] = cores
        if mem_mib is not None:
            changes["memory"] = str(mem_mib)
        if changes:
            check_running_change(vmid=vm.vmid, running=running, allow_running=allow_running,
                                        keys=list(changes))
            params = dict(changes, digest=config["digest"])
            send_config_write(session, writer, Write(
                "PUT", f"/nodes/{vm.node}/qemu/{vm.vmid}/config", params, vm.node,
                f"set {', '.join(f'{k}={v}' for k, v in changes.items())} on VM {vm.vmid} ({vm.name})"), changes)
            if not writer.dry_run:
                res.extra["applied"] = _applied(session, vm, running, list(changes))
        if disk is not None and new_size is not None and new_size != current:
            # `+N` is sent as given; an absolute size as bytes-exact G/M when possible
            upid = send_task_write(session, writer, Write("PUT", f"/nodes/{vm.node}/qemu/{vm.vmid}/resize",
                                     {"disk": disk, "size": disk_size_param(size or "")}, vm.node,
                                     f"grow {disk} of VM {vm.vmid} ({vm.name}) to {new_size / GIB:.1f} GiB"))
            if upid is not None:
                res.upid = upid
                res.exitstatus = wait_task(session, writer, upid, deadline).exitstatus
        if writer.dry_run:
            res.plan(writer)
        return res


def set_config(session: Session, ref: str | int, values: dict[str, str], *, delete: list[str] | None = None,
               timeout: Deadline | float | None = None) -> OpResult:
    """Any other config key, validated against the official schema before anything is sent."""
    from ..audit import HIDDEN_KEYS
    from ..errors import register_secret

    for key, value in values.items():
        if key in HIDDEN_KEYS:
            register_secret(value)   # no error message (schema check, Proxmox's answer) may show it
    deadline = session.deadline(timeout)
    writer = session.writer()
    with session.transport.bounded(deadline):
        vm = resolve(session, ref)
        params: dict[str, Any] = dict(values)
        if delete:
            params["delete"] = ",".join(delete)
        if not params:
            raise UsageError("nothing to set: give key=value pairs and/or --delete KEY")
        validate_config_params(vm, params)
        config: dict[str, Any] = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/config", node=vm.node)
        st: dict[str, Any] = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/status/current", node=vm.node)
        running = st.get("status") == "running"
        from ..writes import Write

        params["digest"] = config["digest"]
        send_config_write(session, writer, Write(
            "PUT", f"/nodes/{vm.node}/qemu/{vm.vmid}/config", params, vm.node,
            f"set {', '.join(f'{k}={v}' for k, v in values.items())}"
            f"{' delete ' + ','.join(delete) if delete else ''} on VM {vm.vmid} ({vm.name})"), values, delete or [])
        res = OpResult(vm.vmid, vm.name, vm.node, "set", "done")
        if writer.dry_run:
            res.plan(writer)
        else:
            res.extra["applied"] = _applied(session, vm, running, [*values, *(delete or [])])
        return res


def validate_config_params(vm: VmSummary, params: dict[str, Any]) -> None:
    """Check keys and values against the official schema (PUT /nodes/{node}/qemu/{vmid}/config)
    before anything is sent; errors name each field."""
    from ..schema import ParamError, Schema

    schema = Schema.load()
    endpoint = schema.endpoint("PUT", "/nodes/{node}/qemu/{vmid}/config")
    try:
        schema.validate(endpoint, {"node": vm.node, "vmid": str(vm.vmid), **params})
    except ParamError as exc:
        # JSONSchema.pm's property-string errors span lines ("invalid format - format error\n
        # net0.model: property is missing ..."): one line per error, joined, so the message is one line
        detail = "; ".join(f"{k}: " + "; ".join(ln.strip() for ln in v.splitlines() if ln.strip())
                           for k, v in exc.errors.items())
        raise UsageError(f"invalid config for VM {vm.vmid}: {detail}",
                         hint="nothing was sent; see the key's format in the Proxmox API viewer (qemu config)") from None
