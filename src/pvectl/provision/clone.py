"""The clone step: check the name, post the clone, wait for it, recover from an uncertain POST, and
decide after the clone whether this run keeps the name (provision/names.py has the protocol)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

from ..errors import (AlreadyExists, DeadlineExceeded, GuardRefused, Locked, NodeUnreachable, NotFound, PvectlError,
                      TaskFailed, TaskTimeout)
from ..writes import Write
from .names import NameInFlight, Names, clone_upid
from .plan import _MARKER_RE, _existing, _Plan, marker_line, request_of
from .removal import remove_vm
from .state import _Run, _Snapshot, cloning, known_name
from .steps import _wait_task
from .types import ProvisionFailed, ProvisionResult

CLONE_ATTEMPTS = 8           # VMIDs tried after `already exists`
LOCK_ATTEMPTS = 4            # clone attempts after a lock timeout (pain point #2: server-side lock waits)


class NameTaken(Exception):
    """Another VM carries the name now (found by the check right before a clone POST)."""

    def __init__(self, result: ProvisionResult) -> None:
        super().__init__(result.name)
        self.result = result


def clone(run: _Run, plan: _Plan, res: ProvisionResult) -> bool:
    """Post the clone and wait for it. True when the VM exists afterwards, False in dry-run. Raises
    NameTaken when the name was taken meanwhile, ProvisionFailed when nothing (or a half-made VM) is
    left."""
    spec, tpl = plan.spec, plan.template
    params: dict[str, Any] = {"newid": plan.vmid, "name": spec.name}
    params["full"] = 1 if plan.full else 0
    if plan.node != tpl.node:
        params["target"] = plan.node
    if plan.storage:
        params["storage"] = plan.storage
    tdesc = str(plan.template_config.get("description", "") or "").strip()
    plan.request = uuid.uuid4().hex[:12]
    # the clone copies the template's description unless one is given (§4.3): keep it below the marker
    params["description"] = marker_line(tpl.vmid, tpl.name, plan.request) + (
        f"\n\n{tdesc}" if tdesc and not _MARKER_RE.search(tdesc) else "")
    plan.description = params["description"]

    sems: list[threading.BoundedSemaphore] = []
    if run.limits is not None:
        sems.append(run.limits.sem(f"node:{tpl.node}", run.limits.max_per_node))
        if plan.full and plan.storage:
            key = plan.storage if plan.storage_shared else f"{plan.node}/{plan.storage}"
            sems.append(run.limits.sem(f"storage:{key}", run.limits.max_per_storage))
    for s in sems:
        s.acquire()
    try:
        return _attempts(run, plan, res, params)
    except (ProvisionFailed, NameTaken):
        raise
    except PvectlError as exc:
        # a read between two attempts (the name check, the next free VMID) failed: name the clone tasks
        # this run started (each failed; Proxmox removed what they made: §4.4)
        tasks = ", ".join(res.upids.values())
        if not tasks:
            raise
        msg = f"the clone of '{spec.name}' stopped between attempts ({exc.message}); clone tasks of this run: {tasks}"
        raise ProvisionFailed(res, exc, msg, f"check with: pvectl vm list; then run the command again: "
                                             f"{run.writer.command}") from None
    finally:
        for s in reversed(sems):
            s.release()


def _before_post(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """Right before a clone POST: not after the deadline or Ctrl-C, not when the name is taken (by a
    VM, or possibly by a clone in flight: waited for), and not onto a VMID that got taken."""
    spec = plan.spec
    if run.stopped or run.deadline.expired():
        res.state = "absent"
        res.result = "not started"
        # exit 4 without a task to resume: say plainly that nothing was sent, and how to run it again
        why = "stopped (Ctrl-C)" if run.stopped else "deadline reached"
        msg = f"{why} before the clone request for '{spec.name}' was sent; nothing changed for it"
        hint = f"run the command again to make the rest: {run.writer.command}"
        raise ProvisionFailed(res, TaskTimeout("-", message=msg, hint=hint), msg, hint)
    if run.dry_run:
        return
    names = Names(run, spec.name)
    try:
        snap, carriers = names.settle()
    except NameInFlight as exc:
        res.state = "absent"
        raise ProvisionFailed(res, exc, exc.message, exc.hint) from None
    if carriers:
        raise NameTaken(_taken(run, plan, res, snap))
    if snap.vm(plan.vmid) is not None:
        if plan.explicit_vmid:
            fail_nothing_made(run, plan, res, "clone", AlreadyExists(f"VMID {plan.vmid} was taken meanwhile"),
                              created=False, hint="leave --vmid out to take the next free VMID")
        old = plan.vmid
        rng = run.session.config.vmid_ranges.vms
        start, end = (rng.start, rng.end) if rng is not None else (100, 999999999)
        plan.vmid = run.allocator.allocate(snap.used_vmids, start, end)
        res.vmid = plan.vmid
        run.emit(spec.name, plan.vmid, "clone", "warning", f"VMID {old} was taken meanwhile; trying VMID {plan.vmid}")


def _taken(run: _Run, plan: _Plan, res: ProvisionResult, snap: _Snapshot) -> ProvisionResult:
    """The result when another VM took the name after this run planned it: `exists` (made by pvectl
    from this template; not finished by this run: its maker is at it), or a refusal."""
    spec, tpl = plan.spec, plan.template
    try:
        e = _existing(run, spec, tpl, snap)
    except NameInFlight as exc:
        raise ProvisionFailed(res, exc, exc.message, exc.hint) from None
    except GuardRefused as exc:
        res.state = "absent"
        raise ProvisionFailed(res, exc, exc.message, exc.hint) from None
    if e is None:                 # that clone failed meanwhile: the name is free again
        return _retry_marker(res)
    msg = (f"VM {e['vmid']} ({spec.name}) was made on {e['node']} from template {tpl.vmid} by another run "
           f"while this one was planning: nothing was created")
    run.emit(spec.name, int(e["vmid"]), "done", "info", msg)
    return ProvisionResult(spec.name, tpl.vmid, int(e["vmid"]), str(e["node"]), "exists",
                           str(e.get("status", "unknown")), steps=["exists"], warnings=[msg])


def _retry_marker(res: ProvisionResult) -> ProvisionResult:
    return ProvisionResult(res.name, result="retry")


def _attempts(run: _Run, plan: _Plan, res: ProvisionResult, params: dict[str, Any]) -> bool:
    spec, tpl = plan.spec, plan.template
    id_attempts = lock_attempts = 0
    resend_same = False
    while True:
        try:
            _before_post(run, plan, res)
        except NameTaken as taken:
            if taken.result.result != "retry":
                raise
            continue
        vmid = plan.vmid
        params["newid"] = vmid
        res.vmid = vmid
        mode = "full" if plan.full else "linked"
        write = Write("POST", f"/nodes/{tpl.node}/qemu/{tpl.vmid}/clone", dict(params), tpl.node,
                      f"{mode} clone of template {tpl.vmid} ({tpl.name}) as VM {vmid} '{spec.name}'"
                      + (f" on {plan.node}" if plan.node != tpl.node else ""))
        run.emit(spec.name, vmid, "clone", "start", write.summary)
        run.in_flight.note(vmid, spec.name)
        res.state = "clone requested"
        try:
            try:
                plan.sent = time.time()
                upid = run.writer.send(write)
            except AlreadyExists as exc:
                if resend_same and adopt(run, plan, res):
                    return True
                id_attempts += 1
                _next_vmid(run, plan, res, exc, id_attempts)
                resend_same = False
                continue
            except NodeUnreachable as exc:
                if not exc.uncertain:
                    fail_nothing_made(run, plan, res, "clone", exc, created=False)
                # the POST may have been applied: look before sending again (DESIGN §4)
                if adopt(run, plan, res):
                    return True
                if resend_same:
                    fail_nothing_made(run, plan, res, "clone", exc, created=False)
                resend_same = True          # same VMID: a second clone would hit `already exists`
                continue
            except Locked as exc:
                lock_attempts += 1
                if lock_attempts >= LOCK_ATTEMPTS or not run.backoff(lock_attempts):
                    fail_nothing_made(run, plan, res, "clone", exc, created=False)
                run.emit(spec.name, vmid, "clone", "warning", f"{exc.message}; retrying")
                continue
            except PvectlError as exc:
                fail_nothing_made(run, plan, res, "clone", exc, created=False)
            if upid is None:                # dry-run
                res.steps.append("clone")
                res.state = "absent"
                return False
            res.upids["clone"] = str(upid)  # before the state says "cloning": a Ctrl-C report names it
            res.state = "cloning"
            try:
                _wait_task(run, plan, res, "clone", str(upid))
            except TaskFailed as exc:
                text = exc.exitstatus
                if "File exists" in text or "already exists" in text:
                    # newid taken on another node: pmxcfs EEXIST inside the task (§4.2)
                    id_attempts += 1
                    _next_vmid(run, plan, res, exc, id_attempts)
                    continue
                if "can't lock file" in text or "got timeout" in text or "lock request timeout" in text:
                    lock_attempts += 1
                    if lock_attempts < LOCK_ATTEMPTS and run.backoff(lock_attempts):
                        run.emit(spec.name, vmid, "clone", "warning", f"clone task: {text}; retrying")
                        continue
                fail_nothing_made(run, plan, res, "clone", exc, created=None)
            except TaskTimeout as exc:
                raise ProvisionFailed(res, exc, f"the clone of VM {vmid} ({spec.name}) is still running at the "
                                      f"deadline", f"resume with: pvectl task wait {exc.upid}, then run the command "
                                                   f"again to finish it") from None
            except NodeUnreachable as exc:
                res.state = "unknown"
                raise ProvisionFailed(res, exc, f"lost contact while cloning VM {vmid} ({spec.name}) on {tpl.node}: "
                                      f"{exc.message}", f"check the task: pvectl task status {upid}") from None
        finally:
            run.in_flight.done(vmid)
        res.steps.append("clone")
        res.state = "stopped"
        run.emit(spec.name, vmid, "clone", "done", f"VM {vmid} cloned on {plan.node}")
        return True


def _next_vmid(run: _Run, plan: _Plan, res: ProvisionResult, exc: PvectlError, attempts: int) -> None:
    """The VMID was taken by someone else: the next free one (the name is checked again before the
    next POST: whoever took the VMID may carry the name)."""
    if plan.explicit_vmid:
        fail_nothing_made(run, plan, res, "clone", exc, created=False,
                          hint="leave --vmid out to take the next free VMID")
    if attempts >= CLONE_ATTEMPTS:
        fail_nothing_made(run, plan, res, "clone", exc, created=False,
                          hint=f"{attempts} VMIDs were taken by someone else in a row; retry later")
    old = plan.vmid
    rng = run.session.config.vmid_ranges.vms
    start, end = (rng.start, rng.end) if rng is not None else (100, 999999999)
    used = run.snapshot().used_vmids | {old}
    # other clients that collided on the same id would all take the next one together: spread out by
    # a random number of free ids from the second collision on, growing with each
    plan.vmid = run.allocator.allocate(used, start, end, skip=random.randrange(2 ** min(attempts - 1, 4)))
    res.vmid = plan.vmid
    run.emit(plan.spec.name, plan.vmid, "clone", "warning",
             f"VMID {old} was taken meanwhile ({exc.message}); trying VMID {plan.vmid}")


def adopt(run: _Run, plan: _Plan, res: ProvisionResult) -> bool:
    """After an uncertain clone POST: did it start? VM `plan.vmid` is this run's clone when its config
    carries this run's request id; while its clone runs (`lock: clone`, no name yet) the running
    `qmclone` task that makes it is found and waited for. False when no such VM is there (or it is
    someone else's)."""
    spec = plan.spec
    for pause in (0.0, 1.0):
        time.sleep(pause)
        e = _patient_read(run, plan, res, lambda: run.snapshot().vm(plan.vmid))
        if e is None:
            continue
        if known_name(e) not in (None, spec.name):
            return False
        node = str(e.get("node", plan.node))
        if cloning(e):
            upid = clone_upid(run, node, plan.vmid)
            run.emit(spec.name, plan.vmid, "clone", "info", f"VM {plan.vmid} exists (lock: clone): the clone request "
                                                            f"may have arrived" + (f"; task {upid}" if upid else ""))
            if upid is not None:
                try:
                    _wait_task(run, plan, res, "clone", upid)
                except TaskFailed:
                    return False   # that clone failed; Proxmox removed what it made (§4.4)
            else:
                try:
                    found = Names(run, spec.name, sent=True).until_unlocked(e)
                except NameInFlight as exc:
                    raise ProvisionFailed(res, exc, exc.message, exc.hint) from None
                if found is None:
                    return False
                node = str(found.get("node", node))
        path = f"/nodes/{node}/qemu/{plan.vmid}/config"
        try:
            conf = _patient_read(run, plan, res, lambda: run.t.get(path, node=node))
        except NotFound:
            return False
        if request_of(conf.get("description")) != plan.request:
            return False
        if "clone" not in res.upids:        # it ended before this run looked: name its task all the same
            upid = clone_upid(run, node, plan.vmid, running=False)
            if upid is not None:
                res.upids["clone"] = upid
        run.emit(spec.name, plan.vmid, "clone", "info", f"VM {plan.vmid} is this run's clone: the request did arrive")
        res.node = plan.node = node
        res.steps.append("clone")
        res.state = "stopped"
        return True
    return False


def _patient_read(run: _Run, plan: _Plan, res: ProvisionResult, read: Callable[[], Any]) -> Any:
    """A read that decides whether an uncertain clone POST arrived. A node that does not answer (or
    is in its back-off after a timeout) is waited for until the deadline: "no answer" is never taken
    for "no clone", or a second POST could make a second VM."""
    pause = 0.5
    while True:
        try:
            return read()
        except NodeUnreachable as exc:
            remaining = run.deadline.remaining()
            if not run.stopped and isinstance(exc, DeadlineExceeded):
                look_at_deadline(run, plan, res, exc)
            if run.stopped or (remaining is not None and remaining <= pause):
                res.state = "unknown"
                raise ProvisionFailed(res, exc, f"cannot tell whether the clone of VM {plan.vmid} "
                                      f"({plan.spec.name}) started: {exc.message}",
                                      f"check with: pvectl vm status {plan.vmid}; then run the command again "
                                      f"(it adopts or reports that VM)") from None
            time.sleep(pause)
            pause = min(pause * 2, 4.0)


def look_at_deadline(run: _Run, plan: _Plan, res: ProvisionResult, exc: DeadlineExceeded) -> NoReturn:
    """The clone request went out and the deadline passed before this run could tell whether it
    arrived: one look within the reporting grace says what it left (exit 4 with the clone's task to
    wait for, or the VM made, or that no VM appeared), never "cannot tell" while a node answers.
    A clone POST creates the VM's config (with `lock: clone`) before it answers (qemu-server
    API2/Qemu.pm::clone_vm, pve-semantics §4.3): no VM means the request did not take effect so far."""
    spec, vmid = plan.spec, plan.vmid
    try:
        with run.t.reporting():
            e = run.snapshot().vm(vmid)
            node = str(e.get("node", plan.node)) if e is not None else plan.node
            conf: dict[str, Any] = {}
            if e is not None and not cloning(e):
                conf = run.t.get(f"/nodes/{node}/qemu/{vmid}/config", node=node)
            ours = e is not None and (cloning(e) and known_name(e) in (None, spec.name)
                                      or request_of(conf.get("description")) == plan.request)
            upid = clone_upid(run, node, vmid, running=e is not None and cloning(e)) if ours else None
            # no VM: a clone task of this request that already failed (Proxmox removed what it made, §4.4)
            # runs on the template's node, where its log names the new VMID
            ended = clone_upid(run, plan.template.node, vmid, running=False, since=plan.sent) if e is None else None
    except PvectlError as read_exc:
        res.state = "unknown"
        raise ProvisionFailed(res, exc, f"the clone request for VM {vmid} ({spec.name}) got no answer before the "
                                        f"deadline, and whether it arrived cannot be told: {read_exc.message}",
                              f"check with: pvectl vm status {vmid}; then run the command again (it adopts or "
                              f"reports that VM)") from None
    if ended is not None:
        res.state, res.upids["clone"] = "absent", ended
        msg = (f"the clone request for VM {vmid} ({spec.name}) got no answer before the deadline; its clone task "
               f"{ended} has ended and VM {vmid} is not there (a failed clone leaves nothing): nothing was created")
        run.emit(spec.name, vmid, "clone", "failed", msg)
        raise ProvisionFailed(res, exc, msg, f"see why: pvectl task log {ended}; then run the command again: "
                                             f"{run.writer.command}")
    if e is None or not ours:
        res.state = "absent"
        taken = "" if e is None else f"; VMID {vmid} is another client's VM now"
        msg = (f"the clone request for VM {vmid} ({spec.name}) got no answer before the deadline, and no VM of this "
               f"run is there{taken}: nothing changed so far (the request may or may not have been applied: one only "
               f"delayed in transit would still make VM {vmid})")
        raise ProvisionFailed(res, exc, msg, f"check with: pvectl vm status {vmid}; then run the command again "
                                             f"(it adopts or reports that VM): {run.writer.command}")
    res.node = node
    if upid is not None:
        res.upids["clone"] = upid
    if cloning(e):
        res.state = "cloning"
        what = (f"VM {vmid} is still being cloned at the deadline (the clone request for '{spec.name}' got no "
                f"answer in time)")
        hint = (f"resume with: pvectl task wait {upid}, then run the command again to finish it" if upid else
                f"run the command again once the clone is done (pvectl vm status {vmid}): it finishes VM {vmid}")
    else:
        res.state = str(e.get("status", "stopped"))
        what = f"VM {vmid} ({spec.name}) was cloned on {node}, but the deadline passed before its answer came"
        hint = f"resume with: {run.writer.command} (it finishes VM {vmid})"
    if upid:
        what += f" (task {upid})"
    run.emit(spec.name, vmid, "clone", "failed", what)
    raise ProvisionFailed(res, exc, what, hint)


def keep_or_yield(run: _Run, plan: _Plan, res: ProvisionResult) -> ProvisionResult | None:
    """After this run's clone ended: the lowest VMID that carries the name keeps it. Returns None when
    this run keeps it; otherwise removes this run's VM and returns the result naming the other one.
    A VM of this run that cannot be removed is a failure that names it (never `exists`, exit 0)."""
    spec, tpl = plan.spec, plan.template
    assert res.vmid is not None
    names = Names(run, spec.name, sent=True)
    try:
        _, lower = names.settle(own=res.vmid, below=res.vmid)
    except NameInFlight as exc:
        left = withdraw(run, plan, res, wait=False)
        what = ("is being removed" if left is None else
                f"could not be removed ({left.message}): delete it: pvectl vm delete {res.vmid} --yes")
        raise ProvisionFailed(res, exc, f"{exc.message}; VM {res.vmid}, made by this run, {what} (a clone with a "
                                        f"lower VMID may carry the name '{spec.name}')", exc.hint) from None
    if not lower:
        return None
    winner = lower[0]
    wvmid, wnode = int(winner["vmid"]), str(winner.get("node"))
    other = (f"another client cloned '{spec.name}' at the same time, as VM {wvmid} on {wnode} (the lower VMID keeps "
             f"the name)")
    left = withdraw(run, plan, res, wait=True)
    if left is not None:
        res.state = "stopped"
        msg = f"{other}, and VM {res.vmid}, made by this run, could not be removed: {left.message}"
        run.emit(spec.name, res.vmid, "cleanup", "failed", msg)
        raise ProvisionFailed(res, left, msg, f"delete it: pvectl vm delete {res.vmid} --yes (running the command "
                                              f"again removes it too)")
    msg = f"{other}; VM {res.vmid}, made by this run, was removed"
    run.emit(spec.name, wvmid, "done", "warning", msg)
    out = ProvisionResult(spec.name, tpl.vmid, wvmid, wnode, "exists", str(winner.get("status", "unknown")),
                          steps=["exists"], warnings=[msg], upids=dict(res.upids))
    if cloning(winner):
        out.state = "cloning"
        upid = names.upid(winner)
        if upid:
            out.upids["in progress"] = upid
    return out


def withdraw(run: _Run, plan: _Plan, res: ProvisionResult, *, wait: bool) -> PvectlError | None:
    """Remove this run's own just-made VM (it lost the name). None once it is removed (or its removal
    runs), else the error that left it in place."""
    spec = plan.spec
    node = res.node or plan.node
    assert res.vmid is not None
    summary = f"delete VM {res.vmid} ({spec.name}): another VM took the name first"
    run.emit(spec.name, res.vmid, "cleanup", "start", summary)
    removal = remove_vm(run, node, res.vmid, summary, wait=wait)
    if removal.upid:
        res.upids["cleanup"] = removal.upid
    if removal.error is not None:
        return removal.error
    res.steps.append("cleanup")
    res.state = "absent"
    return None


def fail_nothing_made(run: _Run, plan: _Plan, res: ProvisionResult, step: str, exc: PvectlError, *,
                      created: bool | None, hint: str | None = None) -> None:
    """The clone did not produce a VM. `created=None`: check with a re-read that nothing is left (a failed
    clone task frees its volumes and removes the config: §4.4)."""
    spec = plan.spec
    left = None
    if created is None:
        try:
            left = run.snapshot().vm(plan.vmid)
        except PvectlError as read_exc:
            res.state = "unknown"
            msg = (f"clone of template {plan.template.vmid} as VM {plan.vmid} ({spec.name}) failed: {exc.message}; "
                   f"could not check whether anything was left ({read_exc.message})")
            run.emit(spec.name, plan.vmid, step, "failed", msg)
            raise ProvisionFailed(res, exc, msg, f"check with: pvectl vm status {plan.vmid}") from None
    if left is not None and left.get("name") == spec.name:
        res.state = str(left.get("status", "unknown"))
        res.node = str(left.get("node", plan.node))
        msg = f"clone of template {plan.template.vmid} as VM {plan.vmid} ({spec.name}) failed: {exc.message}; " \
              f"VM {plan.vmid} still exists on {res.node}"
        hint_: str | None = hint or (f"look at it (pvectl vm status {plan.vmid}) and delete it: "
                                     f"pvectl vm delete {plan.vmid} --yes")
    else:
        res.state = "absent"
        verified = " (checked: Proxmox removed the half-made VM)" if created is None else ""
        msg = f"clone of template {plan.template.vmid} as VM {plan.vmid} ({spec.name}) failed: {exc.message}; " \
              f"nothing was created{verified}"
        hint_ = hint or exc.hint
        res.vmid = plan.vmid
    run.emit(spec.name, plan.vmid, step, "failed", msg)
    raise ProvisionFailed(res, exc, msg, hint_)
