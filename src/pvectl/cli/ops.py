"""Write commands: vm start|shutdown|stop|reboot, vm delete, vm resize, vm set; audit."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..render import Column

if TYPE_CHECKING:
    from .context import Context


def _interrupt_hint(upids: list[str]) -> None:
    for upid in upids:
        sys.stderr.write(f"pvectl: stopped waiting; the task keeps running on the node. Resume with: "
                         f"pvectl task wait {upid}\n")


OP_COLUMNS = [Column("vmid", "VMID"), Column("name", "NAME"), Column("node", "NODE"), Column("action", "ACTION"),
              Column("outcome", "RESULT"), Column("detail", "DETAIL"), Column("upid", "UPID")]


def power(ctx: Context) -> int:
    """vm start|shutdown|stop|reboot VM...: every guard first, then every task started, then all waited for."""
    from ..tasks.task import TasksInterrupted

    a = ctx.args
    try:
        results = ctx.cluster.vms.power_many(a.cmd, a.vms, wait=not a.no_wait, yes=a.yes, timeout=a.timeout,
                                             guest_timeout=getattr(a, "shutdown_timeout", None),
                                             force_stop=getattr(a, "force_stop", False))
    except TasksInterrupted as exc:
        _interrupt_hint(exc.upids)
        return 130
    if not a.dry_run:
        ctx.emit([r.to_dict() for r in results], columns=OP_COLUMNS)
    else:
        for r in results:
            if r.outcome == "already":
                print(f"# {r.action} VM {r.vmid} ({r.name}): {r.detail}, nothing to send")
    return 1 if any(r.outcome == "failed" for r in results) else 0


def _confirm_name(name: str) -> bool:
    if not sys.stdin.isatty():
        return False
    sys.stderr.write(f"This destroys VM '{name}' and its disks. Type its name to confirm: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip() == name


def delete(ctx: Context) -> int:
    from ..tasks.task import Task

    a = ctx.args
    try:
        done = ctx.cluster.vms.delete(a.vm, yes=a.yes, confirm=_confirm_name, allow_template=a.allow_template,
                                      purge=a.purge, destroy_unreferenced_disks=a.destroy_unreferenced_disks,
                                      wait=not a.no_wait, timeout=a.timeout)
    except KeyboardInterrupt as exc:
        from .main import interrupted_task_lines

        sys.stderr.write("pvectl: interrupted; check the VM with: pvectl vm status " + str(a.vm) + "\n"
                         + interrupted_task_lines(exc))
        return 130
    r = done.preview if isinstance(done, Task) else done
    if a.dry_run or r is None:
        return 0
    if ctx.output == "table":
        word = {"done": "deleted", "started": "deletion started"}.get(r.outcome, r.outcome)
        print(f"VM {r.vmid} ({r.name}) on {r.node}: {word}")
        for disk in r.extra.get("disks", []):
            print(f"  disk {disk}")
        for line in r.extra.get("log", []):
            print(f"  {line}")
        if r.upid:
            print(f"  task {r.upid}")
    else:
        ctx.emit(r.to_dict())
    return 0


def resize(ctx: Context) -> int:
    a = ctx.args
    r = ctx.cluster.vms.resize(a.vm, cores=a.cores, memory=a.memory, disk=a.disk, size=a.size,
                               allow_running=a.allow_running, timeout=a.timeout)
    if a.dry_run:
        return 0
    if _print_changes(ctx, r):
        d = r.extra.get("disk")
        if d:
            gib = 1024**3
            if d["from"] == d["to"]:
                print(f"  {d['disk']}: already {d['to'] / gib:.1f} GiB")
            else:
                print(f"  {d['disk']}: {d['from'] / gib:.1f} GiB -> {d['to'] / gib:.1f} GiB (the guest must grow its "
                      "filesystem)")
    return 0


def _print_changes(ctx: Context, r: Any) -> bool:
    """Table mode: each changed key and whether it was applied or stays pending; other modes: the
    result object. True when the caller should add its own table lines."""
    if ctx.output != "table":
        ctx.emit(r.to_dict())
        return False
    print(f"VM {r.vmid} ({r.name}) on {r.node}:")
    for key, how in r.extra.get("applied", {}).items():
        print(f"  {key}: {how}")
    return True


def set_(ctx: Context) -> int:
    from ..errors import UsageError

    a = ctx.args
    assignments: dict[str, str] = {}
    for item in a.assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"'{item}' is not KEY=VALUE (e.g. pvectl vm set web-01 onboot=1 tags='prod;web')")
        assignments[key] = value
    delete = [k for part in (a.delete or []) for k in part.split(",") if k]
    r = ctx.cluster.vms.set(a.vm, assignments, delete=delete, timeout=a.timeout)
    if not a.dry_run:
        _print_changes(ctx, r)
    return 0


def audit(ctx: Context) -> int:
    from .. import audit as audit_log

    entries = audit_log.read(ctx.args.limit)
    if ctx.output == "table":
        print(f"# {audit_log.audit_path()}")
    ctx.emit(entries, columns=[Column("time", "TIME"), Column("token_id", "TOKEN"), Column("event", "EVENT"),
                               Column("method", "METHOD"), Column("path", "PATH"), Column("result", "RESULT"),
                               Column("upid", "UPID")])
    return 0
