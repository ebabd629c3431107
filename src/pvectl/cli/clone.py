"""`pvectl vm clone`: one VM, or `--count N` of them, from a template (library: pvectl.provision).

Progress goes to stderr: rich progress bars on a terminal, otherwise one line per event (copy progress
is reported every 10 %). The result goes to stdout (a table, or JSON). Exit codes: 0 created or already
there (a re-run finishes what an earlier run left), 1 a step failed (in bulk: any VM failed; the others
are still reported), 2 bad arguments, 3 refused (name taken by another VM, an existing VM that differs
from the command, too few free VMIDs, clone to a node it cannot reach), 4 still running at the deadline
(in bulk: when that is the only problem), 5 no node reachable, 130 Ctrl-C (every VM made or in flight is
listed with its UPID, and the command that resumes).
"""

from __future__ import annotations

import sys

# `pvectl --help` builds this parser: no typing/threading/render imports at module level (DESIGN §3b)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from ..provision import CloneSpec, ProvisionEvent, ProvisionResult
    from ..render import Column
    from .context import Context


def summary_columns() -> list[Column]:
    from ..render import Column

    return [Column("vmid", "VMID"), Column("name", "NAME"), Column("node", "NODE"), Column("status", "STATUS"),
            Column("ip", "IP"), Column("result", "RESULT"),
            Column("error", "ERROR", lambda e: "-" if not e else str(e.get("message", ""))[:70])]


def add_arguments(p: Any) -> None:
    p.add_argument("template", metavar="TEMPLATE", help="template VMID, name or tag")
    p.add_argument("name", metavar="NAME", nargs="?",
                   help="name of the new VM (with --count: the pattern, or the prefix of NAME-{n})")
    p.add_argument("--vmid", type=int, help="VMID for the new VM (default: the lowest free one in vmid_ranges.vms)")
    p.add_argument("--target", metavar="NODE|auto",
                   help="node for the new VM (default: the template's node; auto: the online node with the most "
                        "free memory the clone can go to)")
    p.add_argument("--storage", help="target storage of a full clone (default: defaults.storage)")
    p.add_argument("--linked", action="store_true",
                   help="linked clone (shares the template's base disk; stays on the template's storage)")
    p.add_argument("--cores", type=int, help="CPU cores")
    p.add_argument("--memory", help="memory: MiB (4096) or with a unit (4G, 4096M)")
    p.add_argument("--bridge", help="bridge for net0 (default: defaults.network_bridge)")
    p.add_argument("--ip", help="ipconfig0: dhcp, or CIDR[,gw=IP] (default: dhcp unless the template sets one)")
    p.add_argument("--ciuser", help="cloud-init user (default: cloudinit.default_user)")
    p.add_argument("--ssh-keys", metavar="FILE", help="public keys file (default: cloudinit.ssh_keys_file)")
    p.add_argument("--disk", help="disk to grow with --disk-size (default: the boot disk, e.g. scsi0)")
    p.add_argument("--disk-size", metavar="SIZE", help="grow the disk: +10G (by) or 50G (to); never shrinks")
    p.add_argument("--start", action="store_true", help="start the VM")
    p.add_argument("--wait-ip", action="store_true",
                   help="start the VM and wait until the guest agent reports an IP address")
    p.add_argument("--count", type=int, help="make N VMs (names from --name-pattern)")
    p.add_argument("--name-pattern", metavar="PATTERN", help="names for --count, e.g. web-{n}")
    p.add_argument("--name-start", metavar="N|next", default="1",
                   help="first {n} of --name-pattern (default 1; next: after the highest one in use)")
    p.add_argument("--max-per-node", type=int, default=2, help="clone tasks at once per node (default 2)")
    p.add_argument("--max-per-storage", type=int, default=2, help="full clones at once per storage (default 2)")
    p.add_argument("--cleanup-on-failure", action="store_true",
                   help="delete the new VM when a step after the clone fails")


class Display:
    """Progress for humans on stderr; thread-safe. Rich bars on a TTY (imported only then)."""

    def __init__(self, out: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.out = out or sys.stderr
        import threading

        self.tty = self.out.isatty() if tty is None else tty
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], int] = {}
        self._progress: Any = None
        self._bars: dict[str, Any] = {}

    def __enter__(self) -> Display:
        if self.tty:
            from ..render import progress_bars

            self._progress = progress_bars(self.out)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, ev: ProvisionEvent) -> None:
        with self._lock:
            if self._progress is not None:
                self._rich(ev)
            else:
                self._line(ev)

    def _line(self, ev: ProvisionEvent) -> None:
        if ev.state == "progress":
            if ev.fraction is None:
                return
            decile = int(ev.fraction * 10)
            key = (ev.name, ev.step)
            if self._last.get(key, -1) >= decile:
                return
            self._last[key] = decile
            msg = f"{ev.step} {ev.fraction * 100:.0f}%"
        else:
            msg = ev.message
        vm = f"{ev.name}" + (f" [{ev.vmid}]" if ev.vmid else "")
        tag = {"failed": "FAILED: ", "warning": "warning: "}.get(ev.state, "")
        self.out.write(f"pvectl: {vm}: {tag}{msg}\n")
        self.out.flush()

    def _rich(self, ev: ProvisionEvent) -> None:
        p = self._progress
        bar = self._bars.get(ev.name)
        label = f"{ev.name}" + (f" [{ev.vmid}]" if ev.vmid else "")
        if bar is None:
            bar = self._bars[ev.name] = p.add_task(f"{label} {ev.step}", total=100)
        if ev.state == "progress" and ev.fraction is not None:
            p.update(bar, description=f"{label} {ev.step}", completed=ev.fraction * 100)
        elif ev.state in ("failed", "warning"):
            p.console.print(f"{label}: {'FAILED' if ev.state == 'failed' else 'warning'}: {ev.message}")
            if ev.state == "failed":
                p.update(bar, description=f"{label} [red]failed at {ev.step}")
        elif ev.step == "done":
            p.update(bar, description=f"{label} done", completed=100)
        else:
            p.update(bar, description=f"{label} {ev.step}")


def _base_spec(ctx: Context, name: str) -> CloneSpec:
    from ..provision import CloneSpec

    a = ctx.args
    return CloneSpec(template=a.template, name=name, vmid=a.vmid, target=a.target, storage=a.storage,
                     linked=a.linked, cores=a.cores, memory=a.memory, bridge=a.bridge, ip=a.ip, ciuser=a.ciuser,
                     ssh_keys_file=a.ssh_keys, disk=a.disk, disk_size=a.disk_size, start=a.start,
                     wait_ip=a.wait_ip, cleanup_on_failure=a.cleanup_on_failure)


def _command(ctx: Context) -> str:
    a = ctx.args
    return " ".join(x for x in ("pvectl vm clone", str(a.template), a.name or a.name_pattern or "",
                                f"--count {a.count}" if a.count else "") if x)


def clone(ctx: Context) -> int:
    from ..errors import UsageError

    a = ctx.args
    if a.no_wait:
        raise UsageError("vm clone waits for the clone task to configure the new VM; --no-wait does not apply",
                         hint="bound the whole workflow with --timeout S instead")
    bulk = a.count is not None or a.name_pattern is not None
    if not bulk:
        if not a.name:
            raise UsageError("give the NAME of the new VM (or --count N --name-pattern PATTERN)")
        return _single(ctx)
    if a.count is not None and a.count < 1:
        raise UsageError("--count must be at least 1")
    return _bulk(ctx)


def _single(ctx: Context) -> int:
    from ..provision import ProvisionInterrupted, provision

    spec = _base_spec(ctx, ctx.args.name)
    try:
        with Display() as display:
            res = provision(ctx.session, spec, deadline=ctx.deadline(), writer=ctx.writer(_command(ctx)), on_event=display)
    except ProvisionInterrupted as exc:
        return _interrupted(ctx, exc.results)
    _emit_single(ctx, res)
    return _differs(res) or 0


def _differs(res: ProvisionResult) -> int:
    """3 when an existing VM differs from what the command asks (nothing was changed for that)."""
    if not res.differs:
        return 0
    sys.stderr.write(f"pvectl: VM {res.vmid} ({res.name}) exists but differs from this command: "
                     f"{'; '.join(res.differs)}; nothing was changed for that (hint: change it with "
                     f"`pvectl vm set` / `pvectl vm resize`, or delete it and run the command again)\n")
    return 3


def _interrupted(ctx: Context, results: list[ProvisionResult]) -> int:
    """Ctrl-C: what was made or is in flight, each with its UPID, and the command that resumes."""
    import shlex

    resume = "pvectl " + shlex.join(ctx.argv)
    rows = [r.to_dict() for r in results]
    busy = [r for r in results if r.vmid is not None and r.state not in (None, "absent")]
    if ctx.output == "table":
        from ..render import emit

        emit(rows, "table", columns=summary_columns() + _upid_column())
        print(f"resume: {resume}")
    else:
        ctx.emit({"interrupted": True, "results": rows, "resume": resume})
    sys.stderr.write(f"pvectl: interrupted: nothing new was started; {len(busy)} VM(s) made or in flight "
                     f"(listed on stdout, with the tasks Proxmox keeps running). Resume with: {resume}\n")
    for r in busy:
        upid = r.upids.get("clone") or next(iter(r.upids.values()), None)
        sys.stderr.write(f"pvectl:   VM {r.vmid} ({r.name}) on {r.node}: {r.state}"
                         + (f", task {upid} (pvectl task wait {upid})" if upid else "") + "\n")
    return 130


def _upid_column() -> list[Column]:
    from ..render import Column

    return [Column("upids", "TASK", lambda u: (u or {}).get("clone") or next(iter((u or {}).values()), "-"))]


def _emit_single(ctx: Context, res: ProvisionResult) -> None:
    d = res.to_dict()
    if ctx.args.dry_run and ctx.output != "table":
        return      # stdout holds the curl lines
    if ctx.output != "table":
        ctx.emit(d)
        return
    from ..render import kv

    if res.result == "exists" and not res.changed:
        print(f"VM {res.vmid} ({res.name}) already exists on {res.node}, cloned from template {res.template}: "
              "nothing changed")
    elif res.result == "exists":
        print(f"VM {res.vmid} ({res.name}) already existed on {res.node}; finished what an earlier run left: "
              f"{', '.join(s for s in res.steps if s != 'exists')}")
    kv({"vmid": res.vmid, "name": res.name, "node": res.node, "result": res.result, "status": res.state,
        "ip": res.ip, "steps": ", ".join(res.steps), "warnings": "; ".join(res.warnings) or None})


def _bulk(ctx: Context) -> int:
    from ..errors import UsageError
    from ..provision import ProvisionInterrupted, next_free_index, provision_many, specs_for_count

    a = ctx.args
    pattern = a.name_pattern or (a.name if a.name and "{n" in a.name else f"{a.name}-{{n}}" if a.name else None)
    if pattern is None:
        raise UsageError("--count needs --name-pattern (e.g. web-{n}) or a NAME prefix")
    count = a.count if a.count is not None else 1
    if a.name_start == "next":
        names = {str(e.get("name")) for e in ctx.cluster.resources("vm") if e.get("name")}
        start = next_free_index(pattern, names)
    else:
        try:
            start = int(a.name_start)
        except ValueError:
            raise UsageError(f"--name-start must be a number or 'next', not '{a.name_start}'") from None
    specs = specs_for_count(_base_spec(ctx, "x"), pattern, count, start)
    try:
        with Display() as display:
            results = provision_many(ctx.session, specs, deadline=ctx.deadline(), writer=ctx.writer(_command(ctx)),
                                     max_per_node=a.max_per_node, max_per_storage=a.max_per_storage,
                                     on_event=display)
    except ProvisionInterrupted as exc:
        return _interrupted(ctx, exc.results)
    failed = [r for r in results if not r.ok]
    rows = [r.to_dict() for r in results]
    if not (a.dry_run and ctx.output != "table"):
        if ctx.output == "table":
            ctx.emit(rows, columns=summary_columns())
            for r in failed:
                if r.error is not None and r.error.hint:
                    print(f"{r.name}: hint: {r.error.hint}")
        else:
            ctx.emit({"results": rows, "created": sum(r.result == "created" for r in results),
                      "exists": sum(r.result == "exists" for r in results), "failed": len(failed)})
    return _bulk_exit(results, failed)


def _bulk_exit(results: list[ProvisionResult], failed: list[ProvisionResult]) -> int:
    """4 when the only problem is VMs still running (or not started) at the deadline, 1 for any other
    failure, 3 when VMs that exist differ from the command, else 0."""
    if failed:
        codes = {getattr(r.error, "exit_code", 1) for r in failed}
        return 4 if codes == {4} else 1
    return max((_differs(r) for r in results), default=0)
