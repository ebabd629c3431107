"""Names: pvectl never makes a second VM with a name it is asked to make (DESIGN §5 "names").

What a cluster shows of a clone in flight (qemu-server API2/Qemu.pm::clone_vm; pve-semantics §4.3, §1.1):
the new VMID appears at once with the temporary config `# qmclone temporary file` + `lock: clone`, so
`/cluster/resources` lists it as `VM <id>` with `lock: clone` and no name; the name is written only
with the config written after the first disk (the simulator: at the end). The clone's task runs on the
template's node; its UPID `id` is the SOURCE VMID, and its log's first line names the new one
(`creating a clone of VM <src> with ID <new>`, qemu-server >= 9.1.6; older ones name the new volumes,
`vm-<new>-disk-N`). A name is therefore unknown for a while, and the cluster is the only state that
several pvectl processes (on several machines) share. The protocol:

1. Before a clone POST: read `/cluster/resources`. A VM that carries the name decides (exists, refused,
   or in progress). A clone in flight whose name is not known yet (and that this process did not
   start), seen at the first read, is waited for, bounded by the deadline; at the deadline the answer
   is "in progress" (exit 4). Clones that start after that read are left to step 2.
2. After the clone task ended: the LOWEST VMID among the VMs that carry the name keeps it. A clone
   with a lower VMID whose name is not known yet is waited for. When a lower VMID carries the name,
   this run removes its own just-made VM and reports the other (`exists` / `in progress`).

Two runs that both pass step 1 each see the other's clone in step 2 (each read comes after its own
POST, and each decision after its own whole clone), so exactly one keeps the name. Limits: a client
that is not pvectl follows no such rule (its VM is never removed by pvectl; when it has the lower
VMID, pvectl removes its own); a clone POST that reaches Proxmox later than a whole competing clone
takes (a request stuck in transit) can still make a second VM.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from ..deadline import Deadline
from ..errors import PvectlError, TaskTimeout
from .state import cloning, known_name

if TYPE_CHECKING:
    from .state import _Run, _Snapshot

# qemu-server >= 9.1.6 first log line; older versions: the new volume names (pve-semantics §2.1)
_NEWID_RE = re.compile(r"creating a clone of VM \d+ with ID (\d+)")
_VOLUME_RE = re.compile(r"\bvm-(\d+)-(?:disk|cloudinit)\b")
NAME_WAIT_WITHOUT_DEADLINE = 600.0


class NameInFlight(TaskTimeout):
    """A clone in flight that may carry (or carries) the name was still running at the deadline."""

    def __init__(self, name: str | None, entries: list[dict[str, Any]], upids: dict[int, str | None],
                 named: bool, sent: bool = False) -> None:
        listed = ", ".join(f"VM {e['vmid']} on {e.get('node')}" + (f" (task {upids[e['vmid']]})"
                                                                      if upids.get(e["vmid"]) else "")
                           for e in entries)
        first = next((u for u in upids.values() if u), None)
        what = f"the clone making '{name}'" if named else "a clone in flight whose name is not known yet"
        for_ = f"for '{name}'" if name else "yet"
        # before this run's own clone request (not `sent`) nothing was sent: exit 4 says so plainly
        left = f"nothing was created {for_}" if sent else f"no clone request was sent {for_}: nothing changed"
        super().__init__(first or "-", message=f"{what} ({listed}) is still running at the deadline; {left}",
                         hint=(f"resume with: pvectl task wait {first}, then run the command again" if first else
                               "run the command again once the clone is done (pvectl vm list); a `lock: clone` "
                               "VM that no clone task makes any more is left from a failed clone: unlock "
                               "(qm unlock ID) and delete it"))
        self.entries = entries
        self.upids = upids


def clone_upid(run: _Run, node: str, vmid: int, *, running: bool = True) -> str | None:
    """The UPID of the running (or, with running=False, the recent) `qmclone` task on `node` that
    makes VM `vmid`, or None (not visible: a token sees only its own tasks without Sys.Audit;
    pve-semantics §1.3)."""
    source = "active" if running else "all"
    try:
        tasks = run.t.get(f"/nodes/{node}/tasks", {"source": source, "typefilter": "qmclone", "limit": 100},
                          node=node)
    except PvectlError:
        return None
    for t in tasks if isinstance(tasks, list) else []:
        upid = t.get("upid")
        if not upid or (running and t.get("status") not in (None, "RUNNING")):
            continue
        try:
            lines = run.t.get(f"/nodes/{node}/tasks/{upid}/log", {"start": 0, "limit": 20}, node=node)
        except PvectlError:
            continue
        text = "\n".join(str(ln.get("t", "")) for ln in lines if isinstance(ln, dict))
        m = _NEWID_RE.search(text) or _VOLUME_RE.search(text)
        if m is not None and int(m.group(1)) == vmid:
            return str(upid)
    return None


class Names:
    """Reads of the cluster that decide about one name (steps 1 and 2 of the protocol)."""

    def __init__(self, run: _Run, name: str | None, *, sent: bool = False) -> None:
        self.run = run
        self.name = name            # None: any name (planning many VMs waits for every unknown one)
        self.sent = sent            # this run's clone request was sent already
        self._told: set[int] = set()
        self._upids: dict[int, str | None] = {}

    def carries(self, entry: dict[str, Any]) -> bool:
        if self.name is None:
            return False
        vmid = int(entry.get("vmid", -1))
        return known_name(entry) == self.name or (known_name(entry) is None and
                                                  self.run.in_flight.name(vmid) == self.name)

    def unknown(self, entry: dict[str, Any]) -> bool:
        """A clone in flight whose name is not known yet, and not one of this process's own."""
        return (entry.get("type", "qemu") == "qemu" and cloning(entry) and known_name(entry) is None
                and self.run.in_flight.name(int(entry["vmid"])) is None)

    def upid(self, entry: dict[str, Any]) -> str | None:
        vmid = int(entry["vmid"])
        if vmid not in self._upids:
            self._upids[vmid] = clone_upid(self.run, str(entry.get("node")), vmid)
        return self._upids[vmid]

    def settle(self, *, own: int | None = None, below: int | None = None,
               snap: _Snapshot | None = None) -> tuple[_Snapshot, list[dict[str, Any]]]:
        """Read until the name is decided: returns the snapshot and the VMs that carry the name (other
        than `own`, and only VMIDs below `below` when given). Waits while a clone in flight whose
        name is not known yet could carry it; raises NameInFlight at the deadline."""
        limit = self._limit()
        pause = 0.2
        watch: set[int] | None = None
        while True:
            if snap is None:
                snap = self.run.snapshot()
            scope = [e for e in snap.vms if int(e.get("vmid", -1)) != own
                     and (below is None or int(e.get("vmid", -1)) < below)]
            carriers = [e for e in scope if self.carries(e)]
            if carriers:
                return snap, carriers
            # only the clones in flight at the first read are waited for: one that starts later cannot
            # have seen this run's clone either, so step 2 settles it (no waiting behind a long bulk run)
            pending = [e for e in scope if self.unknown(e) and (watch is None or int(e["vmid"]) in watch)]
            if watch is None:
                watch = {int(e["vmid"]) for e in pending}
            if not pending:
                return snap, []
            self._wait(pending, limit, named=False)
            time.sleep(self._pause(pause, limit))
            pause = min(pause * 1.5, 2.0)
            self._check(pending, limit, named=False)      # not one more read once the deadline passed
            snap = None

    def until_unlocked(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Wait until the clone in flight `entry` (which carries the name) has ended: its resource
        entry without the lock, or None when it is gone (the clone failed and Proxmox removed it)."""
        limit = self._limit()
        pause = 0.2
        vmid = int(entry["vmid"])
        while cloning(entry):
            self._wait([entry], limit, named=True)
            time.sleep(self._pause(pause, limit))
            pause = min(pause * 1.5, 2.0)
            self._check([entry], limit, named=True)
            found = self.run.snapshot().vm(vmid)
            if found is None:
                return None
            entry = found
        return entry

    def _limit(self) -> Deadline:
        return self.run.deadline if self.run.deadline.remaining() is not None else Deadline(NAME_WAIT_WITHOUT_DEADLINE)

    def _pause(self, pause: float, limit: Deadline) -> float:
        remaining = limit.remaining()
        return max(0.05, min(pause, remaining)) if remaining is not None else pause

    def _check(self, entries: list[dict[str, Any]], limit: Deadline, *, named: bool) -> None:
        """At the deadline (or a stop): NameInFlight, naming each clone's task when it can be found.
        The deadline bounds every request of the call (the transport's `bounded()`), so those task
        lookups get the reporting grace: the call ends by its deadline plus a small margin."""
        if limit.expired() or self.run.stopped:
            with self.run.t.reporting():
                upids = {int(e["vmid"]): self.upid(e) for e in entries}
            raise NameInFlight(self.name, entries, upids, named, self.sent)

    def _wait(self, entries: list[dict[str, Any]], limit: Deadline, *, named: bool) -> None:
        self._check(entries, limit, named=named)
        for e in entries:
            vmid = int(e["vmid"])
            if vmid in self._told:
                continue
            self._told.add(vmid)
            upid = self.upid(e)
            what = f"VM {vmid} on {e.get('node')}" + (f" (task {upid})" if upid else "")
            wanted = f"'{self.name}'" if self.name else "a name asked for"
            msg = (f"waiting for the clone of {what}, which makes {wanted}" if named else
                   f"waiting for the clone in flight {what}: its name is not known yet and could be {wanted}")
            self.run.emit(self.name or "-", None, "plan", "info", msg)
