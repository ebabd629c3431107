"""Executing a plan: clone, configure, grow, start, wait for an IP; one VM or many."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import (
    AlreadyExists,
    ApiError,
    GuardRefused,
    Locked,
    NodeUnreachable,
    NotFound,
    PvectlError,
    TaskFailed,
    TaskTimeout,
    UsageError,
)
from ..tasks import Deadline, Progress, Task
from ..units import parse_prop, size_bytes
from ..vms import split_tags
from ..writes import Write, Writer
from .cloudinit import _NET_MODELS, boot_disk, net_with_bridge, pick_ip
from .limits import _Limits, _LimitedTransport
from .plan import MARKER, _MARKER_RE, _Plan, _Run, _plan
from .types import CloneSpec, EventCallback, ProvisionFailed, ProvisionResult
from .vmids import allocator_for

if TYPE_CHECKING:
    from ..cluster import Cluster

CLONE_ATTEMPTS = 5           # VMIDs tried after `already exists`
LOCK_ATTEMPTS = 4            # clone attempts after a lock timeout (pain point #2: server-side lock waits)
IP_WAIT_WITHOUT_DEADLINE = 300.0


def provision(cluster: Cluster, spec: CloneSpec, *, deadline: Deadline | float | None, writer: Writer,
              on_event: EventCallback | None = None) -> ProvisionResult:
    """Make one VM from a template (see the module docstring). Returns the result (`result` created,
    exists or planned); raises GuardRefused / UsageError / NotFound before anything is written, and
    ProvisionFailed (with `.result`) for a failure once the workflow has started."""
    run = _Run(cluster, writer, Deadline.of(deadline), on_event)
    snap = run.snapshot()
    plan_or_result = _plan(run, spec, snap)
    if isinstance(plan_or_result, ProvisionResult):
        return plan_or_result
    return _execute(run, plan_or_result)


def provision_many(cluster: Cluster, specs: Sequence[CloneSpec], *, deadline: Deadline | float | None,
                   writer: Writer, max_per_node: int = 2, max_per_storage: int = 2, max_workers: int = 8,
                   on_event: EventCallback | None = None) -> list[ProvisionResult]:
    """Make several VMs concurrently (bounded: `max_per_node` clone tasks per node, `max_per_storage`
    full clones per target storage, at most 3 requests in flight per node). Never raises for one VM's
    failure: each result carries its own `error`. Results are in the order of `specs`. Every VMID is
    allocated up front in spec order, so the plan (and a dry-run) is deterministic."""
    from ..cluster import Cluster as _Cluster

    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"the same name is given more than once: {', '.join(dupes)}")
    limited = _Cluster(cluster.config, _LimitedTransport(cluster.transport))
    w = Writer(limited, writer.command, writer.dry_run, writer.out, writer.planned)
    run = _Run(limited, w, Deadline.of(deadline), on_event, _Limits(max_per_node, max_per_storage))
    run.allocator = allocator_for(cluster)
    snap = run.snapshot()
    results: list[ProvisionResult | None] = [None] * len(specs)
    plans: list[tuple[int, _Plan]] = []
    for i, spec in enumerate(specs):
        try:
            p = _plan(run, spec, snap)
        except PvectlError as exc:
            run.emit(spec.name, spec.vmid, "plan", "failed", exc.message)
            results[i] = ProvisionResult(spec.name, vmid=spec.vmid, result="failed", error=exc)
            continue
        if isinstance(p, ProvisionResult):
            results[i] = p
        else:
            plans.append((i, p))

    def work(item: tuple[int, _Plan]) -> None:
        i, p = item
        try:
            results[i] = _execute(run, p)
        except ProvisionFailed as exc:
            r = exc.result
            r.error = exc
            results[i] = r
        except PvectlError as exc:
            results[i] = ProvisionResult(p.spec.name, p.template.vmid, p.vmid, p.node, "failed", error=exc)

    if run.dry_run or len(plans) <= 1:
        for item in plans:
            work(item)
    else:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(plans))),
                                thread_name_prefix="pvectl-provision") as pool:
            list(pool.map(work, plans))
    return [r for r in results if r is not None]



class _StepFailed(Exception):
    def __init__(self, step: str, cause: PvectlError) -> None:
        super().__init__(step)
        self.step = step
        self.cause = cause


def _execute(run: _Run, plan: _Plan) -> ProvisionResult:
    spec = plan.spec
    res = ProvisionResult(spec.name, plan.template.vmid, plan.vmid, plan.node, "failed",
                          warnings=list(plan.warnings))
    created = _clone(run, plan, res)              # raises ProvisionFailed when nothing is left
    if not created:                               # dry-run
        _dry_run_rest(run, plan, res)
        return res
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


def _wait_task(run: _Run, plan: _Plan, res: ProvisionResult, step: str, upid: str) -> None:
    res.upids[step] = upid
    name = plan.spec.name

    def progress(p: Progress) -> None:
        run.emit(name, res.vmid, step, "progress", p.line, p.fraction)

    try:
        result = Task(run.cluster, upid).wait(run.deadline, on_progress=progress)
    except TaskFailed as exc:
        run.writer.task_done(upid, exc.exitstatus)
        raise
    except TaskTimeout:
        run.writer.task_done(upid, "still running at the deadline")
        raise
    run.writer.task_done(upid, result.exitstatus)
    res.warnings.extend(result.warnings)


def _clone(run: _Run, plan: _Plan, res: ProvisionResult) -> bool:
    """Post the clone and wait for it. True when the VM exists afterwards, False in dry-run."""
    spec, tpl = plan.spec, plan.template
    params: dict[str, Any] = {"newid": plan.vmid, "name": spec.name}
    params["full"] = 1 if plan.full else 0
    if plan.node != tpl.node:
        params["target"] = plan.node
    if plan.storage:
        params["storage"] = plan.storage
    tdesc = str(plan.template_config.get("description", "") or "").strip()
    marker = MARKER.format(vmid=tpl.vmid, name=tpl.name)
    # the clone copies the template's description unless one is given (§4.3): keep it below the marker
    params["description"] = marker + (f"\n\n{tdesc}" if tdesc and not _MARKER_RE.search(tdesc) else "")

    sems: list[threading.BoundedSemaphore] = []
    if run.limits is not None:
        sems.append(run.limits.sem(f"node:{tpl.node}", run.limits.max_per_node))
        if plan.full and plan.storage:
            key = plan.storage if plan.storage_shared else f"{plan.node}/{plan.storage}"
            sems.append(run.limits.sem(f"storage:{key}", run.limits.max_per_storage))
    for s in sems:
        s.acquire()
    try:
        return _clone_attempts(run, plan, res, params)
    finally:
        for s in reversed(sems):
            s.release()


def _clone_attempts(run: _Run, plan: _Plan, res: ProvisionResult, params: dict[str, Any]) -> bool:
    spec, tpl = plan.spec, plan.template
    id_attempts = lock_attempts = 0
    resend_same = False
    while True:
        vmid = plan.vmid
        params["newid"] = vmid
        res.vmid = vmid
        mode = "full" if plan.full else "linked"
        write = Write("POST", f"/nodes/{tpl.node}/qemu/{tpl.vmid}/clone", dict(params), tpl.node,
                      f"{mode} clone of template {tpl.vmid} ({tpl.name}) as VM {vmid} '{spec.name}'"
                      + (f" on {plan.node}" if plan.node != tpl.node else ""))
        run.emit(spec.name, vmid, "clone", "start", write.summary)
        try:
            upid = run.writer.send(write)
        except AlreadyExists as exc:
            if resend_same and _adopt(run, plan, res):
                return True
            id_attempts += 1
            _next_vmid(run, plan, res, exc, id_attempts)
            resend_same = False
            continue
        except NodeUnreachable as exc:
            if not exc.uncertain:
                _fail_nothing_made(run, plan, res, "clone", exc, created=False)
            # the POST may have been applied: look before sending again (DESIGN §4)
            if _adopt(run, plan, res):
                return True
            if resend_same:
                _fail_nothing_made(run, plan, res, "clone", exc, created=False)
            resend_same = True          # same VMID: a second clone would hit `already exists`
            continue
        except Locked as exc:
            lock_attempts += 1
            if lock_attempts >= LOCK_ATTEMPTS or not _backoff(run, lock_attempts):
                _fail_nothing_made(run, plan, res, "clone", exc, created=False)
            run.emit(spec.name, vmid, "clone", "warning", f"{exc.message}; retrying")
            continue
        except PvectlError as exc:
            _fail_nothing_made(run, plan, res, "clone", exc, created=False)
        if upid is None:                # dry-run
            res.steps.append("clone")
            return False
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
                if lock_attempts < LOCK_ATTEMPTS and _backoff(run, lock_attempts):
                    run.emit(spec.name, vmid, "clone", "warning", f"clone task: {text}; retrying")
                    continue
            _fail_nothing_made(run, plan, res, "clone", exc, created=None)
        except TaskTimeout as exc:
            res.state = "cloning"
            raise ProvisionFailed(res, exc, f"the clone of VM {vmid} ({spec.name}) is still running at the "
                                  f"deadline", f"resume with: pvectl task wait {exc.upid}") from None
        except NodeUnreachable as exc:
            res.state = "unknown"
            raise ProvisionFailed(res, exc, f"lost contact while cloning VM {vmid} ({spec.name}) on {tpl.node}: "
                                  f"{exc.message}", f"check the task: pvectl task status {upid}") from None
        res.steps.append("clone")
        run.emit(spec.name, vmid, "clone", "done", f"VM {vmid} cloned on {plan.node}")
        return True


def _backoff(run: _Run, attempt: int) -> bool:
    """Sleep before a retry (jittered, growing); False when the deadline leaves no room."""
    pause = min(1.0 * 2 ** (attempt - 1), 8.0) * random.uniform(0.75, 1.25)
    remaining = run.deadline.remaining()
    if remaining is not None and remaining <= pause:
        return False
    time.sleep(pause)
    return True


def _next_vmid(run: _Run, plan: _Plan, res: ProvisionResult, exc: PvectlError, attempts: int) -> None:
    if plan.explicit_vmid:
        _fail_nothing_made(run, plan, res, "clone", exc, created=False,
                           hint="leave --vmid out to take the next free VMID")
    if attempts >= CLONE_ATTEMPTS:
        _fail_nothing_made(run, plan, res, "clone", exc, created=False,
                           hint=f"{attempts} VMIDs were taken by someone else in a row; retry later")
    old = plan.vmid
    rng = run.cluster.config.vmid_ranges.vms
    start, end = (rng.start, rng.end) if rng is not None else (100, 999999999)
    used = run.snapshot().used_vmids | {old}
    plan.vmid = run.allocator.allocate(used, start, end)
    res.vmid = plan.vmid
    run.emit(plan.spec.name, plan.vmid, "clone", "warning",
             f"VMID {old} was taken meanwhile ({exc.message}); trying VMID {plan.vmid}")


def _adopt(run: _Run, plan: _Plan, res: ProvisionResult) -> bool:
    """After an uncertain clone POST: did it start? If VM `plan.vmid` exists with our name, wait until its
    `lock: clone` is gone (the task ended) and take it; False when it does not exist."""
    spec = plan.spec
    for pause in (0.0, 1.0):
        time.sleep(pause)
        try:
            e = run.snapshot().vm(plan.vmid)
        except PvectlError:
            continue
        if e is None:
            continue
        if e.get("name") != spec.name:
            return False
        run.emit(spec.name, plan.vmid, "clone", "info", f"VM {plan.vmid} exists: the clone request did arrive")
        while True:
            e = run.snapshot().vm(plan.vmid)
            if e is None:
                return False           # the clone failed and Proxmox removed it
            if e.get("lock") != "clone":
                res.node = str(e.get("node", plan.node))
                plan.node = res.node
                res.steps.append("clone")
                return True
            if run.deadline.expired():
                return False
            time.sleep(0.5)
    return False


def _fail_nothing_made(run: _Run, plan: _Plan, res: ProvisionResult, step: str, exc: PvectlError, *,
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
        hint_ = hint or f"look at it (pvectl vm status {plan.vmid}) and delete it: pvectl vm delete {plan.vmid} --yes"
    else:
        res.state = "absent"
        verified = " (checked: Proxmox removed the half-made VM)" if created is None else ""
        msg = f"clone of template {plan.template.vmid} as VM {plan.vmid} ({spec.name}) failed: {exc.message}; " \
              f"nothing was created{verified}"
        hint_ = hint or exc.hint
        res.vmid = plan.vmid
    run.emit(spec.name, plan.vmid, step, "failed", msg)
    raise ProvisionFailed(res, exc, msg, hint_)


def _config_path(plan: _Plan, res: ProvisionResult) -> str:
    return f"/nodes/{res.node}/qemu/{res.vmid}"


def _configure(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """ONE config PUT with the digest read after the clone (checksum mismatch = someone else changed it)."""
    spec = plan.spec
    assert res.node is not None and res.vmid is not None
    try:
        conf = _read_unlocked(run, res)
    except PvectlError as exc:
        raise _StepFailed("config", exc) from None
    params = _config_params(run, plan, conf)
    if not params:
        return
    params["digest"] = conf.get("digest")
    keys = ", ".join(k for k in params if k not in ("digest", "delete"))
    write = Write("PUT", _config_path(plan, res) + "/config", params, res.node,
                  f"configure VM {res.vmid} ({spec.name}): {keys}")
    run.emit(spec.name, res.vmid, "config", "start", write.summary)
    try:
        run.writer.send(write)
    except PvectlError as exc:
        raise _StepFailed("config", exc) from None
    res.steps.append("config")
    run.emit(spec.name, res.vmid, "config", "done", f"VM {res.vmid} configured ({keys})")


def _config_params(run: _Run, plan: _Plan, conf: dict[str, Any]) -> dict[str, Any]:
    spec = plan.spec
    p: dict[str, Any] = {}
    if spec.cores is not None:
        p["cores"] = int(spec.cores)
    if plan.memory is not None:
        p["memory"] = plan.memory
    if plan.bridge:
        p["net0"] = net_with_bridge(conf.get("net0"), plan.bridge)
    if plan.ipconfig and conf.get("ipconfig0") != plan.ipconfig:
        p["ipconfig0"] = plan.ipconfig
    if plan.ciuser and conf.get("ciuser") != plan.ciuser:
        p["ciuser"] = plan.ciuser
    if plan.ssh_keys and conf.get("sshkeys") != plan.ssh_keys:
        p["sshkeys"] = plan.ssh_keys
    # the clone copied the template's tags (§4.3), including the one that marks templates
    ttag = run.cluster.config.tags.templates
    tags = split_tags(conf.get("tags"))
    if ttag and ttag in tags:
        rest = [t for t in tags if t != ttag]
        if rest:
            p["tags"] = ";".join(rest)
        else:
            p["delete"] = "tags"
    return p


def _read_unlocked(run: _Run, res: ProvisionResult) -> dict[str, Any]:
    """The new VM's config once no `lock` is left (a just-finished clone may still show `lock: clone`
    to a reader on another node for a moment; pain point #2, bpg #133)."""
    while True:
        conf = run.t.get(f"/nodes/{res.node}/qemu/{res.vmid}/config", node=res.node)
        if not conf.get("lock") or run.deadline.expired():
            return conf
        time.sleep(0.2)


def _resize(run: _Run, plan: _Plan, res: ProvisionResult, conf: dict[str, Any] | None = None) -> None:
    spec = plan.spec
    if not spec.disk_size:
        return
    from ..guards import check_disk_resize

    try:
        if conf is None:
            conf = run.t.get(f"/nodes/{res.node}/qemu/{res.vmid}/config", node=res.node)
        disk = spec.disk or boot_disk(conf)
        if disk is None or disk not in conf:
            raise GuardRefused(f"VM {res.vmid} has no disk {disk or '(boot disk)'} to grow",
                               "name the disk with --disk (e.g. virtio0)")
        current = size_bytes(parse_prop(str(conf[disk]))[1].get("size"))
        if current is not None:
            check_disk_resize(vmid=res.vmid or 0, disk=disk, current=current, size=spec.disk_size)
        write = Write("PUT", _config_path(plan, res) + "/resize", {"disk": disk, "size": spec.disk_size},
                      res.node or plan.node, f"grow disk {disk} of VM {res.vmid} ({spec.name}) to {spec.disk_size}")
        run.emit(spec.name, res.vmid, "resize", "start", write.summary)
        upid = run.writer.send(write)
        if upid is not None:
            _wait_task(run, plan, res, "resize", str(upid))
    except PvectlError as exc:
        raise _StepFailed("resize", exc) from None
    res.steps.append("resize")
    run.emit(spec.name, res.vmid, "resize", "done", f"disk {disk} grown ({spec.disk_size})")


def _start(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    spec = plan.spec
    write = Write("POST", _config_path(plan, res) + "/status/start", {}, res.node or plan.node,
                  f"start VM {res.vmid} ({spec.name})")
    run.emit(spec.name, res.vmid, "start", "start", write.summary)
    try:
        upid = run.writer.send(write)
        if upid is not None:
            _wait_task(run, plan, res, "start", str(upid))
    except PvectlError as exc:
        raise _StepFailed("start", exc) from None
    res.steps.append("start")
    run.emit(spec.name, res.vmid, "start", "done", f"VM {res.vmid} started")


def _wait_ip(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """Poll the guest agent until the guest has an address (§13). `QEMU guest agent is not running`
    means not booted yet: keep polling. `No QEMU guest agent configured` cannot change: stop. A global
    IPv6 address is taken only when no IPv4 address has appeared for three answers in a row."""
    spec = plan.spec
    path = _config_path(plan, res) + "/agent/network-get-interfaces"
    remaining = run.deadline.remaining()
    limit = Deadline(IP_WAIT_WITHOUT_DEADLINE) if remaining is None else run.deadline
    run.emit(spec.name, res.vmid, "ip", "start", f"waiting for VM {res.vmid} to report an IP address")
    pause, v6_seen = 0.2, 0
    last = "no answer yet"
    while True:
        try:
            data = run.t.get(path, node=res.node)
            result = data.get("result") if isinstance(data, dict) else None
            if isinstance(result, dict) and "error" in result:
                # an agent error object is a 200 (C16 step 6)
                desc = result["error"].get("desc", result["error"])
                raise _StepFailed("ip", ApiError(f"the guest agent of VM {res.vmid} cannot list interfaces: {desc}"))
            v4, v6 = pick_ip(result)
            if v4:
                res.ip = v4
                break
            if v6:
                v6_seen += 1
                if v6_seen >= 3:
                    res.ip = v6
                    break
            last = "the agent reports no usable address yet"
        except ApiError as exc:
            text = exc.message
            if "No QEMU guest agent configured" in text:
                raise _StepFailed("ip", ApiError(
                    f"VM {res.vmid} has no QEMU guest agent configured, so its IP address cannot be read",
                    hint="enable it in the template (agent: 1) and install qemu-guest-agent in the image")) from None
            if "guest agent is not running" in text or "got timeout" in text:
                last = text
            elif isinstance(exc, NodeUnreachable) and exc.retryable:
                last = text
            else:
                raise _StepFailed("ip", exc) from None
        remaining = limit.remaining()
        if remaining is not None and remaining <= 0:
            raise _StepFailed("ip", TaskTimeout(res.upids.get("start", "-"), message=(
                f"VM {res.vmid} ({spec.name}) reported no IP address before the deadline ({last})"),
                hint=f"the VM is running; look at its console, or ask again later: pvectl vm status {res.vmid}"))
        time.sleep(min(pause, max(remaining or pause, 0.05)))
        pause = min(pause * 1.5, 2.0)
    res.steps.append("ip")
    run.emit(spec.name, res.vmid, "ip", "done", f"VM {res.vmid} has IP {res.ip}")


def _vm_state(run: _Run, res: ProvisionResult) -> str:
    try:
        st = run.t.get(f"/nodes/{res.node}/qemu/{res.vmid}/status/current", node=res.node)
        return str(st.get("status", "unknown")) + (f", lock {st['lock']}" if st.get("lock") else "")
    except NotFound:
        return "absent"
    except PvectlError as exc:
        return f"unknown ({exc.message})"


def _after_failure(run: _Run, plan: _Plan, res: ProvisionResult, step: str, cause: PvectlError) -> None:
    """A step after the clone failed: say what exists, clean up if asked, raise ProvisionFailed."""
    spec = plan.spec
    res.state = _vm_state(run, res)
    done = ", ".join(res.steps) or "none"
    todo = [s for s in ("config", "resize", "start", "ip") if _wanted(plan, s) and s not in res.steps]
    base = (f"{step} failed for VM {res.vmid} ({spec.name}) on {res.node}: {cause.message}. "
            f"The VM exists ({res.state}); steps done: {done}")
    run.emit(spec.name, res.vmid, step, "failed", f"{step} failed: {cause.message}")
    if spec.cleanup_on_failure and not res.state.startswith("unknown"):
        try:
            _cleanup(run, plan, res)
        except PvectlError as exc:
            raise ProvisionFailed(res, cause, f"{base}; the cleanup failed too: {exc.message}",
                                  f"delete it by hand: pvectl vm delete {res.vmid} --yes") from None
        raise ProvisionFailed(res, cause, f"{base}; deleted it (--cleanup-on-failure)", cause.hint) from None
    hint = (f"delete it with `pvectl vm delete {res.vmid} --yes` and run the command again, or finish the "
            f"remaining steps ({', '.join(todo) or 'none'}) by hand")
    if cause.hint:
        hint = f"{cause.hint}; then {hint}"
    raise ProvisionFailed(res, cause, base, hint) from None


def _wanted(plan: _Plan, step: str) -> bool:
    s = plan.spec
    return {"config": True, "resize": bool(s.disk_size), "start": s.start or s.wait_ip, "ip": s.wait_ip}[step]


def _cleanup(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """Stop the VM if it runs, then DELETE with purge=1&destroy-unreferenced-disks=1 (the seed's delete)
    and wait. The VM is ours (just made by this run), so no --yes is asked."""
    spec = plan.spec
    node = res.node or plan.node
    run.emit(spec.name, res.vmid, "cleanup", "start", f"deleting VM {res.vmid} ({spec.name})")
    st = run.t.get(f"/nodes/{node}/qemu/{res.vmid}/status/current", node=node)
    if st.get("status") == "running":
        upid = run.writer.send(Write("POST", f"/nodes/{node}/qemu/{res.vmid}/status/stop", {}, node,
                                     f"stop VM {res.vmid} ({spec.name}) to delete it"))
        if upid:
            _wait_task(run, plan, res, "cleanup-stop", str(upid))
    upid = run.writer.send(Write("DELETE", f"/nodes/{node}/qemu/{res.vmid}",
                                 {"purge": 1, "destroy-unreferenced-disks": 1}, node,
                                 f"delete VM {res.vmid} ({spec.name}) after the failure"))
    if upid:
        _wait_task(run, plan, res, "cleanup", str(upid))
    res.steps.append("cleanup")
    res.state = "absent"
    run.emit(spec.name, res.vmid, "cleanup", "done", f"VM {res.vmid} deleted")


def _dry_run_rest(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """Print the writes that would follow the clone. The clone's config is predicted from the template's:
    Proxmox copies it (§4.3); the digest and the new MAC are not known before the clone."""
    spec = plan.spec
    predicted = {k: v for k, v in plan.template_config.items() if k not in ("digest", "template")}
    if plan.bridge and predicted.get("net0"):
        # the clone gets a new MAC (§4.3): leave it out, Proxmox generates one (add_random_macs)
        first, opts = parse_prop(str(predicted["net0"]))
        model = next((m for m in _NET_MODELS if m in opts), first or "virtio")
        opts.pop(model, None)
        predicted["net0"] = ",".join([model] + [f"{k}={v}" for k, v in opts.items()])
    params = _config_params(run, plan, predicted)
    if params:
        keys = ", ".join(k for k in params if k != "delete")
        run.writer.send(Write("PUT", _config_path(plan, res) + "/config", params, plan.node,
                              f"configure VM {plan.vmid} ({spec.name}): {keys} (with the digest read after the clone)"))
        res.steps.append("config")
    if spec.disk_size:
        disk = spec.disk or boot_disk(predicted) or "scsi0"
        run.writer.send(Write("PUT", _config_path(plan, res) + "/resize", {"disk": disk, "size": spec.disk_size},
                              plan.node, f"grow disk {disk} of VM {plan.vmid} ({spec.name}) by/to {spec.disk_size}"))
        res.steps.append("resize")
    if spec.start or spec.wait_ip:
        run.writer.send(Write("POST", _config_path(plan, res) + "/status/start", {}, plan.node,
                              f"start VM {plan.vmid} ({spec.name})"))
        res.steps.append("start")
    if spec.wait_ip:
        run.writer.out.write(f"# then poll GET /api2/json{_config_path(plan, res)}/agent/network-get-interfaces "
                             "until the guest reports an address\n")
    res.result = "planned"
    res.state = "absent"
    run.emit(spec.name, plan.vmid, "done", "info", f"dry-run: VM {plan.vmid} ({spec.name}) planned on {plan.node}")


