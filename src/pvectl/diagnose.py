"""Why is a task (or a VM) stuck? Evidence from the API and, over the user's own ssh, from the node.

No Proxmox tool ties a UPID to its process and the VM's lock. The seed's manual checks are `qm
unlock`, `qm listsnapshot`, the lock file and `ps -p PID` (PID from the UPID). `diagnose` does them
all, read-only:

- API: the task's status and log tail, the other running tasks on the node for the VM (and any
  vzdump), the VM's `lock`, its snapshots, how long the task has run against how long its type
  took recently on that node (the node's task history);
- ssh (ssh.py: BatchMode, known hosts checked, fixed commands with checked integers): the task's
  process (`ps -o pid,stat,etime,wchan,cmd -p PID`), who holds the VM's flock
  (`/run/lock/qemu-server/lock-VMID.conf`, fuser or lsof), `qm config VMID | grep ^lock`,
  `qm listsnapshot VMID`.

Then one verdict, the evidence under it and the exact next commands; nothing is changed unless
`unlock=True` and the verdict is a stale lock confirmed over ssh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import GuardRefused, PvectlError
from .upid import Upid
from .tasks.task import Task
from .vms.reads import resolve

if TYPE_CHECKING:
    from .session import Session
    from .ssh import Ssh

# how much longer than the median of its type a task may run before it is called slow
SLOW_FACTOR = 3.0

VERDICTS = ("healthy", "slow", "stale-lock", "backup-lock", "snapshot-delete", "storage-hang",
            "ssh-unreachable", "locked", "task-ended", "not-locked")


@dataclass
class Diagnosis:
    target: str
    node: str
    vmid: int | None
    upid: str | None
    verdict: str
    summary: str
    evidence: list[str] = field(default_factory=list)
    next_commands: list[str] = field(default_factory=list)
    api: dict[str, Any] = field(default_factory=dict)
    ssh: dict[str, Any] | None = None
    unlocked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "node": self.node, "vmid": self.vmid, "upid": self.upid,
                "verdict": self.verdict, "summary": self.summary, "evidence": self.evidence,
                "next_commands": self.next_commands, "api": self.api, "ssh": self.ssh, "unlocked": self.unlocked}


def ssh_from_config(session: Session, *, config_file: str | None = None) -> Ssh:
    """The user's ssh as `credentials.ssh_user`; `-F` from `config_file` or `$PVECTL_SSH_CONFIG`."""
    import os

    from .ssh import Ssh

    return Ssh(session.config.credentials.ssh_user,
               config_file=config_file or os.environ.get("PVECTL_SSH_CONFIG") or None)


def diagnose(session: Session, ref: str | int, *, ssh: Ssh | None = None, use_ssh: bool = True,
             unlock: bool = False, yes: bool = False) -> Diagnosis:
    """Diagnose a UPID or a VM (VMID or name). `unlock=True` with `yes=True` clears a stale lock
    (only when ssh confirmed that no process holds it); `unlock` without `yes` raises GuardRefused."""
    api = _api_evidence(session, ref)
    remote: dict[str, Any] | None = None
    if use_ssh:
        ssh = ssh or ssh_from_config(session)
        remote = _ssh_evidence(session, ssh, api)
    d = _verdict(api, remote)
    if unlock:
        _unlock(session, ssh, d, yes=yes)
    return d


# ------------------------------------------------------------------------------------ API evidence
def _api_evidence(session: Session, ref: str | int) -> dict[str, Any]:
    text = str(ref).strip()
    ev: dict[str, Any] = {"task": None, "log_tail": [], "running_tasks": [], "lock": None, "snapshots": None}
    if text.startswith("UPID:"):
        try:
            upid = Upid.parse(text)
        except ValueError as exc:
            from .errors import UsageError

            raise UsageError(str(exc), hint="give a UPID (pvectl task list) or a VMID / VM name") from None
        task = Task(session, upid)
        st = task.status()
        lines, _ = task.log(start=0, limit=0)
        ev["task"] = st.to_dict() | {"pid": upid.pid, "elapsed": int(time.time()) - upid.starttime}
        ev["log_tail"] = [ln for ln in lines if ln][-8:]
        node, vmid = upid.node, upid.vmid
        ev["task"]["usual_seconds"] = _usual_duration(session, node, upid.type)
    else:
        vm = resolve(session, text)
        node, vmid = vm.node, vm.vmid
    ev["node"], ev["vmid"] = node, vmid
    running = session.transport.get(f"/nodes/{node}/tasks", {"source": "active", "limit": 500}, node=node)
    ev["running_tasks"] = [{"upid": t["upid"], "type": t.get("type"), "id": str(t.get("id", "")),
                            "pid": t.get("pid"), "starttime": t.get("starttime")}
                           for t in running if vmid is not None and (str(t.get("id")) == str(vmid)
                                                                     or t.get("type") == "vzdump")]
    if vmid is not None:
        try:
            st = session.transport.get(f"/nodes/{node}/qemu/{vmid}/status/current", node=node)
            ev["lock"] = st.get("lock")
            ev["vm_status"] = st.get("status")
        except PvectlError as exc:   # the VM moved or is gone (e.g. a finished migration)
            ev["vm_error"] = exc.message
        try:
            snaps = session.transport.get(f"/nodes/{node}/qemu/{vmid}/snapshot", node=node)
            ev["snapshots"] = [s.get("name") for s in snaps if s.get("name") != "current"]
        except PvectlError:
            ev["snapshots"] = None
    if ev["task"] is None:
        own = [t for t in ev["running_tasks"] if t["id"] == str(vmid)]
        if own:      # a VM: diagnose its oldest running task (the one holding the lock)
            first = min(own, key=lambda t: t["starttime"] or 0)
            upid = Upid.parse(first["upid"])
            lines, _ = Task(session, upid).log(start=0, limit=0)
            ev["task"] = {"upid": first["upid"], "type": first["type"], "status": "running", "exitstatus": None,
                          "pid": upid.pid, "elapsed": int(time.time()) - upid.starttime,
                          "usual_seconds": _usual_duration(session, node, upid.type)}
            ev["log_tail"] = [ln for ln in lines if ln][-8:]
    return ev


def _usual_duration(session: Session, node: str, task_type: str) -> float | None:
    """The median duration of this task type's recent successful runs on the node, or None."""
    try:
        done = session.transport.get(f"/nodes/{node}/tasks", {"typefilter": task_type, "limit": 50,
                                                              "source": "archive"}, node=node)
    except PvectlError:
        return None
    secs = sorted(t["endtime"] - t["starttime"] for t in done
                  if t.get("type") == task_type and t.get("status") == "OK" and t.get("endtime"))
    return float(secs[len(secs) // 2]) if secs else None


# ------------------------------------------------------------------------------------ ssh evidence
def _ssh_evidence(session: Session, ssh: Ssh, api: dict[str, Any]) -> dict[str, Any]:
    from . import ssh as sshmod

    node = session.config.node(api["node"]) if session.config.has_node(api["node"]) else None
    host = (node.ssh_host or node.host) if node else api["node"]
    port = node.ssh_port if node else None
    pid = (api["task"] or {}).get("pid")
    script = sshmod.inspect_script(vmid=api["vmid"], pid=pid)
    res = ssh.run(host, [script], port=port)
    out: dict[str, Any] = {"host": host, "connected": res.connected,
                           "login": " ".join((["-p", str(port or ssh.port)] if port or ssh.port else [])
                                             + [f"{ssh.user}@{host}"])}
    if not res.connected:
        out["error"] = res.error()
        return out
    sections = sshmod.parse_sections(res.stdout)
    ps_lines, _ = sections.get("ps", ([], None))
    procs = sshmod.parse_ps(ps_lines)
    out["process"] = procs[0] if procs else None
    holder_lines, _ = sections.get("holders", ([], None))
    out["lock_holders"] = [int(w) for ln in holder_lines for w in ln.replace(":", " ").split() if w.isdigit()]
    out["holder_processes"] = sshmod.parse_ps(sections.get("holder-ps", ([], None))[0])
    cfg_lines, _ = sections.get("qm-config", ([], None))
    out["config_lock"] = next((ln.split(":", 1)[1].strip() for ln in cfg_lines if ln.startswith("lock:")), None)
    out["listsnapshot"] = sections.get("qm-listsnapshot", ([], None))[0]
    return out


# ------------------------------------------------------------------------------------ the verdict
def _verdict(api: dict[str, Any], remote: dict[str, Any] | None) -> Diagnosis:
    node, vmid = api["node"], api["vmid"]
    task = api["task"]
    upid = task["upid"] if task else None
    lock = api.get("lock")
    ev: list[str] = []
    nxt: list[str] = []
    d = Diagnosis(target=upid or str(vmid), node=node, vmid=vmid, upid=upid, verdict="", summary="",
                  evidence=ev, next_commands=nxt, api=api, ssh=remote)
    if task:
        usual = task.get("usual_seconds")
        if task["status"] == "running":
            when = f"running for {_human(task['elapsed'])}" + (f" (usually {_human(usual)})" if usual else "")
        else:
            when = f"stopped ({task.get('exitstatus')}), started {_human(task['elapsed'])} ago"
        ev.append(f"task {task['type']} {when}: {upid}")
        if api["log_tail"]:
            ev.append(f"last log line: {api['log_tail'][-1]}")
    ev.append(f"VM {vmid} lock: {lock or 'none'}" if vmid is not None else "no VM")
    others = [t for t in api["running_tasks"] if t["upid"] != upid]
    for t in others:
        ev.append(f"also running on {node}: {t['type']} {t['upid']}")
    if api.get("snapshots"):
        ev.append(f"snapshots: {', '.join(api['snapshots'])}")

    vzdump = next((t for t in api["running_tasks"] if t["type"] == "vzdump"
                   and t["id"] in ("", str(vmid))), None)
    if remote is not None and not remote["connected"]:
        ev.append(f"ssh {remote['host']}: {remote['error']}")
        known = (f"VM {vmid} is locked ({lock})" if lock else f"VM {vmid} is not locked") if vmid else ""
        d.verdict = "ssh-unreachable"
        d.summary = (f"cannot inspect {node} over ssh ({remote['error']}); from the API: {known}"
                     + (f", task {task['type']} {task['status']}" if task else ""))
        nxt.append(f"ssh {remote['login']} true   # check ssh access (key, known_hosts, BatchMode)")
        if upid and task["status"] == "running":
            nxt.append(f"pvectl task stop {upid}")
        return d
    proc = remote.get("process") if remote else None
    holders = remote.get("lock_holders") if remote else None
    if remote is not None:
        if task:
            ev.append(f"process {task['pid']}: " + (_ps_line(proc) if proc else "gone"))
        ev.append(f"lock file holders: {', '.join(map(str, holders)) if holders else 'none'}")
        for hp in remote.get("holder_processes") or []:
            if not proc or hp["pid"] != proc["pid"]:
                ev.append(f"holder {hp['pid']}: {_ps_line(hp)}")
        if remote.get("config_lock"):
            ev.append(f"qm config: lock: {remote['config_lock']}")
        # `qm listsnapshot` prints one line per snapshot and a last `current ... You are here!` line
        snaps = [ln.strip() for ln in remote.get("listsnapshot") or [] if ln.strip() and "You are here!" not in ln]
        if snaps:
            ev.append(f"qm listsnapshot: {len(snaps)} snapshot(s): " + "; ".join(snaps[:5]))
    d_state = [p for p in ([proc] if proc else []) + list(remote.get("holder_processes") or [] if remote else [])
               if p and str(p["stat"]).startswith("D")]
    if d_state:
        p = d_state[0]
        d.verdict = "storage-hang"
        d.summary = (f"process {p['pid']} is in uninterruptible sleep (D, wchan {p['wchan']}): the storage it "
                     "waits for hangs; stopping the task will not help until the storage answers")
        login = remote["login"] if remote else "root@NODE"
        nxt.append(f"ssh {login} cat /proc/{p['pid']}/stack   # where in the kernel it waits")
        nxt.append("pvesm status   # on the node: which storage does not answer")
        if upid:
            nxt.append(f"pvectl task stop {upid}   # takes effect only once the storage answers")
        return d
    if lock == "backup" and vzdump is not None:
        d.verdict = "backup-lock"
        d.summary = f"VM {vmid} is locked by a running backup: vzdump {vzdump['upid']}"
        nxt.append(f"pvectl task wait {vzdump['upid']}   # let the backup finish")
        nxt.append(f"pvectl task stop {vzdump['upid']}   # or abort the backup")
        return d
    if lock == "snapshot-delete" or any(t["type"] == "qmdelsnapshot" for t in api["running_tasks"]):
        deleting = next((t for t in api["running_tasks"] if t["type"] == "qmdelsnapshot"), None)
        d.verdict = "snapshot-delete"
        d.summary = (f"VM {vmid}: a snapshot delete is in progress" + (f" ({deleting['upid']})" if deleting else
                                                                       " but no task runs it"))
        nxt.append(f"qm listsnapshot {vmid}   # on {node}")
        if deleting:
            nxt.append(f"pvectl task wait {deleting['upid']}")
        else:
            nxt.append(f"qm delsnapshot {vmid} SNAPSHOT --force   # on {node}, to finish it")
        return d
    if task and task["status"] == "running" and (proc is not None or remote is None):
        usual = task.get("usual_seconds")
        slow = usual is not None and task["elapsed"] > max(SLOW_FACTOR * usual, usual + 60)
        d.verdict = "slow" if slow else "healthy"
        d.summary = (f"task {task['type']} is running" + (f" (process {proc['pid']} {proc['stat']})" if proc else "")
                     + (f" but for {_human(task['elapsed'])}, {SLOW_FACTOR:g}x longer than usual" if slow
                        else " and progressing"))
        nxt.append(f"pvectl task wait {upid}")
        nxt.append(f"pvectl task log {upid} --follow")
        if slow:
            nxt.append(f"pvectl task stop {upid}   # if it should have ended")
        return d
    live_task = any(t["id"] == str(vmid) for t in api["running_tasks"])
    if lock and not live_task and remote is not None and not holders:
        d.verdict = "stale-lock"
        d.summary = (f"VM {vmid} is locked ({lock}) but no task or process holds the lock: a stale lock"
                     + (f" left by {task['type']} (process {task['pid']} is gone)" if task else ""))
        nxt.append(f"qm unlock {vmid}   # on {node}, or: pvectl task diagnose {vmid} --unlock --yes")
        return d
    if lock and not live_task and remote is None:
        d.verdict = "stale-lock"
        d.summary = f"VM {vmid} is locked ({lock}) and no task runs for it: probably stale (not confirmed over ssh)"
        nxt.append(f"pvectl task diagnose {vmid}   # with ssh, to confirm that no process holds the lock")
        return d
    if lock:
        d.verdict = "locked"
        d.summary = (f"VM {vmid} is locked ({lock}) by a live process"
                     + (f" ({', '.join(map(str, holders))})" if holders else ""))
        nxt.append(f"pvectl task list --vm {vmid} --running")
        return d
    if task and task["status"] != "running":
        d.verdict = "task-ended"
        d.summary = f"task {task['type']} has ended ({task.get('exitstatus')}) and VM {vmid} is not locked"
        nxt.append(f"pvectl task log {upid}")
        return d
    d.verdict = "not-locked"
    d.summary = f"VM {vmid} is not locked and no task runs for it: nothing is stuck"
    return d


def _unlock(session: Session, ssh: Ssh | None, d: Diagnosis, *, yes: bool) -> None:
    """Clear a stale lock with `qm unlock VMID` over ssh, then confirm through the API.

    Why not the API: removing `lock` needs `delete=lock&skiplock=1`, and both are root@pam only
    (qemu-server API2/Qemu.pm `$check_vm_modify_config_perm`: "only root can set 'lock' config",
    `skiplock`: "Only root may use this option."); an API token is never root@pam, even root's own
    (pve-semantics §3.5). `qm unlock` on the node is the documented way (seed, "When tasks hang")."""
    if d.verdict != "stale-lock" or not d.ssh or not d.ssh.get("connected") or d.ssh.get("lock_holders"):
        raise GuardRefused(f"not unlocking VM {d.vmid}: the verdict is {d.verdict}, not a stale lock confirmed "
                           "over ssh", "unlock only when no process holds the lock (see the evidence)")
    if not yes:
        raise GuardRefused(f"unlocking VM {d.vmid} needs confirmation", "add --yes")
    from . import ssh as sshmod

    assert ssh is not None and d.vmid is not None
    node = session.config.node(d.node) if session.config.has_node(d.node) else None
    res = ssh.run(d.ssh["host"], sshmod.unlock_command(d.vmid), port=node.ssh_port if node else None)
    if res.returncode != 0:
        raise PvectlError(f"qm unlock {d.vmid} on {d.node} failed: {res.error()}")
    st = session.transport.get(f"/nodes/{d.node}/qemu/{d.vmid}/status/current", node=d.node)
    d.unlocked = not st.get("lock")
    d.evidence.append(f"ran `qm unlock {d.vmid}` on {d.node}: lock is now {st.get('lock') or 'none'}")
    d.next_commands[:] = []


def _ps_line(p: dict[str, Any]) -> str:
    return f"{p['stat']} {p['etime']} wchan={p['wchan']} {p['cmd']}"


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
