"""Write commands: vm start|shutdown|stop|reboot, vm delete, vm resize, vm set; audit."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..render import Column

if TYPE_CHECKING:
    from .main import Context


def writer(ctx: Context) -> Any:
    import shlex

    from ..writes import Writer

    return Writer(ctx.cluster, command="pvectl " + shlex.join(ctx.argv), dry_run=ctx.args.dry_run)


def deadline(ctx: Context) -> Any:
    """The command's one deadline (Context.deadline: --timeout, and for vm shutdown the stop margin)."""
    return ctx.deadline()


def shutdown_timeout(ctx: Context) -> int | None:
    """`--shutdown-timeout S`, or `--timeout S` given to `vm shutdown`."""
    explicit = getattr(ctx.args, "shutdown_timeout", None)
    if explicit is not None:
        return explicit
    if getattr(ctx.args, "cmd", None) == "shutdown" and ctx.args.timeout is not None:
        return max(1, int(ctx.args.timeout))
    return None


def _interrupt_hint(upids: list[str]) -> None:
    for upid in upids:
        sys.stderr.write(f"pvectl: stopped waiting; the task keeps running on the node. Resume with: "
                         f"pvectl task wait {upid}\n")


OP_COLUMNS = [Column("vmid", "VMID"), Column("name", "NAME"), Column("node", "NODE"), Column("action", "ACTION"),
              Column("outcome", "RESULT"), Column("detail", "DETAIL"), Column("upid", "UPID")]


def power(ctx: Context) -> int:
    """vm start|shutdown|stop|reboot VM...: the tasks are started for every VM first, then waited for."""
    from ..lifecycle import OpResult, _wait
    from ..lifecycle import power as do_power

    action = ctx.args.cmd
    w = writer(ctx)
    dl = deadline(ctx)
    wait = not ctx.args.no_wait
    results: list[OpResult] = []
    opts = dict(timeout=shutdown_timeout(ctx),
                force_stop=getattr(ctx.args, "force_stop", False), yes=ctx.args.yes)
    if len(ctx.args.vms) > 1 and not ctx.args.dry_run:
        # All or nothing: resolve every VM and apply every guard before the first task is started,
        # so a refusal (or a typo) for the last VM does not leave the first ones half done.
        import io

        from ..writes import Writer

        probe = Writer(ctx.cluster, command="", dry_run=True, out=io.StringIO())
        for ref in ctx.args.vms:
            do_power(ctx.cluster, ref, action, writer=probe, wait=False, **opts)
    # Start every VM's task without waiting, then wait for all: N VMs take the time of the slowest.
    for ref in ctx.args.vms:
        results.append(do_power(ctx.cluster, ref, action, writer=w, deadline=dl, wait=False, **opts))
    failed = 0
    waiting = [r.upid for r in results if r.upid]
    try:
        for r in results:
            if r.upid is None or not wait:
                continue
            try:
                res = _wait(ctx.cluster, w, r.upid, dl)
                r.outcome, r.exitstatus, r.warnings = "done", res.exitstatus, res.warnings
            except Exception as exc:
                from ..errors import TaskFailed, TaskTimeout

                if isinstance(exc, TaskTimeout):
                    raise
                if not isinstance(exc, TaskFailed):
                    raise
                failed += 1
                r.outcome, r.exitstatus, r.detail = "failed", exc.exitstatus, exc.exitstatus
            waiting.remove(r.upid)
    except KeyboardInterrupt:
        _interrupt_hint(waiting)
        return 130
    for r in results:
        if r.outcome == "done" and not r.detail:
            r.detail = {"start": "running", "shutdown": "stopped", "stop": "stopped (hard power-off)",
                        "reboot": "rebooted"}[action]
        if r.warnings:
            r.detail += f" ({len(r.warnings)} warnings)"
    if not ctx.args.dry_run:
        ctx.emit([r.to_dict() for r in results], columns=OP_COLUMNS)
    else:
        for r in results:
            if r.outcome == "already":
                print(f"# {action} VM {r.vmid} ({r.name}): {r.detail}, nothing to send")
    return 1 if failed else 0


def _confirm_name(name: str) -> bool:
    if not sys.stdin.isatty():
        return False
    sys.stderr.write(f"This destroys VM '{name}' and its disks. Type its name to confirm: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip() == name


def delete(ctx: Context) -> int:
    from ..lifecycle import delete as do_delete

    a = ctx.args
    try:
        r = do_delete(ctx.cluster, a.vm, writer=writer(ctx), deadline=deadline(ctx), purge=a.purge,
                      destroy_unreferenced_disks=a.destroy_unreferenced_disks, allow_template=a.allow_template,
                      yes=a.yes, wait=not a.no_wait, confirm=_confirm_name)
    except KeyboardInterrupt as exc:
        from .main import interrupted_task_lines

        sys.stderr.write("pvectl: interrupted; check the VM with: pvectl vm status " + str(a.vm) + "\n"
                         + interrupted_task_lines(exc))
        return 130
    if a.dry_run:
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
    from ..lifecycle import resize as do_resize

    a = ctx.args
    r = do_resize(ctx.cluster, a.vm, writer=writer(ctx), deadline=deadline(ctx), cores=a.cores, memory=a.memory,
                  disk=a.disk, size=a.size, allow_running=a.allow_running)
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
    from ..audit import HIDDEN_KEYS
    from ..errors import UsageError, register_secret
    from ..lifecycle import set_config

    a = ctx.args
    assignments: dict[str, str] = {}
    for item in a.assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"'{item}' is not KEY=VALUE (e.g. pvectl vm set web-01 onboot=1 tags='prod;web')")
        if key in HIDDEN_KEYS:
            register_secret(value)   # no error message (schema check, Proxmox's answer) may show it
        assignments[key] = value
    delete = [k for part in (a.delete or []) for k in part.split(",") if k]
    r = set_config(ctx.cluster, a.vm, assignments, writer=writer(ctx), delete=delete)
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
