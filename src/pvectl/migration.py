"""VM migration: the pre-check (`check`) and the migration itself (`migrate`).

Proxmox checks little before it starts a `qmigrate` task: an offline target or local disks on a live
migration fail only inside the task, and nothing looks at the target's free memory (pve-semantics
§9.1, §9.2). `check` reads fresh state (membership and quorum from /cluster/status, node memory from
/cluster/resources, the VM's live status, and the native precondition GET .../migrate) and applies
`guards.migration_findings`; `migrate` refuses on any refusing finding before anything is sent, then
POSTs the migration through a `Writer` and waits for the task with one deadline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import guards
from .errors import PvectlError, UsageError
from .deadline import bounds_every_request
from .tasks.task import Deadline, Task
from .membership import cluster_status
from .nodes.reads import list_nodes
from .vms.reads import resolve

if TYPE_CHECKING:
    from collections.abc import Callable

    from .session import Session
    from .tasks.task import Progress
    from .writes import Writer

# AbstractMigrate.pm::migrate: `migration finished successfully (duration 00:00:23)` (§2.2)
_DURATION_RE = re.compile(r"migration finished successfully \(duration (\d+):(\d\d):(\d\d)\)")
# QemuMigrate.pm phase2: `average migration speed: 102.4 MiB/s - downtime 45 ms` (§2.2)
_DOWNTIME_RE = re.compile(r"downtime (\d+) ms")
_TS_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
_BW_RE = re.compile(r"^(\d+)\s*([KMG]?)(?:i?B)?(?:/s)?$", re.IGNORECASE)
_BW_UNIT = {"": 1, "K": 1, "M": 1024, "G": 1024 * 1024}


def parse_bwlimit(value: int | str | None) -> int | None:
    """`--bwlimit` in KiB/s, the unit Proxmox takes (§9.2): `51200`, or with a unit `50M`, `50MiB/s`,
    `1G` (powers of 1024, per second). 0 means no limit, as in Proxmox."""
    if value is None:
        return None
    if isinstance(value, int):
        kib = value
    else:
        m = _BW_RE.match(value.strip())
        if not m:
            raise UsageError(f"invalid bandwidth limit '{value}'",
                             hint="give KiB/s (51200) or a unit per second: 50M, 1G")
        kib = int(m.group(1)) * _BW_UNIT[m.group(2).upper()]
    if kib < 0:
        raise UsageError(f"bandwidth limit {kib} KiB/s is negative")
    return kib


@dataclass
class Finding:
    """One rule's verdict: `level` is ok | warn | refuse; `fix` says what would make it allowed."""

    check: str
    level: str
    reason: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "reason": self.reason, "fix": self.fix}


@dataclass
class MigrationCheck:
    """The verdict on migrating one VM to `target`, from state read just now."""

    vmid: int
    name: str
    node: str
    target: str
    mode: str                    # live | offline
    running: bool
    findings: list[Finding]
    local_disks: list[str] = field(default_factory=list)
    memory: dict[str, int | None] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return not self.refusals

    @property
    def verdict(self) -> str:
        return "ok" if self.allowed else "refused"

    @property
    def refusals(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "refuse"]

    @property
    def warnings(self) -> list[str]:
        return [f.reason for f in self.findings if f.level == "warn"]

    def to_dict(self) -> dict[str, Any]:
        return {"vmid": self.vmid, "name": self.name, "node": self.node, "target": self.target,
                "mode": self.mode, "running": self.running, "verdict": self.verdict, "allowed": self.allowed,
                "findings": [f.to_dict() for f in self.findings], "local_disks": self.local_disks,
                "memory": self.memory}


@dataclass
class MigrationResult:
    """What `migrate` did: `outcome` done | started (no wait) | planned (dry run)."""

    vmid: int
    name: str
    source: str
    target: str
    node: str                    # where the VM is now
    mode: str
    outcome: str
    upid: str | None = None
    exitstatus: str | None = None
    status: str | None = None    # the VM's state afterwards (running | stopped)
    duration: str | None = None  # HH:MM:SS from the task log
    duration_seconds: int | None = None
    downtime_ms: int | None = None
    local_disks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"vmid": self.vmid, "name": self.name, "action": "migrate", "outcome": self.outcome,
                "source": self.source, "target": self.target, "node": self.node, "mode": self.mode,
                "status": self.status, "upid": self.upid, "exitstatus": self.exitstatus,
                "duration": self.duration, "duration_seconds": self.duration_seconds,
                "downtime_ms": self.downtime_ms, "local_disks": self.local_disks, "warnings": self.warnings}


def check(session: Session, ref: str | int, target: str, *, online: bool | None = None,
          with_local_disks: bool = False) -> MigrationCheck:
    """Every migration rule on fresh state; sends nothing. `online`: None = live if running."""
    vm = resolve(session, ref)
    status = cluster_status(session)                       # membership + quorum (corosync, not RRD: §10.1)
    members = {n.name: n.online for n in status.nodes}
    nodes = {n.name: n for n in list_nodes(session)}   # memory (RRD, up to 10 s old: §10.2)
    st = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/status/current", node=vm.node)
    running = st.get("status") == "running"
    lock = st.get("lock")
    vm_maxmem = int(st.get("maxmem") or vm.maxmem or 0)
    precondition: dict[str, Any] | None = None
    if status.quorate and not lock:
        # the precondition endpoint refuses a locked VM and a cluster without quorum itself (§9.1)
        params = {"target": target} if target in members and target != vm.node else None
        precondition = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/migrate", params, node=vm.node)
    tnode = nodes.get(target)
    raw = guards.migration_findings(
        vmid=vm.vmid, source=vm.node, target=target, members=members, quorate=status.quorate, running=running,
        online=online, lock=lock, precondition=precondition, with_local_disks=with_local_disks,
        vm_maxmem=vm_maxmem, target_mem=tnode.mem if tnode else None, target_maxmem=tnode.maxmem if tnode else None)
    memory: dict[str, int | None] = {"vm_maxmem": vm_maxmem}
    if tnode is not None and tnode.maxmem is not None:
        memory.update(target_total=tnode.maxmem, target_free=tnode.mem_free,
                      reserve=guards.migration_reserve(tnode.maxmem),
                      needed=vm_maxmem + guards.migration_reserve(tnode.maxmem))
    disks = [str(d.get("volid")) for d in (precondition or {}).get("local_disks") or []]
    return MigrationCheck(vmid=vm.vmid, name=vm.name, node=vm.node, target=target,
                          mode=guards.migration_mode(running=running, online=online), running=running,
                          findings=[Finding(**f) for f in raw], local_disks=disks, memory=memory)


@bounds_every_request
def migrate(session: Session, ref: str | int, target: str, *, writer: Writer,
            deadline: Deadline | float | None = None, online: bool | None = None, with_local_disks: bool = False,
            bwlimit: int | str | None = None, check_only: bool = False, wait: bool = True,
            on_progress: Callable[[Progress], None] | None = None) -> MigrationResult | MigrationCheck:
    """Migrate a VM to `target` after `check`; any refusal raises `GuardRefused` before a request is
    sent. A running VM migrates live (`online=1`), a stopped one offline. `check_only` returns the
    `MigrationCheck` and changes nothing. A failed task raises `TaskFailed` with the log tail."""
    deadline = Deadline.of(deadline)
    kib = parse_bwlimit(bwlimit)
    verdict = check(session, ref, target, online=online, with_local_disks=with_local_disks)
    if check_only:
        return verdict
    guards.check_migrate([f.to_dict() for f in verdict.refusals], what=f"VM {verdict.vmid} ({verdict.name})",
                         target=target)
    from .lifecycle import _wait, send_task_write
    from .writes import Write

    live = verdict.mode == "live"
    params: dict[str, Any] = {"target": target, "online": 1 if live else 0}
    if with_local_disks:
        params["with-local-disks"] = 1
    if kib is not None:
        params["bwlimit"] = kib
    res = MigrationResult(vmid=verdict.vmid, name=verdict.name, source=verdict.node, target=target,
                          node=verdict.node, mode=verdict.mode, outcome="done", local_disks=verdict.local_disks,
                          warnings=verdict.warnings)
    summary = (f"migrate VM {verdict.vmid} ({verdict.name}) {verdict.mode} from {verdict.node} to {target}"
               + (f", local disks: {', '.join(verdict.local_disks)}" if verdict.local_disks else ""))
    upid = send_task_write(session, writer, Write("POST", f"/nodes/{verdict.node}/qemu/{verdict.vmid}/migrate",
                                                  params, verdict.node, summary))
    if upid is None:
        res.outcome = "planned"
        return res
    res.upid = str(upid)
    if not wait:
        res.outcome = "started"
        return res
    result = _wait(session, writer, res.upid, deadline, on_progress=on_progress)
    # The task's exit status decides: OK means the VM was moved (phase3 moved its config: §9.2). What
    # is read afterwards only adds detail; a read that fails now is a warning, never a failed migration.
    res.exitstatus = result.exitstatus
    res.warnings += result.warnings
    res.node = target
    try:
        lines, _ = Task(session, res.upid).log(start=0, limit=0)
        res.log = [ln for ln in lines if ln]
        res.duration, res.duration_seconds, res.downtime_ms = parse_log(lines)
    except PvectlError as exc:
        res.warnings.append(f"migrated, but the task log could not be read: {exc.message}")
    try:
        # fresh: where the VM is now, and its state there
        vm = resolve(session, verdict.vmid)
        res.node = vm.node
        st = session.transport.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/status/current", node=vm.node)
        res.status = st.get("status")
    except PvectlError as exc:
        res.warnings.append(f"migrated (task {res.upid} OK), but the VM's state on {res.node} could not be "
                            f"read: {exc.message}")
    return res


def parse_log(lines: list[str]) -> tuple[str | None, int | None, int | None]:
    """(duration `HH:MM:SS`, its seconds, downtime in ms) from a qmigrate log (§2.2); None if absent."""
    duration = seconds = downtime = None
    for line in lines:
        text = _TS_RE.sub("", line)
        m = _DURATION_RE.search(text)
        if m:
            h, mi, s = (int(x) for x in m.groups())
            duration, seconds = f"{h:02d}:{mi:02d}:{s:02d}", h * 3600 + mi * 60 + s
        m = _DOWNTIME_RE.search(text)
        if m and "migration speed" in text:
            downtime = int(m.group(1))
    return duration, seconds, downtime


def strip_timestamp(line: str) -> str:
    """A migration log line without its `YYYY-MM-DD HH:MM:SS ` prefix."""
    return _TS_RE.sub("", line)
