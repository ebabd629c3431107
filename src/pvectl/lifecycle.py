"""VM writes besides provisioning: power, guarded delete, resize, set.

Every operation reads fresh state just before it writes, applies the rules of `guards`, and sends
through a `Writer` (audit log, or curl lines with --dry-run). Operations that Proxmox runs as tasks
are waited for with one deadline, unless `wait=False`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import guards
from .errors import DeadlineExceeded, GuardRefused, NodeUnreachable, PvectlError, TaskFailed, UsageError
from .deadline import bounds_every_request
from .tasks import Deadline, Task
from .units import disk_size_param, parse_memory, parse_prop

if TYPE_CHECKING:
    from collections.abc import Callable

    from .cluster import Cluster
    from .tasks import Progress
    from .vms import VmSummary
    from .writes import Writer

POWER_ACTIONS = ("start", "shutdown", "stop", "reboot")


@dataclass
class OpResult:
    """What one operation did: `outcome` is done | already | started (no wait) | planned (dry run)."""

    vmid: int
    name: str
    node: str
    action: str
    outcome: str
    upid: str | None = None
    exitstatus: str | None = None
    detail: str = ""
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"vmid": self.vmid, "name": self.name, "node": self.node, "action": self.action,
             "outcome": self.outcome, "upid": self.upid, "exitstatus": self.exitstatus, "detail": self.detail}
        if self.warnings:
            d["warnings"] = self.warnings
        d.update(self.extra)
        return d


def _status(cluster: Cluster, vm: VmSummary) -> dict[str, Any]:
    return cluster.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/status/current", node=vm.node)


def _wait(cluster: Cluster, writer: Writer, upid: str, deadline: Deadline,
          on_progress: Callable[[Progress], None] | None = None) -> Any:
    try:
        res = Task(cluster, upid).wait(deadline, on_progress=on_progress)
    except TaskFailed as exc:
        writer.task_done(upid, exc.exitstatus)
        raise
    except KeyboardInterrupt as exc:
        exc.upid = upid  # type: ignore[attr-defined]  # Ctrl-C: the caller names the task that goes on
        raise
    writer.task_done(upid, res.exitstatus)
    return res


# ---------------------------------------------------------------------------------------------- power
@bounds_every_request
def power(cluster: Cluster, ref: str | int, action: str, *, writer: Writer, deadline: Deadline | float | None = None,
          wait: bool = True, timeout: int | None = None, force_stop: bool = False, yes: bool = False) -> OpResult:
    """start | shutdown | stop | reboot. Starting a running VM or stopping a stopped one is reported
    as already in that state and sends nothing (Proxmox would start a task that fails with `VM N
    already running`, or one that does nothing: pve-semantics row 3)."""
    if action not in POWER_ACTIONS:
        raise UsageError(f"unknown power action '{action}'")
    deadline = Deadline.of(deadline)
    vm = cluster.vms.resolve(ref)
    st = _status(cluster, vm)
    status = st.get("status", "unknown")
    qmp = st.get("qmpstatus", status)
    res = OpResult(vm.vmid, vm.name, vm.node, action, "done")
    if st.get("template"):
        raise GuardRefused(f"VM {vm.vmid} ({vm.name}) is a template: it cannot be {action}ed",
                           "clone it first: pvectl vm clone TEMPLATE NAME")
    if action == "start" and status == "running":
        res.outcome, res.detail = "already", f"already running (qmpstatus {qmp})"
        return res
    if action in ("shutdown", "stop") and status == "stopped":
        res.outcome, res.detail = "already", "already stopped"
        return res
    if action == "reboot" and status != "running":
        raise GuardRefused(f"VM {vm.vmid} ({vm.name}) is {status}: only a running VM can be rebooted",
                           f"start it instead: pvectl vm start {vm.vmid}")
    if action == "stop":
        guards.check_stop(vmid=vm.vmid, yes=yes)
    params: dict[str, Any] = {}
    if action == "shutdown":
        if timeout is not None:
            params["timeout"] = timeout
        if force_stop:
            params["forceStop"] = 1
    from .writes import Write

    _run_task(cluster, writer, Write("POST", f"/nodes/{vm.node}/qemu/{vm.vmid}/status/{action}", params, vm.node,
                                     f"{action} VM {vm.vmid} ({vm.name}) on {vm.node}"), res, deadline, wait)
    return res


def _run_task(cluster: Cluster, writer: Writer, write: Any, res: OpResult, deadline: Deadline,
              wait: bool) -> bool:
    """Send a write that starts a task, then wait for it unless `wait` is False. Records the outcome
    in `res`; True when the task ran to its end here."""
    upid = send_task_write(cluster, writer, write)
    if upid is None:
        res.outcome = "planned"
        return False
    res.upid = upid
    if not wait:
        res.outcome = "started"
        return False
    result = _wait(cluster, writer, upid, deadline)
    res.exitstatus, res.warnings = result.exitstatus, result.warnings
    return True


def send_task_write(cluster: Cluster, writer: Writer, write: Any) -> str | None:
    """Send a write that starts a task; its UPID (None in a dry run). When the answer is lost after
    the write was sent, the task it started is looked up in the node's task list before anything is
    said (DESIGN §4: never resend, re-read the state); still unknown, the uncertain error is raised."""
    sent = time.time()
    try:
        return writer.send(write)
    except NodeUnreachable as exc:
        if not exc.uncertain:
            raise
        upid = _started_task(cluster, write, sent)
        if upid is None:
            raise
        return upid


def send_config_write(cluster: Cluster, writer: Writer, write: Any, changes: dict[str, Any],
                      deleted: list[str] | tuple[str, ...] = ()) -> None:
    """Send a config PUT (it starts no task). When its answer is lost after it was sent, the config is
    read again before anything is said (DESIGN §4: never resend, re-read the state): every change is
    there (done), or the config still has the digest the PUT carried (it was not applied: nothing
    changed, and the error says so); otherwise the uncertain error stands."""
    try:
        writer.send(write)
        return
    except NodeUnreachable as exc:
        if not exc.uncertain:
            raise
        lost = exc
    try:
        with cluster.transport.reporting():
            conf = cluster.transport.get(write.path, node=write.node)
    except PvectlError:
        raise lost from None
    if all(str(conf.get(k)) == str(v) for k, v in changes.items()) and not any(k in conf for k in deleted):
        return
    if conf.get("digest") != write.params.get("digest"):
        raise lost
    message = f"{lost.message}; read again: it was not applied, nothing changed"
    if isinstance(lost, DeadlineExceeded):
        raise DeadlineExceeded(message, hint="run the command again with a longer --timeout", method=lost.method,
                               path=lost.path, node=lost.node) from None
    raise NodeUnreachable(message, hint="run the command again", method=lost.method, path=lost.path,
                          node=lost.node) from None


# The task type each task-starting write of this module starts (qemu-server API2/Qemu.pm: the
# `$rpcenv->fork_worker(TYPE, $vmid, ...)` of vm_start, vm_stop, vm_shutdown, vm_reboot, destroy_vm,
# migrate_vm, resize_vm).
_TASK_TYPES = {"start": "qmstart", "stop": "qmstop", "shutdown": "qmshutdown", "reboot": "qmreboot",
               "migrate": "qmigrate", "resize": "resize"}


def _node_tasks_since(cluster: Cluster, node: str, vmid: int | str, kind: str, since: float) -> list[tuple[int, str]]:
    """(start time, UPID) of the `kind` tasks for VM `vmid` in `node`'s task list that began at `since`
    or later (a UPID's start time has a resolution of one second). Read with the reporting grace: it
    says what a write started, also after the deadline."""
    with cluster.transport.reporting():
        tasks = cluster.transport.get(f"/nodes/{node}/tasks", {"vmid": vmid, "typefilter": kind,
                                                               "source": "all", "limit": 20}, node=node)
    return sorted((int(t.get("starttime", 0)), str(t["upid"])) for t in tasks
                  if isinstance(t, dict) and t.get("upid") and t.get("type") == kind
                  and str(t.get("id")) == str(vmid) and int(t.get("starttime", 0)) >= int(since) - 1)


def _started_task(cluster: Cluster, write: Any, sent: float) -> str | None:
    """The UPID of the task an uncertain `write` started: the newest task of its type for its VMID on
    its node since the write was sent, or None when there is none (the write did not arrive) or the
    node cannot tell now."""
    parts = write.path.strip("/").split("/")      # nodes/N/qemu/VMID[/status/ACTION]
    if len(parts) < 4 or parts[2] != "qemu":
        return None
    kind = "qmdestroy" if write.method == "DELETE" and len(parts) == 4 else _TASK_TYPES.get(parts[-1])
    if kind is None:
        return None
    try:
        found = _node_tasks_since(cluster, parts[1], parts[3], kind, sent)
    except PvectlError:
        return None
    return found[-1][1] if found else None


def tasks_started_since(cluster: Cluster, vmid: int, kind: str, since: float) -> list[str]:
    """UPIDs of `kind` tasks for VM `vmid` that began at `since` or later, on any node (after a Ctrl-C
    that may have cut a write's answer short: what did it start?). Nodes that cannot tell are skipped."""
    found: list[tuple[int, str]] = []
    for node in cluster.config.nodes:
        try:
            found += _node_tasks_since(cluster, node.name, vmid, kind, since)
        except PvectlError:
            continue
    return [upid for _, upid in sorted(found)]


# --------------------------------------------------------------------------------------------- delete
@bounds_every_request
def delete(cluster: Cluster, ref: str | int, *, writer: Writer, deadline: Deadline | float | None = None,
           purge: bool = True, destroy_unreferenced_disks: bool = True, allow_template: bool = False,
           yes: bool = False, wait: bool = True, confirm: Callable[[str], bool] | None = None) -> OpResult:
    """Destroy a VM after the guards of DESIGN §5, checked on fresh state. `confirm(name)` is asked
    when `yes` is False (the CLI types the VM name on a terminal)."""
    deadline = Deadline.of(deadline)
    vm = cluster.vms.resolve(ref)
    st = _status(cluster, vm)
    config = cluster.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/config", {"current": 1}, node=vm.node)
    if st.get("lock") and "lock" not in config:
        config["lock"] = st["lock"]
    ranges = cluster.config.vmid_ranges
    confirmed = yes or (confirm is not None and confirm(vm.name))
    guards.check_delete(vmid=vm.vmid, name=vm.name, status=st.get("status", "unknown"), config=config,
                        vm_range=ranges.vms, template_range=ranges.templates, allow_template=allow_template,
                        yes=confirmed)
    from .writes import Write

    disks = []
    for key, value in sorted(config.items()):
        if key.rstrip("0123456789") in ("ide", "scsi", "virtio", "sata", "efidisk", "tpmstate", "unused"):
            volid, opts = parse_prop(str(value))
            if volid and ":" in volid and (opts.get("media") != "cdrom" or "cloudinit" in volid):
                disks.append(volid)
    params = {}
    if purge:
        params["purge"] = 1
    if destroy_unreferenced_disks:
        params["destroy-unreferenced-disks"] = 1
    res = OpResult(vm.vmid, vm.name, vm.node, "delete", "done", extra={"disks": disks})
    write = Write("DELETE", f"/nodes/{vm.node}/qemu/{vm.vmid}", params, vm.node,
                  f"delete VM {vm.vmid} ({vm.name}) on {vm.node} and its disks: {', '.join(disks) or 'none'}")
    if _run_task(cluster, writer, write, res, deadline, wait):
        lines, _ = Task(cluster, res.upid or "").log(start=0, limit=0)
        res.extra["log"] = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("TASK ")]
    return res


# ------------------------------------------------------------------------------------ resize and set
def _pending_keys(cluster: Cluster, vm: VmSummary) -> set[str]:
    items = cluster.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/pending", node=vm.node)
    return {i["key"] for i in items if "pending" in i or i.get("delete")}


@bounds_every_request
def resize(cluster: Cluster, ref: str | int, *, writer: Writer, deadline: Deadline | float | None = None,
           cores: int | None = None, memory: str | int | None = None, disk: str | None = None,
           size: str | None = None, allow_running: bool = False) -> OpResult:
    """CPU/memory (config PUT with digest) and disk growth (resize task). A shrink is refused before
    any request; CPU/memory on a running VM needs `allow_running` and the result says whether each
    change was hot-plugged or stays pending until the next start (pve-semantics §7.4)."""
    deadline = Deadline.of(deadline)
    if cores is None and memory is None and disk is None:
        raise UsageError("nothing to resize: give --cores, --memory and/or --disk DISK --size SIZE")
    if (disk is None) != (size is None):
        raise UsageError("--disk and --size go together (e.g. --disk scsi0 --size +10G)")
    if cores is not None and not 1 <= cores <= 1024:
        raise UsageError(f"--cores {cores} is out of range (1-1024)")
    mem_mib = parse_memory(memory) if memory is not None else None
    vm = cluster.vms.resolve(ref)
    st = _status(cluster, vm)
    running = st.get("status") == "running"
    config = cluster.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/config", node=vm.node)
    from .writes import Write

    res = OpResult(vm.vmid, vm.name, vm.node, "resize", "done")
    new_size = None
    if disk is not None:
        current = None
        if disk in config:
            _, opts = parse_prop(str(config[disk]))
            if opts.get("media") == "cdrom":
                raise GuardRefused(f"{disk} of VM {vm.vmid} is a CD-ROM drive; it cannot be resized")
            current = guards.parse_disk_size(opts["size"])[1] if "size" in opts else None
        new_size = guards.check_disk_resize(vmid=vm.vmid, disk=disk, current=current, size=size or "")
        res.extra["disk"] = {"disk": disk, "from": current, "to": new_size}
    changes: dict[str, Any] = {}
    if cores is not None:
        changes["cores"] = cores
    if mem_mib is not None:
        changes["memory"] = str(mem_mib)
    if changes:
        guards.check_running_change(vmid=vm.vmid, running=running, allow_running=allow_running, keys=list(changes))
        params = dict(changes, digest=config["digest"])
        send_config_write(cluster, writer, Write(
            "PUT", f"/nodes/{vm.node}/qemu/{vm.vmid}/config", params, vm.node,
            f"set {', '.join(f'{k}={v}' for k, v in changes.items())} on VM {vm.vmid} ({vm.name})"), changes)
        if not writer.dry_run:
            pending = _pending_keys(cluster, vm) if running else set()
            res.extra["applied"] = {k: ("pending until the next start" if k in pending else "applied")
                                    for k in changes}
    if disk is not None and new_size is not None and new_size != res.extra["disk"]["from"]:
        # `+N` is sent as given; an absolute size as bytes-exact G/M when possible
        upid = send_task_write(cluster, writer, Write(
            "PUT", f"/nodes/{vm.node}/qemu/{vm.vmid}/resize", {"disk": disk, "size": disk_size_param(size)},
            vm.node, f"grow {disk} of VM {vm.vmid} ({vm.name}) to {new_size / 1024**3:.1f} GiB"))
        if upid is not None:
            res.upid = upid
            result = _wait(cluster, writer, upid, deadline)
            res.exitstatus = result.exitstatus
    if writer.dry_run:
        res.outcome = "planned"
    return res


def set_config(cluster: Cluster, ref: str | int, assignments: dict[str, str], *, writer: Writer,
               delete: list[str] | None = None, allow_running: bool = True) -> OpResult:
    """Any other config key, validated against the official schema before sending, and sent with the
    config `digest` so a concurrent edit is detected (500 `checksum mismatch`), not overwritten."""
    vm = cluster.vms.resolve(ref)
    params: dict[str, Any] = dict(assignments)
    if delete:
        params["delete"] = ",".join(delete)
    if not params:
        raise UsageError("nothing to set: give key=value pairs and/or --delete KEY")
    validate_config_params(vm, params)
    config = cluster.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/config", node=vm.node)
    st = _status(cluster, vm)
    running = st.get("status") == "running"
    from .writes import Write

    params["digest"] = config["digest"]
    send_config_write(cluster, writer, Write(
        "PUT", f"/nodes/{vm.node}/qemu/{vm.vmid}/config", params, vm.node,
        f"set {', '.join(f'{k}={v}' for k, v in assignments.items())}"
        f"{' delete ' + ','.join(delete) if delete else ''} on VM {vm.vmid} ({vm.name})"), assignments, delete or [])
    res = OpResult(vm.vmid, vm.name, vm.node, "set", "planned" if writer.dry_run else "done")
    if not writer.dry_run:
        pending = _pending_keys(cluster, vm) if running else set()
        res.extra["applied"] = {k: ("pending until the next start" if k in pending else "applied")
                                for k in [*assignments, *(delete or [])]}
    return res


def validate_config_params(vm: VmSummary, params: dict[str, Any]) -> None:
    """Check keys and values against the official schema (PUT /nodes/{node}/qemu/{vmid}/config)
    before anything is sent; errors name each field."""
    from .sim.schema import ParamError, Schema

    schema = Schema.load()
    endpoint = schema.endpoint("PUT", "/nodes/{node}/qemu/{vmid}/config")
    try:
        schema.validate(endpoint, {"node": vm.node, "vmid": str(vm.vmid), **params})
    except ParamError as exc:
        detail = "; ".join(f"{k}: {v.strip()}" for k, v in exc.errors.items())
        raise UsageError(f"invalid config for VM {vm.vmid}: {detail}",
                         hint="nothing was sent; see the key's format in the Proxmox API viewer (qemu config)") from None
