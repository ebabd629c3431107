"""Task commands: task status|wait|log|list."""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False

from ..render import Column

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..tasks import Progress, Task
    from .context import Context


def _task(ctx: Context) -> Task:
    from ..errors import UsageError
    from ..upid import Upid

    try:
        upid = Upid.parse(ctx.args.upid)
    except ValueError as exc:
        raise UsageError(f"{exc}", hint="a UPID looks like UPID:pve1:0000A1B2:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:") from None
    from .reads import require_node

    require_node(ctx, upid.node)
    task: Task = ctx.cluster.tasks.get(upid)
    return task


def status(ctx: Context) -> int:
    st = _task(ctx).status()
    if ctx.output == "table":
        from ..render import kv

        kv(st.to_dict())
    else:
        ctx.emit(st.to_dict())
    return 0


def wait(ctx: Context) -> int:
    task = _task(ctx)
    progress = _progress_printer(ctx)
    try:
        res = task.wait(ctx.deadline(), on_progress=progress)
    except KeyboardInterrupt:
        sys.stderr.write(f"pvectl: stopped waiting; the task keeps running. Resume with: pvectl task wait {task}\n")
        return 130
    finally:
        if progress is not None:
            sys.stderr.write("\n")
    if ctx.output == "table":
        print(f"{task}: {res.exitstatus}")
        for w in res.warnings:
            print(f"  {w}")
    else:
        ctx.emit(res.to_dict())
    return 0


def _progress_printer(ctx: Context) -> Callable[[Progress], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(p: Progress) -> None:
        if p.fraction is not None:
            bar = int(p.fraction * 30)
            sys.stderr.write(f"\r[{'#' * bar}{'.' * (30 - bar)}] {p.fraction * 100:5.1f}%")
            sys.stderr.flush()
    return show


def log(ctx: Context) -> int:
    task = _task(ctx)
    limit = ctx.args.limit
    if not ctx.args.follow:
        lines, total = task.log(start=0, limit=0)
        if limit:
            lines = lines[-limit:]
        if ctx.output == "table":
            for line in lines:
                print(line)
        else:
            ctx.emit({"upid": str(task), "total": total, "lines": lines})
        return 0
    # --follow: print new lines as they arrive until the task stops, or until --timeout
    from ..errors import DeadlineExceeded, TaskTimeout

    deadline = ctx.deadline()
    still_running = TaskTimeout(str(task), node=task.node,
                                message=f"task {task.upid.type} on {task.node} is still running at the deadline")
    delay = 0.1
    try:
        while True:
            for line in task.read_new_lines():
                print(line, flush=True)
                delay = 0.1
            if not task.status().running:
                for line in task.read_new_lines():
                    print(line, flush=True)
                return 0
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise still_running
            time.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 1.5, 2.0)
    except DeadlineExceeded:
        raise still_running from None      # the deadline ended a read: the task was last seen running
    except KeyboardInterrupt:
        sys.stderr.write(f"pvectl: stopped following; the task keeps running: pvectl task log {task} --follow\n")
        return 130


def list_(ctx: Context) -> int:
    a = ctx.args
    if a.node:
        from .reads import require_node

        require_node(ctx, a.node)
    vmid = None
    if a.vm:
        vmid = ctx.cluster.vms.resolve(a.vm).vmid
    tasks = ctx.cluster.tasks.list(node=a.node, running=a.running, vmid=vmid, limit=a.limit)
    ctx.emit([t.to_dict() for t in tasks],
             columns=[Column("starttime", "STARTED", lambda v: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v))),
                      Column("node", "NODE"), Column("type", "TYPE"), Column("id", "ID"), Column("user", "USER"),
                      Column("status", "STATUS"), Column("upid", "UPID")])
    return 0
