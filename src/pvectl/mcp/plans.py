"""Plan tokens: the second phase of a destructive action.

A destructive tool called without a plan token only previews. The preview issues a short-lived,
single-use token bound to what the caller saw: cluster, action, node, VMID, name, config digest and
the action's arguments. Executing needs that token plus the VM's current name (typed by the human
through elicitation, else `confirm=<name>`), and the VM is read again just before the write: a VM
whose name, node or config digest changed since the preview is refused. Proxmox reuses a freed VMID
within seconds (pve-semantics, VMID allocation), so a bare VMID never identifies a VM on its own.

Tokens live in this process only (a restart forgets them) and are taken out of the store on first
use, whatever the outcome.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import GuardRefused

DEFAULT_TTL = 120.0     # seconds: long enough to ask a human, short enough that the state is fresh


@dataclass(frozen=True, slots=True)
class Plan:
    token: str
    action: str                     # delete | stop | migrate | drain
    cluster: str | None
    node: str
    vmid: int | None                # None for node actions (drain)
    name: str                       # what must be typed to confirm (VM name, or the node for a drain)
    digest: str | None              # the VM config digest at preview time
    args: dict[str, Any] = field(default_factory=dict)
    expires: float = 0.0

    @property
    def target(self) -> str:
        return f"node {self.node}" if self.vmid is None else f"VM {self.vmid} ({self.name}) on {self.node}"

    def question(self) -> str:
        """The elicitation message: the same text on every round (the SDK checks it did not change)."""
        return (f"pvectl: {self.action} {self.target}. This cannot be undone from here. "
                f"Type the name '{self.name}' to confirm.")


class PlanStore:
    def __init__(self, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._plans: dict[str, Plan] = {}
        self._lock = threading.Lock()

    def issue(self, *, action: str, cluster: str | None, node: str, vmid: int | None, name: str,
              digest: str | None, args: dict[str, Any] | None = None) -> Plan:
        plan = Plan(token=f"plan-{secrets.token_urlsafe(18)}", action=action, cluster=cluster, node=node, vmid=vmid,
                    name=name, digest=digest, args=dict(args or {}), expires=self._clock() + self.ttl)
        with self._lock:
            self._drop_expired()
            self._plans[plan.token] = plan
        return plan

    def peek(self, token: str | None, action: str) -> Plan | None:
        """The live plan for `token` and `action`, left in the store (None if there is none)."""
        with self._lock:
            plan = self._plans.get(token or "")
        if plan is None or plan.action != action or plan.expires <= self._clock():
            return None
        return plan

    def take(self, token: str, action: str, cluster: str | None) -> Plan:
        """Remove and return the plan; GuardRefused (nothing sent) for an unknown, expired or foreign token."""
        with self._lock:
            plan = self._plans.pop(token, None)
        again = f"call the tool again without plan_token for a fresh preview and token (tokens live {self.ttl:.0f} s)"
        if plan is None:
            raise GuardRefused("unknown or already used plan token", again)
        if plan.expires <= self._clock():
            raise GuardRefused(f"the plan token for {plan.action} {plan.target} has expired", again)
        if plan.action != action or plan.cluster != cluster:
            raise GuardRefused(f"the plan token is for {plan.action} {plan.target}"
                               + (f" in cluster {plan.cluster}" if plan.cluster else "") + f", not for {action}",
                               again)
        return plan

    def remaining(self, plan: Plan) -> float:
        return max(plan.expires - self._clock(), 0.0)

    def _drop_expired(self) -> None:
        now = self._clock()
        for token in [t for t, p in self._plans.items() if p.expires <= now]:
            del self._plans[token]
