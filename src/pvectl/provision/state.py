"""The state a provision run reads and shares: what a `/cluster/resources` entry says of a VM (its
name while a clone is in flight), one snapshot of `/cluster/resources`, and the run itself (cluster,
writer, deadline, events, the caches of one call)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from ..deadline import Deadline
from ..errors import ApiError
from ..templates import resolve_template
from ..writes import Writer
from .limits import _Limits
from .types import EventCallback, ProvisionEvent, ProvisionResult
from .vmids import allocator_for, in_flight_for

if TYPE_CHECKING:
    from ..session import Session
    from ..vms.reads import VmSummary


def known_name(entry: dict[str, Any]) -> str | None:
    """The VM's name, or None while Proxmox shows the placeholder `VM <id>` (no name in the config: a
    `VM 105` is never a real name, it is not a DNS name)."""
    name = entry.get("name")
    if not name or name == f"VM {entry.get('vmid')}":
        return None
    return str(name)


def cloning(entry: dict[str, Any]) -> bool:
    return entry.get("lock") == "clone"


class _Snapshot:
    """One read of `/cluster/resources` (all types), split by type."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.vms = [e for e in entries if e.get("type") in ("qemu", "lxc")]
        self.nodes = {e["node"]: e for e in entries if e.get("type") == "node"}
        self.storages: dict[tuple[str, str], dict[str, Any]] = {
            (e["node"], e["storage"]): e for e in entries if e.get("type") == "storage"}
        self._by_vmid: dict[int, dict[str, Any]] | None = None
        self._by_name: dict[str, list[dict[str, Any]]] | None = None

    @property
    def used_vmids(self) -> AbstractSet[int]:
        return self._vmids().keys()

    def _vmids(self) -> dict[int, dict[str, Any]]:
        if self._by_vmid is None:
            self._by_vmid = {int(e["vmid"]): e for e in self.vms if "vmid" in e}
        return self._by_vmid

    def vm(self, vmid: int) -> dict[str, Any] | None:
        return self._vmids().get(vmid)

    def named(self, name: str) -> list[dict[str, Any]]:
        """VMs that carry `name` (indexed once: planning thousands of names stays linear)."""
        if self._by_name is None:
            index: dict[str, list[dict[str, Any]]] = {}
            for e in self.vms:
                n = known_name(e)
                if e.get("type") == "qemu" and n is not None:
                    index.setdefault(n, []).append(e)
            self._by_name = index
        return list(self._by_name.get(name, []))

    def storage_on(self, node: str, sid: str) -> dict[str, Any] | None:
        return self.storages.get((node, sid))

    def shared(self, sid: str) -> bool:
        return any(int(e.get("shared", 0) or 0) for (_, s), e in self.storages.items() if s == sid)

    def online(self, node: str) -> bool:
        e = self.nodes.get(node)
        return e is not None and e.get("status") == "online"


class _RunDeadline(Deadline):
    """The run's deadline; it is over at once when the run is stopped (Ctrl-C), so every wait
    (`Task.wait` included) returns at its next look at the clock."""

    __slots__ = ("stop",)

    def __init__(self, base: Deadline, stop: threading.Event) -> None:
        self.at = base.at
        self.stop = stop

    def remaining(self) -> float | None:
        return -1.0 if self.stop.is_set() else Deadline.remaining(self)

    def expired(self) -> bool:
        return self.stop.is_set() or Deadline.expired(self)


class _Run:
    """State shared by the workflows of one `provision` / `provision_many` call."""

    def __init__(self, session: Session, writer: Writer, deadline: Deadline, on_event: EventCallback | None,
                 limits: _Limits | None = None) -> None:
        self.session = session
        self.t = session.transport
        self.writer = writer
        self.on_event = on_event
        self.limits = limits
        self.allocator = allocator_for(session)
        self.in_flight = in_flight_for(session)
        self.stop = threading.Event()          # set on Ctrl-C: no new write, waits end at once
        self.deadline = _RunDeadline(deadline, self.stop)
        self.live: list[ProvisionResult] = []  # every VM this run has started to make
        self.vmid_floor: int | None = None     # planning many: ids below it are used or handed out
        self._templates: dict[str, VmSummary] = {}
        self._tconfigs: dict[int, dict[str, Any]] = {}
        self._bridges: dict[str, set[str] | None] = {}
        self._lock = threading.Lock()

    @property
    def dry_run(self) -> bool:
        return self.writer.dry_run

    @property
    def stopped(self) -> bool:
        return self.stop.is_set()

    def backoff(self, attempt: int, first: float = 1.0, cap: float = 8.0) -> bool:
        """Sleep before retry `attempt` (jittered, doubling from `first` up to `cap`); False, without
        sleeping, when the deadline leaves no room for it."""
        pause = min(first * 2 ** (attempt - 1), cap) * random.uniform(0.75, 1.25)
        remaining = self.deadline.remaining()
        if remaining is not None and remaining <= pause:
            return False
        time.sleep(pause)
        return True

    def track(self, res: ProvisionResult) -> None:
        with self._lock:
            self.live.append(res)

    def emit(self, name: str, vmid: int | None, step: str, state: str, message: str,
             fraction: float | None = None) -> None:
        if self.on_event is not None:
            self.on_event(ProvisionEvent(name, vmid, step, state, message, fraction))

    def snapshot(self) -> _Snapshot:
        return _Snapshot(self.t.get("/cluster/resources"))

    def template(self, ref: str | int) -> VmSummary:
        key = str(ref)
        with self._lock:
            hit = self._templates.get(key)
        if hit is None:
            hit = resolve_template(self.session, ref)
            with self._lock:
                self._templates[key] = hit
        return hit

    def template_config(self, tpl: VmSummary) -> dict[str, Any]:
        with self._lock:
            hit = self._tconfigs.get(tpl.vmid)
        if hit is None:
            hit = self.t.get(f"/nodes/{tpl.node}/qemu/{tpl.vmid}/config", node=tpl.node)
            with self._lock:
                self._tconfigs[tpl.vmid] = hit
        return hit

    def bridges(self, node: str) -> set[str] | None:
        """Bridges on `node` (GET /nodes/{node}/network?type=any_bridge), None when not known."""
        with self._lock:
            if node in self._bridges:
                return self._bridges[node]
        found: set[str] | None
        try:
            found = {e["iface"] for e in self.t.get(f"/nodes/{node}/network", {"type": "any_bridge"}, node=node)
                     if e.get("iface")}
        except (ApiError, KeyError, TypeError):
            found = None        # an API without the endpoint, or no Sys.Audit: not checked
        with self._lock:
            self._bridges[node] = found
        return found
