"""`pvectl node drain NODE` (library: pvectl.drain).

Exit codes: 0 the node holds no running VM (`--dry-run`: every VM has a target; `--undo`: every VM
went back), 1 a VM failed to move or could not move and is still there, 2 bad arguments, 3 refused
(no --yes; `--dry-run`: some VM has no target), 4 a migration still running at the deadline, 5 no node
reachable. Progress goes to stderr, one line when a VM starts and one when it ends.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..drain import DrainPlan, DrainResult, Move
    from .context import Context

WHY = ("Why not Proxmox's own `POST /nodes/{node}/migrateall`: it sends every guest to ONE target, "
       "max-workers at a time, with no capacity check and no pre-check, so a VM that cannot go fails "
       "inside its task and one target can be filled past its memory. A drain plans each VM on its own: "
       "the target that passes every migration check (membership, quorum, lock, storages, local disks "
       "and devices, free memory with the reserve) and keeps the most free memory after the move, "
       "counting the VMs already planned onto it. The plan prints first (--dry-run stops there); with "
       "--yes it runs --parallel migrations at once (default: the cluster's max_workers, else 4), goes "
       "on past a failure, and reports what is still on the node. The plan is saved as JSON for --undo.")


def add_arguments(p: Any) -> None:
    p.epilog = WHY
    p.add_argument("node", nargs="?", metavar="NODE", help="the node to empty")
    p.add_argument("--to", action="append", metavar="NODE", help="only these targets (repeat; default: every "
                   "other online node)")
    p.add_argument("--parallel", type=int, metavar="N", help="migrations at once (default: datacenter.cfg "
                   "max_workers, else 4)")
    p.add_argument("--include-stopped", action="store_true", help="move stopped VMs too (offline)")
    p.add_argument("--with-local-disks", action="store_true",
                   help="live-migrate VMs with local disks too (mirrored while they run)")
    p.add_argument("--plan-file", metavar="FILE", help="where the plan is saved (default: drain-NODE-TIME.json)")
    p.add_argument("--undo", metavar="PLANFILE", help="move the VMs a drain moved back (the saved plan)")


def run(ctx: Context) -> int:
    from ..errors import GuardRefused, UsageError

    a = ctx.args
    if a.parallel is not None and a.parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {a.parallel}")
    if bool(a.node) == bool(a.undo):
        raise UsageError("give the NODE to drain, or --undo PLANFILE (not both)",
                         hint="pvectl node drain pve1 --dry-run")
    from ..drain import DrainPlan, plan, undo_plan

    pve = ctx.session
    if a.undo:
        p = undo_plan(pve, DrainPlan.load(a.undo))
    else:
        p = plan(pve, a.node, to=a.to, include_stopped=a.include_stopped, with_local_disks=a.with_local_disks)
    if a.dry_run:
        _show_plan(ctx, p)
        return 0 if not p.unmovable else 3
    if not a.yes:
        _show_plan(ctx, p)
        raise GuardRefused(f"{'moving back' if a.undo else 'draining ' + p.node} migrates {len(p.movable)} VM(s)",
                           "add --yes to run this plan")
    if ctx.output == "table":
        _show_plan(ctx, p)
    return _execute(ctx, p)


def _execute(ctx: Context, p: DrainPlan) -> int:
    import time

    from ..drain import execute

    a = ctx.args
    path = None
    if p.kind == "drain":
        path = a.plan_file or f"drain-{p.node}-{time.strftime('%Y%m%dT%H%M%S')}.json"
        p.save(path)
    show = _Progress(len(p.movable))
    try:
        res = execute(ctx.session, p, writer=ctx.writer(), parallel=a.parallel, deadline=ctx.deadline(),
                      on_event=show)
    finally:
        show.close()
        if path:
            p.save(path)
    _show_result(ctx, res, path)
    if res.ok:
        return 0
    # the deadline passed: migrations still running (their UPIDs are listed) or not started
    return 4 if any(m.outcome in ("timeout", "skipped") for m in p.moves) else 1


class _Progress:
    """Per VM on stderr: a bar while it moves on a terminal (rich), else a line when it starts and ends."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.bars: Any = None
        self.ids: dict[int, Any] = {}
        if sys.stderr.isatty():
            from ..render import progress_bars

            self.bars = progress_bars(sys.stderr)

    def __call__(self, kind: str, m: Move, prog: Any) -> None:
        label = f"VM {m.vmid} ({m.name}) -> {m.target}"
        if kind == "start":
            if self.bars is not None:
                self.ids[m.vmid] = self.bars.add_task(label, total=100)
            else:
                sys.stderr.write(f"pvectl: {label} {m.mode}: started\n")
        elif kind == "progress" and self.bars is not None and prog.fraction is not None and m.vmid in self.ids:
            self.bars.update(self.ids[m.vmid], completed=prog.fraction * 100)
        elif kind == "done" and m.outcome != "unmovable":
            self.done += 1
            took = f" in {m.seconds:.1f}s" if m.seconds is not None else ""
            what = f"moved{took}" if m.outcome == "moved" else f"{(m.outcome or '').upper()}: {m.detail}"
            if self.bars is not None and m.vmid in self.ids:
                self.bars.update(self.ids[m.vmid], completed=100 if m.outcome == "moved" else None,
                                 description=f"{label}: {what}")
            elif self.bars is None:
                sys.stderr.write(f"pvectl: [{self.done:>{len(str(self.total))}}/{self.total}] {label}: {what}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**3:.1f}G"


def _show_plan(ctx: Context, p: DrainPlan) -> None:
    if ctx.output != "table":
        ctx.emit(p.to_dict())
        return
    what = f"drain {p.node}" if p.kind == "drain" else f"move back to {p.node}"
    print(f"{what}: {len(p.movable)} VM(s) to move, {len(p.unmovable)} cannot move")
    print(f"  {'VMID':>6}  {'NAME':<20} {'MEM':>6}  {'MODE':<8} {'TARGET':<10} NOTE")
    for m in p.moves:
        note = "; ".join(m.reasons) if not m.target else ("local disks: " + ", ".join(m.local_disks)
                                                          if m.local_disks else "")
        print(f"  {m.vmid:>6}  {m.name[:20]:<20} {_gib(m.maxmem):>6}  {m.mode:<8} {m.target or 'UNMOVABLE':<10} {note}")
    for t, c in p.capacity.items():
        print(f"  {t}: {_gib(c['used'])} used + {_gib(c['planned'])} planned of {_gib(c['total'])} "
              f"(keeps a {_gib(c['reserve'])} reserve)")


def _show_result(ctx: Context, res: DrainResult, path: str | None) -> None:
    if ctx.output != "table":
        d = res.to_dict()
        d["plan_file"] = path
        ctx.emit(d)
        return
    p = res.plan
    moved = [m for m in p.moves if m.outcome == "moved"]
    print(f"{len(moved)}/{len(p.moves)} VM(s) moved in {res.seconds:.1f}s ({res.parallel} at a time)")
    for m in p.moves:
        if m.outcome != "moved":
            print(f"  VM {m.vmid} ({m.name}): {m.outcome}: {m.detail}" + (f"  [{m.upid}]" if m.upid else ""))
    if p.kind == "drain":
        if res.remaining:
            names = ", ".join(f"{r['vmid']} ({r['name']})" for r in res.remaining)
            print(f"{p.node} still holds {len(res.remaining)} running VM(s): {names}")
        else:
            print(f"{p.node} holds no running VM")
    if path:
        print(f"plan saved: {path}  (move them back: pvectl node drain --undo {path} --yes)")
