"""The two phases of a destructive tool (delete, stop, migrate, drain).

Phase 1, no `plan_token`: a preview. The library runs the operation in dry-run mode (every read and
guard, no write): the guards' verdict, the writes it would send, and, when the guards allow it, a
plan token bound to node, VMID, name and config digest (`plans.py`).

Phase 2, `plan_token`: the name must be typed. A client that supports elicitation asks its human
(`confirm` is then ignored: the agent cannot answer for the human); otherwise the agent passes
`confirm=<name>`. Then the VM is read again: a changed name, node or config digest refuses with
nothing sent. The guards themselves are the library's, run again by the write call.

Every refusal is a tool error with the `GuardRefused` type (the CLI's exit 3).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.elicitation import AcceptedElicitation, CancelledElicitation, DeclinedElicitation
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit
from pydantic import BaseModel, Field

from ..errors import GuardRefused, PvectlError
from .models import DestructiveOut, Verdict
from .output import ToolFailure, failure
from .plans import Plan
from .runtime import Runtime


class TypedName(BaseModel):
    name: str = Field(description="the name, exactly as shown")


def can_elicit(ctx: Context | None) -> bool:
    """True when the client declared form elicitation (a bare `elicitation: {}` counts as form)."""
    if ctx is None:
        return False
    try:
        caps = ctx.client_capabilities
    except ValueError:          # outside a request
        return False
    el = caps.elicitation if caps is not None else None
    return el is not None and (el.form is not None or el.url is None)


def asker(rt: Runtime, action: str) -> Callable[..., Awaitable[Elicit[TypedName] | None]]:
    """A resolver for the tool's `answer` parameter: asks the human for the name when a live plan token
    is given and the client can elicit; otherwise asks nothing (None)."""

    async def ask(ctx: Context, plan_token: str | None = None) -> Elicit[TypedName] | None:
        plan = rt.plans.peek(plan_token, action)
        if plan is None or not can_elicit(ctx):
            return None
        return Elicit(plan.question(), TypedName)

    ask.__qualname__ = f"ask_{action}"          # the SDK keys the question on the wire by this name
    return ask


def refuse(message: str, hint: str | None = None) -> ToolFailure:
    return failure(GuardRefused(message, hint))


def typed_name(ctx: Context | None, answer: Any, confirm: str | None, plan: Plan) -> str:
    """The name the human (elicitation) or, without that capability, the agent (`confirm`) gave."""
    if isinstance(answer, DeclinedElicitation | CancelledElicitation):
        raise refuse(f"{plan.action} {plan.target} was {answer.action}d at the confirmation prompt: nothing was done",
                     "call the tool again without plan_token if it is still wanted")
    if isinstance(answer, AcceptedElicitation) and isinstance(answer.data, TypedName):
        return answer.data.name
    if can_elicit(ctx):
        raise refuse(f"{plan.action} {plan.target} needs the name typed at the confirmation prompt",
                     "call again with the plan_token of a fresh preview")
    if confirm is None:
        raise refuse(f"{plan.action} {plan.target} needs confirmation: pass confirm=<the name> with the plan_token",
                     f"confirm='{plan.name}' if that is the one the user means")
    return confirm


def check_name(plan: Plan, typed: str) -> None:
    if typed != plan.name:
        raise refuse(f"the name typed ({typed!r}) is not the name of the {plan.target.split(' (')[0]} "
                     f"in the plan ({plan.name!r}): nothing was done",
                     "check which one the user means and preview again")


_LEVELS = {"ok": "pass", "pass": "pass", "error": "refused", "fail": "refused", "refused": "refused",
           "warn": "warning", "warning": "warning"}


def verdicts(outcome: dict[str, Any] | None, refusal: GuardRefused | None, action: str) -> list[Verdict]:
    """The guards' verdicts: the library's own checks (a migration's findings, a drain's moves) when it
    lists them, and its overall verdict."""
    out: list[Verdict] = []
    for key in ("guards", "checks", "findings"):
        for item in (outcome or {}).get(key) or []:
            if isinstance(item, dict):
                level = str(item.get("verdict") or item.get("level") or item.get("status") or "info").lower()
                out.append(Verdict(check=str(item.get("check") or item.get("name") or key),
                                   verdict=_LEVELS.get(level, "info"),  # type: ignore[arg-type]
                                   message=str(item.get("reason") or item.get("message") or ""),
                                   hint=item.get("fix") or item.get("hint")))
    for move in (outcome or {}).get("moves") or []:       # a drain: one verdict per VM
        if isinstance(move, dict):
            what = f"VM {move.get('vmid')} ({move.get('name')})"
            if move.get("target"):
                out.append(Verdict(check=what, verdict="pass", message=f"moves to {move['target']} ({move.get('mode')})"))
            else:
                out.append(Verdict(check=what, verdict="refused", message="; ".join(move.get("reasons") or [])))
    if refusal is not None:
        out.append(Verdict(check=f"{action} guards", verdict="refused", message=refusal.message, hint=refusal.hint))
    elif not out:
        out.append(Verdict(check=f"{action} guards", verdict="pass",
                           message="every guard the library applies to this action allows it now"))
    return out


async def preview(rt: Runtime, *, action: str, cluster: str | None, target: dict[str, Any], node: str,
                  vmid: int | None, name: str, digest: str | None, args: dict[str, Any],
                  dry_run: Callable[[], Any], checks: Callable[[], Any] | None = None) -> DestructiveOut:
    """Run `dry_run` (the library call on the dry-run Cluster) and issue a plan token if it passes.
    `checks`: a library read whose findings are shown too (the migration check)."""
    refusal: GuardRefused | None = None
    outcome: dict[str, Any] = {}
    try:
        if checks is not None:
            outcome["findings"] = (await rt.call_raw(checks)).to_dict().get("findings") or []
        res = await rt.call_raw(dry_run)
        outcome.update(res.to_dict() if hasattr(res, "to_dict") else {})
    except GuardRefused as exc:
        refusal = exc
    except PvectlError as exc:
        raise failure(exc) from exc
    planned = list(outcome.get("planned") or [])
    out = DestructiveOut(phase="preview", action=action, target=target, allowed=refusal is None,
                         guards=verdicts(outcome, refusal, action), planned=planned)
    if refusal is None:
        plan = rt.plans.issue(action=action, cluster=rt.name(cluster), node=node, vmid=vmid, name=name,
                              digest=digest, args=args)
        out.plan_token = plan.token
        out.expires_in = round(rt.plans.ttl, 1)
        out.confirm_with = (f"call {_tool(action)} again with plan_token; the user types the name '{name}' at the "
                            f"prompt (clients without elicitation: also pass confirm='{name}')")
    return out


def _tool(action: str) -> str:
    return {"drain": "node_drain"}.get(action, f"vm_{action}")
