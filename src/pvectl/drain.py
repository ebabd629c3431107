"""Emptying a node: a plan per VM, then bounded parallel migrations, then what is still there.

Why not Proxmox's own `POST /nodes/{node}/migrateall`: it sends every guest to ONE `target`, with
`maxworkers` at a time (else datacenter.cfg `max_workers`), and checks nothing first: not the
target's free memory, not local disks or devices; a VM that cannot go fails inside its task
(pve-manager API2/Nodes.pm::migrateall). A drain here plans each VM on its own:

- plan: every running VM of NODE (stopped ones with `include_stopped`) gets the target that passes
  every migration rule (guards.migration_findings: membership, quorum, lock, Proxmox's precondition
  with storages, local devices and local disks, free memory >= maxmem + reserve) and keeps the most
  free memory after the move, counting the VMs already planned onto it (largest VMs are placed
  first); a VM that fits nowhere is named with every target's reason;
- execute: at most `parallel` migrations at once (default: datacenter.cfg `max_workers`, else 4 as
  pve-ha-manager's Env/PVE2.pm::get_max_workers), each re-checked on fresh state by
  `migration.migrate`, a target's memory counted with the moves still in flight to it; a failed
  move is reported and the drain goes on; at the end the node is read again.
- undo: the saved plan (JSON, with each move's outcome) moves the VMs that moved back.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import guards
from .errors import GuardRefused, NotFound, PvectlError, TaskFailed, TaskTimeout, UsageError
from .deadline import Deadline
from .tasks.task import Backoff
from .membership import cluster_status
from .nodes.reads import list_nodes
from .vms.reads import list_vms
from .vms.migrate import migrate

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .session import Session
    from .tasks.task import Progress
    from .writes import PlannedWrite, Writer

# pve-ha-manager Env/PVE2.pm::get_max_workers: `$datacenterconfig->{max_workers} || 4`
DEFAULT_MAX_WORKERS = 4


@dataclass
class Move:
    vmid: int
    name: str
    source: str
    maxmem: int
    running: bool
    target: str | None = None
    mode: str = "live"
    with_local_disks: bool = False
    local_disks: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)     # why it cannot move (target None)
    outcome: str | None = None         # moved | failed | refused | timeout | skipped (after execute)
    detail: str | None = None
    upid: str | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DrainPlan:
    node: str                          # the node emptied (undo: the node the VMs return to)
    targets: list[str]
    moves: list[Move]
    kind: str = "drain"                # drain | undo
    capacity: dict[str, dict[str, int]] = field(default_factory=dict)   # target -> total/used/reserve/planned
    created: int = 0

    @property
    def movable(self) -> list[Move]:
        return [m for m in self.moves if m.target]

    @property
    def unmovable(self) -> list[Move]:
        return [m for m in self.moves if not m.target]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "node": self.node, "targets": self.targets, "created": self.created,
                "capacity": self.capacity, "moves": [m.to_dict() for m in self.moves]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DrainPlan:
        return cls(node=d["node"], targets=list(d["targets"]), kind=d.get("kind", "drain"),
                   capacity=d.get("capacity", {}), created=int(d.get("created", 0)),
                   moves=[Move(**m) for m in d["moves"]])

    def save(self, path: str) -> None:
        import os

        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> DrainPlan:
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_dict(json.load(f))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"cannot read the drain plan {path}: {exc}",
                             hint="give the JSON file a drain saved (pvectl node drain NODE --yes)") from None


@dataclass
class DrainResult:
    plan: DrainPlan
    parallel: int
    remaining: list[dict[str, Any]] = field(default_factory=list)   # running VMs still on the node
    seconds: float = 0.0
    plan_file: str | None = None       # where the plan and each outcome were saved (for `undo=`)
    planned: list[PlannedWrite] | None = None       # a dry run: the writes it would have sent

    @property
    def ok(self) -> bool:
        if self.planned is not None:
            return all(m.outcome == "planned" for m in self.plan.moves)
        if self.plan.kind == "undo":
            return all(m.outcome == "moved" for m in self.plan.moves)
        return not self.remaining

    def to_dict(self) -> dict[str, Any]:
        d = {"ok": self.ok, "node": self.plan.node, "kind": self.plan.kind, "parallel": self.parallel,
             "seconds": round(self.seconds, 3), "moves": [m.to_dict() for m in self.plan.moves],
             "remaining": self.remaining, "plan_file": self.plan_file}
        if self.planned is not None:
            d["planned"] = [p.to_dict() for p in self.planned]
        return d


def max_workers(session: Session) -> int:
    """datacenter.cfg `max_workers` (GET /cluster/options), else Proxmox's fallback of 4."""
    try:
        value = session.transport.get("/cluster/options").get("max_workers")
    except PvectlError:
        return DEFAULT_MAX_WORKERS
    try:
        return max(1, int(value)) if value else DEFAULT_MAX_WORKERS
    except (TypeError, ValueError):
        return DEFAULT_MAX_WORKERS


# ------------------------------------------------------------------------------------ the plan
class _State:
    """What every placement reads once: membership, quorum, node memory."""

    def __init__(self, session: Session) -> None:
        status = cluster_status(session)
        self.quorate = status.quorate
        self.members = {n.name: n.online for n in status.nodes}
        self.nodes = {n.name: n for n in list_nodes(session)}


def _vm_status(session: Session, vm: Any) -> dict[str, Any]:
    # live status, not /cluster/resources: pvestatd's view lags up to 10 s (pve-semantics §10.2)
    st: dict[str, Any] = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/status/current", node=vm.node)
    return st


def _vm_facts(session: Session, vm: Any, quorate: bool, st: dict[str, Any] | None = None) -> dict[str, Any]:
    st = st if st is not None else _vm_status(session, vm)
    lock = st.get("lock")
    precondition = None
    if quorate and not lock:     # the endpoint refuses a locked VM or a cluster without quorum itself
        precondition = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/migrate", node=vm.node)
    return {"running": st.get("status") == "running", "lock": lock,
            "maxmem": int(st.get("maxmem") or vm.maxmem or 0), "precondition": precondition}


def _findings(state: _State, vm: Any, facts: dict[str, Any], target: str, used: int | None,
              with_local_disks: bool) -> list[dict[str, Any]]:
    tnode = state.nodes.get(target)
    return guards.migration_findings(
        vmid=vm.vmid, source=vm.node, target=target, members=state.members, quorate=state.quorate,
        running=facts["running"], online=None, lock=facts["lock"], precondition=facts["precondition"],
        with_local_disks=with_local_disks, vm_maxmem=facts["maxmem"], target_mem=used,
        target_maxmem=tnode.maxmem if tnode else None)


def _place(state: _State, vm: Any, facts: dict[str, Any], targets: list[str], used: dict[str, int],
           with_local_disks: bool) -> tuple[str | None, list[str]]:
    """The allowed target with the most free memory after the move, or None and the reasons."""
    allowed: list[tuple[int, str]] = []
    refusals: dict[str, list[str]] = {}
    for t in targets:
        tnode = state.nodes.get(t)
        if tnode is None or tnode.maxmem is None or t not in used:
            refusals[t] = [f"no memory statistics for {t} (offline?)"]
            continue
        found = _findings(state, vm, facts, t, used[t], with_local_disks)
        refused = [f["reason"] for f in found if f["level"] == "refuse"]
        if refused:
            refusals[t] = refused
        else:
            allowed.append((tnode.maxmem - used[t] - facts["maxmem"], t))
    if allowed:
        return max(allowed)[1], []
    # one line per distinct reason, naming the targets it applies to
    by_reason: dict[str, list[str]] = {}
    for t, reasons in refusals.items():
        for r in reasons:
            by_reason.setdefault(r, []).append(t)
    return None, [r if len(ts) == len(targets) else f"{', '.join(ts)}: {r}" for r, ts in by_reason.items()]


def plan(session: Session, node: str, *, to: Sequence[str] | None = None, include_stopped: bool = False,
         with_local_disks: bool = False) -> DrainPlan:
    """Where each VM of `node` would go (nothing is sent)."""
    state = _State(session)
    if node not in state.members:
        raise UsageError(f"no such cluster node '{node}'", hint=f"cluster members: {', '.join(sorted(state.members))}")
    targets = list(dict.fromkeys(to)) if to else [n for n in sorted(state.members) if n != node and state.members[n]]
    for t in targets:
        if t == node:
            raise UsageError(f"--to {t} is the node being drained")
        if t not in state.members:
            raise UsageError(f"no such cluster node '{t}'", hint=f"cluster members: {', '.join(sorted(state.members))}")
    if not targets:
        raise GuardRefused(f"no other online node to drain {node} onto", "bring a node back (pvectl cluster status)")
    wanted = ("running", "stopped") if include_stopped else ("running",)
    live = {v.vmid: (v, _vm_status(session, v)) for v in list_vms(session, node=node, templates=False)}
    vms = [v for v, st in live.values() if st.get("status") in wanted]
    facts = {v.vmid: _vm_facts(session, v, state.quorate, live[v.vmid][1]) for v in vms}
    used: dict[str, int] = {t: m for t in targets if t in state.nodes and (m := state.nodes[t].mem) is not None}
    start_used = dict(used)
    moves: dict[int, Move] = {}
    for vm in sorted(vms, key=lambda v: (-facts[v.vmid]["maxmem"], v.vmid)):
        f = facts[vm.vmid]
        pre = f["precondition"] or {}
        disks = [str(d.get("volid")) for d in pre.get("local_disks") or [] if not d.get("is_cloudinit")]
        target, reasons = _place(state, vm, f, targets, used, with_local_disks)
        if target is not None and f["running"]:
            used[target] += f["maxmem"]        # a stopped VM uses no memory there until started
        moves[vm.vmid] = Move(vmid=vm.vmid, name=vm.name, source=node, maxmem=f["maxmem"], running=f["running"],
                              target=target, mode=guards.migration_mode(running=f["running"], online=None),
                              with_local_disks=bool(with_local_disks and disks and f["running"]),
                              local_disks=disks, reasons=reasons)
    capacity = {t: {"total": state.nodes[t].maxmem or 0, "used": start_used[t],
                    "reserve": guards.migration_reserve(state.nodes[t].maxmem or 0),
                    "planned": used[t] - start_used[t]} for t in targets if t in used}
    return DrainPlan(node=node, targets=targets, moves=[moves[k] for k in sorted(moves)], capacity=capacity,
                     created=int(time.time()))


def undo_plan(session: Session, saved: DrainPlan) -> DrainPlan:
    """Move back what a drain moved: each VM that is still where the drain put it goes back to the
    drained node, if every migration rule allows it there (memory counted cumulatively)."""
    if saved.kind != "drain":
        raise UsageError("this plan file is an undo itself", hint="give the file the drain saved")
    state = _State(session)
    home = saved.node
    if home not in state.nodes or state.nodes[home].mem is None:
        raise GuardRefused(f"{home} is not online: nothing can move back yet", "bring it back, then run --undo again")
    used = {home: state.nodes[home].mem or 0}
    where = {v.vmid: v for v in list_vms(session, templates=False)}
    moves: list[Move] = []
    for m in saved.moves:
        if m.outcome != "moved" or m.target is None:
            continue
        vm = where.get(m.vmid)
        back = Move(vmid=m.vmid, name=m.name, source=m.target, maxmem=m.maxmem, running=m.running,
                    mode=m.mode, with_local_disks=m.with_local_disks, local_disks=m.local_disks)
        if vm is None or vm.node != m.target:
            back.reasons = [f"VM {m.vmid} is no longer on {m.target}" + (f" (now on {vm.node})" if vm else "")]
        else:
            facts = _vm_facts(session, vm, state.quorate)
            target, back.reasons = _place(state, vm, facts, [home], used, m.with_local_disks)
            back.target = target
            back.running = facts["running"]
            if target and facts["running"]:
                used[home] += facts["maxmem"]
        moves.append(back)
    return DrainPlan(node=home, targets=[home], moves=moves, kind="undo", created=int(time.time()),
                     capacity={home: {"total": state.nodes[home].maxmem or 0, "used": state.nodes[home].mem or 0,
                                      "reserve": guards.migration_reserve(state.nodes[home].maxmem or 0),
                                      "planned": used[home] - (state.nodes[home].mem or 0)}})


# ------------------------------------------------------------------------------------ execution
Event = tuple[str, Move, Any]      # (start | progress | done, move, Progress | None)


class _Ledger:
    """Memory promised to each target by moves in flight or done, beyond what the plan saw."""

    def __init__(self, p: DrainPlan) -> None:
        self.lock = threading.Lock()
        self.capacity = p.capacity
        self.inflight: dict[str, int] = {t: 0 for t in p.capacity}
        self.landed: dict[str, int] = {t: 0 for t in p.capacity}

    def reserve(self, m: Move, fresh_used: int | None) -> str | None:
        """Book `m` on its target, or say why the target has no room now."""
        assert m.target is not None
        cap = self.capacity.get(m.target)
        if cap is None or not m.running:
            return None
        with self.lock:
            used = max(fresh_used or 0, cap["used"] + self.landed[m.target]) + self.inflight[m.target]
            if used + m.maxmem + cap["reserve"] > cap["total"]:
                return (f"{m.target} has no room now: {(cap['total'] - used) / 1024**3:.1f} GiB free, the VM needs "
                        f"{(m.maxmem + cap['reserve']) / 1024**3:.1f} GiB with the reserve")
            self.inflight[m.target] += m.maxmem
        return None

    def release(self, m: Move, *, landed: bool) -> None:
        if m.target not in self.inflight or not m.running:
            return
        with self.lock:
            self.inflight[m.target] -= m.maxmem
            if landed:
                self.landed[m.target] += m.maxmem


def execute(session: Session, p: DrainPlan, *, writer: Writer, parallel: int | None = None,
            deadline: Deadline | float | None = None,
            on_event: Callable[[str, Move, Progress | None], None] | None = None) -> DrainResult:
    """Run the plan's moves, at most `parallel` at once; every move gets an outcome."""
    from concurrent.futures import ThreadPoolExecutor

    deadline = Deadline.of(deadline)
    parallel = parallel or max_workers(session)
    if parallel < 1:
        raise UsageError("--parallel must be at least 1")
    ledger = _Ledger(p)
    started = time.monotonic()
    emit = on_event or (lambda kind, move, prog: None)
    for m in p.unmovable:
        m.outcome, m.detail = "unmovable", "; ".join(m.reasons)
        emit("done", m, None)

    def run(m: Move) -> None:
        assert m.target is not None
        if deadline.expired():
            m.outcome, m.detail = "skipped", "the deadline passed before it started"
            emit("done", m, None)
            return
        # memory as planned plus what landed or is in flight; `migrate` checks the fresh numbers too
        why = ledger.reserve(m, None)
        if why:
            m.outcome, m.detail = "refused", why
            emit("done", m, None)
            return
        emit("start", m, None)
        t0 = time.monotonic()
        landed = False
        try:
            task = migrate(session, m.vmid, m.target, writer=writer, deadline=deadline,
                           with_local_disks=m.with_local_disks, wait=False)
            if task.upid is None:               # a dry run: nothing was sent
                m.outcome = "planned"
            else:
                m.upid = str(task.upid)
                first, factor, cap = _BACKOFF
                r = task.wait(deadline, on_progress=lambda pr: emit("progress", m, pr),
                              backoff=Backoff(first, factor, cap))
                # where the VM is now: phase3 moved its config to the target (pve-semantics §9.2)
                landed = r.node == m.target
                m.outcome = "moved" if landed else "failed"
                m.detail = None if landed else "the task ended OK but the VM is not on the target"
        except TaskFailed as exc:
            m.outcome, m.upid = "failed", str(exc.upid)
            m.detail = f"{exc.exitstatus}: {exc.log_tail[-1] if exc.log_tail else ''}".strip(": ")
        except TaskTimeout as exc:
            m.outcome, m.upid = "timeout", str(exc.upid)
            m.detail = f"still running at the deadline: pvectl task wait {exc.upid}"
        except GuardRefused as exc:
            m.outcome, m.detail = "refused", exc.message
        except PvectlError as exc:
            m.outcome, m.detail = "error", exc.message
        finally:
            ledger.release(m, landed=landed)
            m.seconds = round(time.monotonic() - t0, 3)
        emit("done", m, None)

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="drain") as pool:
        # the largest VMs first: they take longest and need the most room
        for future in [pool.submit(run, m) for m in sorted(p.movable, key=lambda m: (-m.maxmem, m.vmid))]:
            future.result()
    res = DrainResult(plan=p, parallel=parallel, seconds=time.monotonic() - started)
    if writer.dry_run:
        res.planned = writer.planned_writes()
    elif p.kind == "drain":
        with session.transport.reporting():     # what is still on the node, also after the deadline
            res.remaining = [{"vmid": v.vmid, "name": v.name, "status": "running"}
                             for v in list_vms(session, node=p.node, templates=False) if _still_running(session, v)]
    return res


# A drain waits for up to max_workers migrations at once; polling each at most every second keeps the
# time from a task's end to the next migration short (one small GET per poll and task).
_BACKOFF = (0.05, 1.5, 1.0)


def _still_running(session: Session, vm: Any) -> bool:
    try:
        return _vm_status(session, vm).get("status") == "running"
    except NotFound:            # its config moved away between the two reads
        return False


def drain_plan(session: Session, node: str | None = None, *, undo: str | DrainPlan | None = None,
               to: Sequence[str] | None = None, include_stopped: bool = False,
               with_local_disks: bool = False) -> DrainPlan:
    """The plan of a drain of `node`, or with `undo` (a saved plan file, or the `DrainPlan` a drain
    ran) the plan that moves back what it moved. Sends nothing."""
    if (node is None) == (undo is None):
        raise UsageError("give the NODE to drain, or --undo PLANFILE (not both)",
                         hint="pvectl node drain pve1 --dry-run")
    if undo is not None:
        return undo_plan(session, undo if isinstance(undo, DrainPlan) else DrainPlan.load(undo))
    assert node is not None
    return plan(session, node, to=to, include_stopped=include_stopped, with_local_disks=with_local_disks)


def drain(session: Session, node: str | None = None, *, undo: str | DrainPlan | None = None, yes: bool = False,
          to: Sequence[str] | None = None, include_stopped: bool = False, with_local_disks: bool = False,
          parallel: int | None = None, deadline: Deadline | float | None = None, plan_file: str | None = None,
          writer: Writer | None = None) -> DrainResult:
    """Plan (`drain_plan`), then run the moves, `parallel` at a time. Needs `yes` (GuardRefused
    otherwise, after the plan was reported). The plan is reported first as the session event
    `{"event": "drain", "kind": "plan", "plan": {...}}`, then each move (`kind` start | progress | done,
    `move`, `fraction`). The plan, with each outcome, is saved to `plan_file` (if given) before the
    first move and after the last: `drain(undo=plan_file, yes=True)` moves them back."""
    if parallel is not None and parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {parallel}")
    deadline = session.deadline(deadline)
    p = drain_plan(session, node, undo=undo, to=to, include_stopped=include_stopped,
                   with_local_disks=with_local_disks)
    session.emit("drain", kind="plan", plan=p.to_dict())
    if not yes:
        raise GuardRefused(f"{'moving back' if p.kind == 'undo' else 'draining ' + p.node} migrates "
                           f"{len(p.movable)} VM(s)", "add --yes to run this plan")
    if p.kind != "drain":
        plan_file = None
    if plan_file:
        p.save(plan_file)

    def on_event(kind: str, m: Move, prog: Progress | None) -> None:
        session.emit("drain", kind=kind, move=m.to_dict(), fraction=prog.fraction if prog else None)

    writer = writer or session.writer(f"nodes.drain {p.node}" if p.kind == "drain" else f"nodes.drain undo {p.node}")
    try:
        res = execute(session, p, writer=writer, parallel=parallel, deadline=deadline, on_event=on_event)
    finally:
        if plan_file:
            p.save(plan_file)
    res.plan_file = plan_file
    return res
