"""Task commands: task status|wait|log|list (library: `pve.tasks`)."""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False

from ..render import Column

if TYPE_CHECKING:
    from typing import Any

    from .context import Context


def status(ctx: Context) -> int:
    st = ctx.cluster.tasks.get(ctx.args.upid).status()
    if ctx.output == "table":
        from ..render import kv

        kv(st.to_dict())
    else:
        ctx.emit(st.to_dict())
    return 0


def wait(ctx: Context) -> int:
    task = ctx.cluster.tasks.get(ctx.args.upid)
    progress = _progress_printer()
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


def _progress_printer() -> Any:
    if not sys.stderr.isatty():
        return None

    def show(p: Any) -> None:
        if p.fraction is not None:
            bar = int(p.fraction * 30)
            sys.stderr.write(f"\r[{'#' * bar}{'.' * (30 - bar)}] {p.fraction * 100:5.1f}%")
            sys.stderr.flush()
    return show


def log(ctx: Context) -> int:
    a = ctx.args
    if not a.follow:
        task = ctx.cluster.tasks.get(a.upid)
        lines, total = task.log(start=0, limit=0)
        if a.limit:
            lines = lines[-a.limit:]
        if ctx.output == "table":
            for line in lines:
                print(line)
        else:
            ctx.emit({"upid": str(task), "total": total, "lines": lines})
        return 0
    # --follow: print new lines as they arrive until the task stops, or until --timeout
    try:
        ctx.cluster.tasks.follow(a.upid, lambda line: print(line, flush=True), timeout=ctx.deadline())
    except KeyboardInterrupt:
        sys.stderr.write(f"pvectl: stopped following; the task keeps running: pvectl task log {a.upid} --follow\n")
        return 130
    return 0


def list_(ctx: Context) -> int:
    a = ctx.args
    tasks = ctx.cluster.tasks.list(node=a.node, running=a.running, vm=a.vm, limit=a.limit)
    ctx.emit([t.to_dict() for t in tasks],
             columns=[Column("starttime", "STARTED", lambda v: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v))),
                      Column("node", "NODE"), Column("type", "TYPE"), Column("id", "ID"), Column("user", "USER"),
                      Column("status", "STATUS"), Column("upid", "UPID")])
    return 0
