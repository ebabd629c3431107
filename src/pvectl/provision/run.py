"""Executing a plan: clone, configure, grow, start, wait for an IP; one VM or many."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import GuardRefused, PvectlError, UsageError
from ..deadline import Deadline
from ..units import parse_prop, size_bytes
from ..writes import Writer
from .clone import NameTaken, clone, keep_or_yield
from .cloudinit import boot_disk
from .limits import _Limits, _LimitedTransport
from .names import NameInFlight, Names
from .plan import _differences, _existing, _Plan, _plan, _plan_existing, configured
from .state import _Run
from .steps import _after_failure, _configure, _dry_run_rest, _resize, _start, _StepFailed, _wait_ip
from .types import CloneSpec, EventCallback, ProvisionFailed, ProvisionInterrupted, ProvisionResult
from .vmids import allocator_for, in_flight_for

if TYPE_CHECKING:
    from ..session import Session

INTERRUPT_GRACE = 2.0      # seconds the workers get after Ctrl-C to finish the request they are in
_SENDING = ("clone requested",)


def provision(session: Session, spec: CloneSpec, *, deadline: Deadline | float | None, writer: Writer,
              on_event: EventCallback | None = None) -> ProvisionResult:
    """Make one VM from a template (see the package docstring). Returns the result (`result` created,
    exists or planned); raises GuardRefused / UsageError / NotFound before anything is written,
    ProvisionFailed (with `.result`) for a failure once the workflow has started, and
    ProvisionInterrupted (a KeyboardInterrupt, with `.results`) on Ctrl-C."""
    run = _Run(session, writer, Deadline.of(deadline), on_event)
    try:
        # the deadline bounds every request of the workflow, not only its task waits (as the CLI's)
        with session.transport.bounded(run.deadline):
            snap, _ = Names(run, None).settle()
            plan_or_result = _plan(run, spec, snap)
            if isinstance(plan_or_result, ProvisionResult):
                return plan_or_result
            return _execute(run, plan_or_result)
    except KeyboardInterrupt:
        run.stop.set()
        raise ProvisionInterrupted([_as_interrupted(r) for r in run.live]) from None


def provision_many(session: Session, specs: Sequence[CloneSpec], *, deadline: Deadline | float | None,
                   writer: Writer, max_per_node: int = 2, max_per_storage: int = 2, max_workers: int = 8,
                   on_event: EventCallback | None = None) -> list[ProvisionResult]:
    """Make several VMs concurrently (bounded: `max_per_node` clone tasks per node, `max_per_storage`
    full clones per target storage, at most 3 requests in flight per node). Never raises for one VM's
    failure: each result carries its own `error`. Results are in the order of `specs`. Every VMID is
    allocated up front in spec order, so the plan (and a dry-run) is deterministic. Refused up front
    (GuardRefused) when the range has fewer free VMIDs than new VMs. No clone starts after the
    deadline. Ctrl-C: ProvisionInterrupted with every VM's state, after the workers stopped."""
    dupes = sorted(n for n, k in Counter(s.name for s in specs).items() if k > 1)
    if dupes:
        raise UsageError(f"the same name is given more than once: {', '.join(dupes)}")
    limited = session.replace(transport=_LimitedTransport(session.transport))
    w = Writer(session.config, limited.transport, writer.command, writer.dry_run, writer.audit, writer.via,
               writer.out, writer.planned)
    run = _Run(limited, w, Deadline.of(deadline), on_event, _Limits(max_per_node, max_per_storage))
    run.allocator = allocator_for(session)
    run.in_flight = in_flight_for(session)
    results: list[ProvisionResult | None] = [None] * len(specs)
    plans: list[tuple[int, _Plan]] = []
    try:
        with session.transport.bounded(run.deadline):
            snap, _ = Names(run, None).settle()
            _check_free_vmids(run, specs, snap)
        run.vmid_floor = 0
        for i, spec in enumerate(specs):
            try:
                with session.transport.bounded(run.deadline):
                    p = _plan(run, spec, snap)
            except PvectlError as exc:
                run.emit(spec.name, spec.vmid, "plan", "failed", exc.message)
                results[i] = ProvisionResult(spec.name, vmid=spec.vmid, result="failed", error=exc)
                continue
            if isinstance(p, ProvisionResult):
                results[i] = p
            else:
                plans.append((i, p))
    except KeyboardInterrupt:
        raise ProvisionInterrupted([r for r in results if r is not None]) from None

    def work(item: tuple[int, _Plan]) -> None:
        i, p = item
        try:
            with session.transport.bounded(run.deadline):     # per thread: each worker's requests
                results[i] = _execute(run, p)
        except ProvisionFailed as exc:
            r = exc.result
            r.error = exc
            results[i] = r
        except PvectlError as exc:
            results[i] = ProvisionResult(p.spec.name, p.template.vmid, p.vmid, p.node, "failed", error=exc)

    try:
        if run.dry_run or len(plans) <= 1:
            for item in plans:
                work(item)
        else:
            _run_workers(work, plans, max(1, min(max_workers, len(plans))), run.stop)
    except KeyboardInterrupt:
        run.stop.set()
        raise ProvisionInterrupted(_interrupted(run, plans, results)) from None
    return [r for r in results if r is not None]


def _run_workers(work: Any, plans: list[tuple[int, _Plan]], workers: int, stop: threading.Event) -> None:
    """Daemon threads (a Ctrl-C must not wait for them to end) taking plans in order."""
    queue = list(reversed(plans))
    lock = threading.Lock()

    def loop() -> None:
        while True:
            with lock:
                if not queue:
                    return
                item = queue.pop()
            try:
                work(item)
            except Exception:
                if stop.is_set():
                    return          # after Ctrl-C the connections close under the workers: no traceback
                raise

    threads = [threading.Thread(target=loop, name=f"pvectl-provision-{n}", daemon=True) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)


def _interrupted(run: _Run, plans: list[tuple[int, _Plan]], results: list[ProvisionResult | None]
                 ) -> list[ProvisionResult]:
    """Every VM's state after Ctrl-C. The workers get a moment to finish the request they are in (so a
    clone POST that went out is reported with its UPID); nothing new starts."""
    limit = Deadline(INTERRUPT_GRACE)
    while not limit.expired() and any(r.state in _SENDING for r in list(run.live)):
        time.sleep(0.05)
    live = {r.name: r for r in list(run.live)}
    out: list[ProvisionResult] = []
    planned = {i: p for i, p in plans}
    for i, r in enumerate(results):
        p = planned.get(i)
        if p is not None and p.spec.name in live:
            r = _as_interrupted(live[p.spec.name])
        elif r is None and p is not None:
            r = ProvisionResult(p.spec.name, p.template.vmid, None, p.node, "not started", "absent")
        if r is not None:
            out.append(r)
    return out


def _as_interrupted(r: ProvisionResult) -> ProvisionResult:
    """A result the Ctrl-C caught mid-way: `not started` (still waiting for its turn) or `in progress`
    (a clone requested or running, or steps after it left)."""
    if r.error is None and r.result == "failed":
        if r.state is None and not r.steps:
            r.result, r.state, r.vmid = "not started", "absent", None
        else:
            r.result = "in progress"
    return r


def _check_free_vmids(run: _Run, specs: Sequence[CloneSpec], snap: Any) -> None:
    """Refuse a bulk run up front when the range has fewer free VMIDs than it needs new VMs."""
    rng = run.session.config.vmid_ranges.vms
    if rng is None:
        return
    wanted = sum(1 for s in specs if s.vmid is None and not snap.named(s.name))
    free = run.allocator.free_count(snap.used_vmids, rng.start, rng.end, enough=wanted)
    if free < wanted:
        raise GuardRefused(f"{wanted} new VMs need {wanted} free VMIDs, but vmid_ranges.vms ({rng}) has only "
                           f"{free} free: nothing was created",
                           "lower --count, or widen vmid_ranges.vms in cluster-config.yaml")


def _execute(run: _Run, plan: _Plan) -> ProvisionResult:
    spec = plan.spec
    res = ProvisionResult(spec.name, plan.template.vmid, plan.vmid, plan.node, "failed",
                          warnings=list(plan.warnings))
    run.track(res)
    if plan.existing is not None:
        return _finish_existing(run, plan, res)
    try:
        created = clone(run, plan, res)           # raises ProvisionFailed when nothing is left
    except NameTaken as taken:
        return _finish_other(run, plan, res, taken.result)
    if not created:                               # dry-run
        _dry_run_rest(run, plan, res)
        return res
    try:
        other = keep_or_yield(run, plan, res)
    except ProvisionFailed:
        raise
    except PvectlError as exc:
        raise _made_but_unchecked(run, plan, res, exc) from None
    if other is not None:
        return _finish_other(run, plan, res, other)
    try:
        _configure(run, plan, res)
        _resize(run, plan, res)
        if spec.start or spec.wait_ip:
            _start(run, plan, res)
        if spec.wait_ip:
            _wait_ip(run, plan, res)
    except _StepFailed as exc:
        _after_failure(run, plan, res, exc.step, exc.cause)
    res.result = "created"
    res.changed = True
    res.state = "running" if (spec.start or spec.wait_ip) else "stopped"
    run.emit(spec.name, res.vmid, "done", "done",
             f"VM {res.vmid} ({spec.name}) ready on {res.node}" + (f", IP {res.ip}" if res.ip else ""))
    return res


def _made_but_unchecked(run: _Run, plan: _Plan, res: ProvisionResult, exc: PvectlError) -> ProvisionFailed:
    """The clone made the VM, then the name check after it could not be made (the deadline passed, no
    node answered): report the VM and its task; running the command again checks and finishes it."""
    spec = plan.spec
    res.state = "stopped"
    task = res.upids.get("clone")
    msg = (f"VM {res.vmid} ({spec.name}) was cloned on {res.node}" + (f" (task {task})" if task else "")
           + f", but the check that no other VM took the name could not be made: {exc.message}")
    run.emit(spec.name, res.vmid, "clone", "failed", msg)
    return ProvisionFailed(res, exc, msg, f"resume with: {run.writer.command} (it finishes VM {res.vmid})")


def _finish_other(run: _Run, plan: _Plan, res: ProvisionResult, other: ProvisionResult) -> ProvisionResult:
    """Another run made the VM with this name (it took the name while this one planned, or kept it with
    a lower VMID). That VM is finished as a re-run would finish it (configure, grow, start), once its
    clone has ended: its maker may have stopped right after the clone, and `exists` promises a VM
    made as asked. A maker still at it finishes alongside (see _configure and _start)."""
    if other.result != "exists" or other.vmid is None or run.dry_run:
        res.result, res.state, res.vmid = other.result, other.state, other.vmid
        return other
    spec = plan.spec
    try:
        e = _existing(run, spec, plan.template, run.snapshot())
    except NameInFlight as exc:
        res.result, res.state, res.vmid = "exists", "cloning", other.vmid
        res.upids.update(other.upids)
        raise ProvisionFailed(res, exc, exc.message, exc.hint) from None
    except GuardRefused as exc:
        res.result, res.state, res.vmid = "failed", other.state, other.vmid
        raise ProvisionFailed(res, exc, exc.message, exc.hint) from None
    if e is None:                 # gone meanwhile: report what was seen
        res.result, res.state, res.vmid = other.result, other.state, other.vmid
        return other
    existing = _plan_existing(run, spec, plan.template, plan.template_config, e, plan.memory, plan.ipconfig,
                              plan.ssh_keys, planning=False)
    res.warnings.extend(other.warnings)
    res.upids.update(other.upids)
    return _finish_existing(run, existing, res)


def _finish_existing(run: _Run, plan: _Plan, res: ProvisionResult) -> ProvisionResult:
    """A VM with the name, made by pvectl from this template, exists: finish what an earlier run left
    (the config PUT, the disk growth, the start, the IP); report what differs from this run's wish
    and was set on purpose (`differs`: nothing is changed for it)."""
    spec = plan.spec
    e = plan.existing or {}
    conf: dict[str, Any] = e.get("config") or {}
    res.vmid, res.node = int(e["vmid"]), str(e["node"])
    res.result, res.state, res.steps = "exists", str(e.get("status", "unknown")), ["exists"]
    left = not configured(conf.get("description"))
    if not left:
        res.differs = _differences(run, spec, conf)
        res.warnings.extend(res.differs)
    try:
        if left:
            run.emit(spec.name, res.vmid, "config", "info", f"VM {res.vmid} was never configured (an earlier run "
                                                            f"stopped after the clone): finishing it")
            _configure(run, plan, res)
        if spec.disk_size and _not_grown(plan, conf):
            _resize(run, plan, res)
        if (spec.start or spec.wait_ip) and res.state == "stopped":
            _start(run, plan, res)
            res.state = res.state if run.dry_run else "running"
        if spec.wait_ip and run.dry_run:
            if run.writer.out is not None:      # (a library dry run prints nothing)
                run.writer.out.write(f"# then poll GET /api2/json/nodes/{res.node}/qemu/{res.vmid}/agent/"
                                     "network-get-interfaces until the guest reports an address\n")
        elif spec.wait_ip:
            _wait_ip(run, plan, res)
    except _StepFailed as exc:
        _after_failure(run, plan, res, exc.step, exc.cause)
    done = [s for s in res.steps if s != "exists"]
    res.changed = bool(set(done) - {"ip"})
    if done:
        msg = f"VM {res.vmid} ({spec.name}) already existed on {res.node}; finished: {', '.join(done)}"
    else:
        msg = (f"VM {res.vmid} ({spec.name}) already exists on {res.node}, cloned from template "
               f"{plan.template.vmid}: nothing changed")
    run.emit(spec.name, res.vmid, "done", "info", msg)
    for w in res.warnings:
        run.emit(spec.name, res.vmid, "done", "warning", w)
    return res


def _not_grown(plan: _Plan, conf: dict[str, Any]) -> bool:
    """Whether the disk growth this run asks for is still to do: an absolute size the disk is below,
    or `+N` on a disk still at the template's size (it was never grown)."""
    spec = plan.spec
    disk = spec.disk or boot_disk(conf)
    if disk is None or disk not in conf or not spec.disk_size:
        return False
    current = size_bytes(parse_prop(str(conf[disk]))[1].get("size"))
    if spec.disk_size.startswith("+"):
        tvalue = plan.template_config.get(disk)
        return tvalue is not None and current == size_bytes(parse_prop(str(tvalue))[1].get("size"))
    wanted = size_bytes(spec.disk_size)
    return current is not None and wanted is not None and current < wanted
