"""The steps after the clone: configure (one config PUT), grow the disk, start, wait for an IP; what a
failure leaves; the cleanup; and the writes a dry-run prints for them."""

from __future__ import annotations

import time
from typing import Any

from ..errors import (ApiError, DeadlineExceeded, GuardRefused, NodeUnreachable, NotFound, PvectlError, TaskFailed,
                      TaskTimeout)
from ..deadline import Deadline
from ..tasks.task import Progress, Task
from ..units import disk_size_param, parse_prop, size_bytes
from ..vms.reads import split_tags
from ..writes import Write
from .cloudinit import _NET_MODELS, boot_disk, net_with_bridge, pick_ip
from .plan import CONFIGURED, _Plan, configured
from .state import _Run
from .types import ProvisionFailed, ProvisionResult

IP_WAIT_WITHOUT_DEADLINE = 300.0


class _StepFailed(Exception):
    def __init__(self, step: str, cause: PvectlError) -> None:
        super().__init__(step)
        self.step = step
        self.cause = cause


def _wait_task(run: _Run, plan: _Plan, res: ProvisionResult, step: str, upid: str) -> None:
    res.upids[step] = upid
    name = plan.spec.name

    def progress(p: Progress) -> None:
        run.emit(name, res.vmid, step, "progress", p.line, p.fraction)

    try:
        result = Task(run.session, upid).wait(run.deadline, on_progress=progress)
    except TaskFailed as exc:
        run.writer.task_done(upid, exc.exitstatus)
        raise
    except TaskTimeout:
        run.writer.task_done(upid, "still running at the deadline")
        raise
    run.writer.task_done(upid, result.exitstatus)
    res.warnings.extend(result.warnings)


def _config_path(plan: _Plan, res: ProvisionResult) -> str:
    return f"/nodes/{res.node}/qemu/{res.vmid}"


def _configure(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """ONE config PUT with the digest read after the clone (checksum mismatch = someone else changed it).
    Refused for a checksum mismatch, it is computed again from a fresh read, once: the run that made
    the VM and one that found it unfinished may configure it at the same moment."""
    spec = plan.spec
    assert res.node is not None and res.vmid is not None
    for attempt in (1, 2):
        try:
            conf = _read_unlocked(run, res)
        except PvectlError as exc:
            raise _StepFailed("config", exc) from None
        params = _config_params(run, plan, conf)
        if not params:
            return
        params["digest"] = conf.get("digest")
        keys = ", ".join(k for k in params if k not in ("digest", "delete", "description"))
        write = Write("PUT", _config_path(plan, res) + "/config", params, res.node,
                      f"configure VM {res.vmid} ({spec.name}): {keys}")
        _not_stopped(run, "config")
        run.emit(spec.name, res.vmid, "config", "start", write.summary)
        try:
            run.writer.send(write)
        except ApiError as exc:
            # Proxmox refuses a stale digest: `checksum mismatch (file change by other user?)`
            # (PVE::Tools::assert_if_modified); the PUT changed nothing, so it can be computed again
            if attempt == 1 and "checksum mismatch" in exc.message and not isinstance(exc, NodeUnreachable):
                run.emit(spec.name, res.vmid, "config", "warning", f"{exc.message}: reading the config again")
                continue
            raise _StepFailed("config", exc) from None
        except PvectlError as exc:
            raise _StepFailed("config", exc) from None
        res.steps.append("config")
        run.emit(spec.name, res.vmid, "config", "done", f"VM {res.vmid} configured ({keys})")
        return


def _config_params(run: _Run, plan: _Plan, conf: dict[str, Any]) -> dict[str, Any]:
    spec = plan.spec
    p: dict[str, Any] = {}
    if not configured(conf.get("description")):
        # the marker says the configure step ran, so a re-run knows what is left (see plan.configured)
        lines = str(conf.get("description")).split("\n")
        first = next(i for i, ln in enumerate(lines) if "; request " in ln)
        lines[first] += CONFIGURED
        p["description"] = "\n".join(lines)
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
    ttag = run.session.config.tags.templates
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
        conf: dict[str, Any] = run.t.get(f"/nodes/{res.node}/qemu/{res.vmid}/config", node=res.node)
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
    except PvectlError as exc:
        raise _StepFailed("resize", exc) from None
    _task_step(run, plan, res, "resize", Write(
        "PUT", _config_path(plan, res) + "/resize", {"disk": disk, "size": disk_size_param(spec.disk_size)}, res.node or plan.node,
        f"grow disk {disk} of VM {res.vmid} ({spec.name}) to {spec.disk_size}"), f"disk {disk} grown ({spec.disk_size})")


def _start(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    try:
        _task_step(run, plan, res, "start", Write("POST", _config_path(plan, res) + "/status/start", {},
                                                  res.node or plan.node, f"start VM {res.vmid} ({plan.spec.name})"),
                   f"VM {res.vmid} started")
    except _StepFailed as exc:
        # the start task fails with `VM <id> already running` (qemu-server QemuServer.pm::vm_start):
        # another run finishing the same VM started it first, which is what was asked
        if not (isinstance(exc.cause, TaskFailed) and "already running" in exc.cause.exitstatus):
            raise
        msg = f"VM {res.vmid} was started meanwhile by another run"
        res.warnings.append(msg)
        run.emit(plan.spec.name, res.vmid, "start", "info", msg)


def _task_step(run: _Run, plan: _Plan, res: ProvisionResult, step: str, write: Write, done: str) -> None:
    """One write that starts a task, and the wait for it (nothing is sent once the run was stopped)."""
    from ..taskwrites import send_task_write

    _not_stopped(run, step)
    run.emit(plan.spec.name, res.vmid, step, "start", write.summary)
    try:
        # an answer lost after the write was sent: the task it started is looked up, never resent
        upid = send_task_write(run.session, run.writer, write)
        if upid is not None:
            _wait_task(run, plan, res, step, str(upid))
    except PvectlError as exc:
        raise _StepFailed(step, exc) from None
    res.steps.append(step)
    run.emit(plan.spec.name, res.vmid, step, "done", done)


def _not_stopped(run: _Run, step: str) -> None:
    if run.stopped:
        raise _StepFailed(step, TaskTimeout("-", message=f"stopped (Ctrl-C) before the {step} step",
                                            hint="run the same command again to finish"))


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
    if step == "config" and not spec.cleanup_on_failure:
        _drop_template_tag(run, plan, res)
    if spec.cleanup_on_failure and not res.state.startswith("unknown"):
        try:
            _cleanup(run, plan, res)
        except PvectlError as exc:
            raise ProvisionFailed(res, cause, f"{base}; the cleanup failed too: {exc.message}",
                                  f"delete it by hand: pvectl vm delete {res.vmid} --yes") from None
        raise ProvisionFailed(res, cause, f"{base}; deleted it (--cleanup-on-failure)", cause.hint) from None
    hint = (f"delete it with `pvectl vm delete {res.vmid} --yes` and run the command again, or finish the "
            f"remaining steps ({', '.join(todo) or 'none'}) by hand")
    if isinstance(cause, DeadlineExceeded):
        # the deadline, not Proxmox, stopped it: the same command finishes the VM (it re-reads what is done)
        hint = f"resume with: {run.writer.command} (it finishes VM {res.vmid}: {', '.join(todo) or 'nothing left'})"
    elif cause.hint:
        hint = f"{cause.hint}; then {hint}"
    raise ProvisionFailed(res, cause, base, hint) from None


def _drop_template_tag(run: _Run, plan: _Plan, res: ProvisionResult) -> None:
    """The config PUT failed, so the clone still carries the template's tags (§4.3), the templates' tag
    among them: one small PUT takes that tag away, so the half-made VM never passes for a template."""
    ttag = run.session.config.tags.templates
    try:
        conf = run.t.get(f"/nodes/{res.node}/qemu/{res.vmid}/config", node=res.node)
    except PvectlError:
        return
    tags = split_tags(conf.get("tags"))
    if not ttag or ttag not in tags:
        return
    rest = [t for t in tags if t != ttag]
    params: dict[str, Any] = {"tags": ";".join(rest)} if rest else {"delete": "tags"}
    params["digest"] = conf.get("digest")
    try:
        run.writer.send(Write("PUT", _config_path(plan, res) + "/config", params, res.node or plan.node,
                              f"remove the tag '{ttag}' from VM {res.vmid} ({plan.spec.name}): it is not a template"))
    except PvectlError as exc:
        res.warnings.append(f"VM {res.vmid} still carries the tag '{ttag}' of the template ({exc.message})")


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
    predicted["description"] = plan.description or predicted.get("description")
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
        run.writer.send(Write("PUT", _config_path(plan, res) + "/resize", {"disk": disk, "size": disk_size_param(spec.disk_size)},
                              plan.node, f"grow disk {disk} of VM {plan.vmid} ({spec.name}) by/to {spec.disk_size}"))
        res.steps.append("resize")
    if spec.start or spec.wait_ip:
        run.writer.send(Write("POST", _config_path(plan, res) + "/status/start", {}, plan.node,
                              f"start VM {plan.vmid} ({spec.name})"))
        res.steps.append("start")
    if spec.wait_ip and run.writer.out is not None:      # (a library dry run prints nothing)
        run.writer.out.write(f"# then poll GET /api2/json{_config_path(plan, res)}/agent/network-get-interfaces "
                             "until the guest reports an address\n")
    res.result = "planned"
    res.state = "absent"
    run.emit(spec.name, plan.vmid, "done", "info", f"dry-run: VM {plan.vmid} ({spec.name}) planned on {plan.node}")


