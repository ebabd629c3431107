"""`pvectl vm migrate VM TARGET` (library: pvectl.migration).

Exit codes: 0 migrated (or `--check`: allowed), 1 the migration task failed (the log tail is shown),
2 bad arguments, 3 refused by a check (`--check`: the verdict is refused), 4 still running at the
deadline, 5 no node reachable. Progress goes to stderr: a bar on a terminal, otherwise a line per 10 %.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self, TextIO

    from ..migration import MigrationCheck, MigrationResult
    from ..tasks import Progress
    from .main import Context


def add_arguments(p: Any) -> None:
    p.add_argument("vm", metavar="VM", help="VMID or unique name")
    p.add_argument("target", metavar="TARGET", help="the node to move it to, or `auto`: the node that passes "
                   "every check with the most free memory after the move")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--online", dest="online", action="store_const", const=True, default=None,
                      help="live migration (the default for a running VM)")
    mode.add_argument("--offline", dest="online", action="store_const", const=False,
                      help="offline migration (the default for a stopped VM; a running VM is refused)")
    p.add_argument("--with-local-disks", action="store_true",
                   help="live-migrate local disks too (mirrored while the VM runs)")
    p.add_argument("--bwlimit", metavar="KIB", help="bandwidth limit in KiB/s (Proxmox's unit), or 50M, 1G per second")
    p.add_argument("--check", action="store_true",
                   help="print the verdict of every pre-check and change nothing (exit 0 allowed, 3 refused)")


class _Display:
    """Migration progress on stderr: a rich bar on a terminal, else one line per 10 %."""

    def __init__(self, label: str, out: TextIO | None = None) -> None:
        self.label = label
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._last: dict[str, int] = {}

    def __enter__(self) -> Self:
        if self.tty:
            from ..render import progress_bars

            self._bar = progress_bars(self.out, transient=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, p: Progress) -> None:
        if p.fraction is None:
            return
        what = "memory" if p.phase == "migrate" else "disk"
        if p.line.partition("drive-")[2]:
            # drive-mirror lines name the drive: `drive-scsi0: transferred ...` (pve-semantics §2.2)
            what = "disk " + p.line.partition("drive-")[2].partition(":")[0]
        if self._bar is not None:
            desc = f"{self.label}: {what}"
            if self._task is None:
                self._task = self._bar.add_task(desc, total=100)
            self._bar.update(self._task, description=desc, completed=p.fraction * 100)
            return
        decile = int(p.fraction * 10)
        if self._last.get(what, -1) >= decile:
            return
        self._last[what] = decile
        self.out.write(f"pvectl: {self.label}: {what} {p.fraction * 100:.0f}%\n")
        self.out.flush()


def _interrupted(ctx: Context, started: float, known: str | None) -> int:
    """Ctrl-C: the migration this command started (the interrupt may have cut the POST's answer short)
    keeps running on the node; name its UPID (known when the wait for it was interrupted, else looked
    up in the nodes' task lists) and how to follow it, exit 130."""
    a = ctx.args
    upids: list[str] = [known] if known else []
    try:
        from ..lifecycle import tasks_started_since

        if not upids:
            upids = tasks_started_since(ctx.cluster, ctx.cluster.vms.resolve(a.vm).vmid, "qmigrate", started)
    except (Exception, KeyboardInterrupt):  # noqa: BLE001 - a second Ctrl-C or an unreachable node: say what we can
        pass
    if upids:
        for upid in upids:
            sys.stderr.write(f"pvectl: stopped waiting; the migration keeps running on the node: {upid}\n"
                             f"pvectl: resume with: pvectl task wait {upid}\n")
        if ctx.output == "json":
            import json

            sys.stdout.write(json.dumps({"interrupted": True, "upids": upids}) + "\n")
    else:
        sys.stderr.write(f"pvectl: stopped; no migration task of VM {a.vm} was found started. Check with: "
                         f"pvectl task list --vm {a.vm}\n")
    return 130


def run(ctx: Context) -> int:
    from ..errors import TaskFailed
    from ..migration import migrate
    from .ops import deadline, writer

    a = ctx.args
    target = a.target
    if target == "auto":
        from ..drain import auto_target

        target = auto_target(ctx.cluster, a.vm, online=a.online, with_local_disks=a.with_local_disks)
        sys.stderr.write(f"pvectl: target {target}: it passes every check with the most free memory after the move\n")
    label = f"VM {a.vm} -> {target}"
    started = time.time()
    try:
        with _Display(label) as display:
            r = migrate(ctx.cluster, a.vm, target, writer=writer(ctx), deadline=deadline(ctx), online=a.online,
                        with_local_disks=a.with_local_disks, bwlimit=a.bwlimit, check_only=a.check,
                        wait=not a.no_wait, on_progress=display)
    except TaskFailed as exc:
        return _failed(ctx, exc)
    except KeyboardInterrupt as exc:
        return _interrupted(ctx, started, getattr(exc, "upid", None))
    if a.check:
        return _verdict(ctx, r)  # type: ignore[arg-type]
    if a.dry_run:
        return 0
    _result(ctx, r)  # type: ignore[arg-type]
    return 0


def _verdict(ctx: Context, c: MigrationCheck) -> int:
    if ctx.output == "table":
        word = "allowed" if c.allowed else "REFUSED"
        print(f"VM {c.vmid} ({c.name}) {c.node} -> {c.target}, {c.mode} migration: {word}")
        for f in c.findings:
            level = {"ok": "ok", "warn": "warning", "refuse": "REFUSED"}[f.level]
            print(f"  {level:<8} {f.check:<16} {f.reason}")
            if f.fix and f.level != "ok":
                print(f"  {'':<8} {'':<16} fix: {f.fix}")
    else:
        ctx.emit(c.to_dict())
    return 0 if c.allowed else 3


def _result(ctx: Context, r: MigrationResult) -> None:
    if ctx.output != "table":
        ctx.emit(r.to_dict())
        return
    if r.outcome == "started":
        print(f"VM {r.vmid} ({r.name}): {r.mode} migration from {r.source} to {r.target} started")
        print(f"  task {r.upid}  (wait for it: pvectl task wait {r.upid})")
        return
    took = f" in {r.duration}" if r.duration else ""
    down = f" (downtime {r.downtime_ms} ms)" if r.downtime_ms is not None else ""
    print(f"VM {r.vmid} ({r.name}) migrated {r.mode} from {r.source} to {r.node}{took}{down}")
    print(f"  status {r.status or '-'} on {r.node}")
    for disk in r.local_disks:
        print(f"  disk   {disk} moved to {r.node}")
    for w in r.warnings:
        print(f"  warning: {w}")
    print(f"  task   {r.upid}")


def _failed(ctx: Context, exc: Any) -> int:
    from ..migration import strip_timestamp

    tail = [strip_timestamp(ln) for ln in exc.log_tail]
    if ctx.output == "json":
        import json

        d = exc.to_dict()
        d["error"]["exitstatus"] = exc.exitstatus
        d["error"]["log_tail"] = tail
        sys.stdout.write(json.dumps(d) + "\n")
    else:
        sys.stderr.write(f"pvectl: error: migration failed: {exc.exitstatus}\n")
        for line in tail:
            sys.stderr.write(f"  {line}\n")
        sys.stderr.write(f"pvectl: full log: pvectl task log {exc.upid}; where the VM is: pvectl vm status "
                         f"{ctx.args.vm}\n")
    return 1
