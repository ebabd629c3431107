"""Destructive tools (`--allow-destructive`): stop, delete, migrate, drain. Two phases each (confirm.py):
without `plan_token` a preview and a plan token; with it, the typed name, a fresh re-read, then ONE
library call (`yes=True`, or for a delete the name check the library runs on what it has just read).

This module does not use `from __future__ import annotations`: the `Resolve(...)` markers in the
signatures refer to per-server resolvers, which must be evaluated when the function is defined."""

import hashlib
from typing import Annotated, Any

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Resolve
from pydantic import Field

from ..errors import GuardRefused

from . import registry
from .confirm import TypedName, asker, check_name, preview, refuse, typed_name
from .models import DestructiveOut
from .plans import Plan
from .runtime import Runtime, event_sender
from .tools_read import ClusterArg, VmArg
from .tools_write import Wait

PlanToken = Annotated[str | None, Field(description="the token of a preview; omit it to preview")]
Confirm = Annotated[str | None, Field(description="the VM's (for a drain: the node's) name, only for clients "
                                                  "without elicitation")]


def _vm_target(summary: Any) -> dict[str, Any]:
    return {"vmid": summary.vmid, "name": summary.name, "node": summary.node, "status": summary.status}


def register(srv: MCPServer, rt: Runtime, enabled: set[str]) -> None:
    async def vm_preview(action: str, vm: str | int, cluster: str | None, args: dict[str, Any],
                         dry_call: Any, checks: Any = None) -> DestructiveOut:
        pve = rt.cluster(cluster)
        summary = await rt.call(pve.vms.resolve, vm)
        config = await rt.call(pve.vms.config, summary.vmid)
        dry = rt.dry(cluster)
        return await preview(rt, action=action, cluster=cluster, target=_vm_target(summary), node=summary.node,
                             vmid=summary.vmid, name=summary.name, digest=config.get("digest"), args=args,
                             dry_run=lambda: dry_call(dry, summary.vmid),
                             checks=(lambda: checks(dry, summary.vmid)) if checks else None)

    async def vm_confirmed(action: str, ctx: Context | None, cluster: str | None, plan_token: str,
                           confirm: str | None, answer: Any, vm: str | int, **same: Any) -> Plan:
        """The plan, once the call names the previewed VM (and arguments), the typed name matches, and
        the VM is still the one previewed."""
        plan = await taken(action, cluster, plan_token)
        if str(vm) not in (str(plan.vmid), plan.name):
            raise refuse(f"the plan token is for {plan.action} {plan.target}, not for {vm!r}: nothing was done",
                         "preview the VM you mean")
        for key, value in same.items():
            if plan.args.get(key) != value:
                raise refuse(f"the plan token is for {key}={plan.args.get(key)!r}, not {value!r}: nothing was done",
                             "preview again with these arguments")
        check_name(plan, typed_name(ctx, answer, confirm, plan))
        pve = rt.cluster(cluster)
        if plan.vmid is None:
            raise refuse(f"the plan token is for {plan.action} {plan.target}, not for a VM")
        try:
            now = await rt.call_raw(pve.vms.resolve, plan.vmid)
            digest = (await rt.call_raw(pve.vms.config, plan.vmid)).get("digest")
        except Exception as exc:  # noqa: BLE001 - gone or unreadable: the plan no longer holds
            raise refuse(f"VM {plan.vmid} cannot be read again ({exc}): nothing was done",
                         "preview again") from exc
        changed = [what for what, was, is_ in (("name", plan.name, now.name), ("node", plan.node, now.node),
                                               ("config digest", plan.digest, digest)) if was != is_]
        if changed:
            raise refuse(f"VM {plan.vmid} changed since the preview ({', '.join(changed)}): nothing was done",
                         "preview again and confirm the VM as it is now")
        return plan

    async def taken(action: str, cluster: str | None, plan_token: str) -> Plan:
        try:
            return rt.plans.take(plan_token, action, rt.name(cluster))
        except GuardRefused as exc:
            raise refuse(exc.message, exc.hint) from exc

    async def vm_stop(ctx: Context,
                      answer: Annotated[ElicitationResult[TypedName], Resolve(asker(rt, "stop"))],
                      vm: VmArg, plan_token: PlanToken = None, confirm: Confirm = None, timeout: Wait = 60.0,
                      cluster: ClusterArg = None) -> DestructiveOut:
        """Hard power-off (data in the guest's memory is lost; prefer vm_shutdown). Without plan_token: a
        preview and a plan token. With it: the VM's name typed by the user (elicitation) or confirm=<name>."""
        if plan_token is None:
            return await vm_preview("stop", vm, cluster, {}, lambda dry, vmid: dry.vms.stop(vmid, yes=True))
        plan = await vm_confirmed("stop", ctx, cluster, plan_token, confirm, answer, vm)
        pve = rt.cluster(cluster)
        started = await rt.call(pve.vms.stop, plan.vmid, yes=True, wait=False)
        return executed(plan, await rt.finish(ctx, started, timeout))

    async def vm_delete(ctx: Context,
                        answer: Annotated[ElicitationResult[TypedName], Resolve(asker(rt, "delete"))],
                        vm: VmArg, plan_token: PlanToken = None, confirm: Confirm = None,
                        allow_template: bool = False, timeout: Wait = 120.0,
                        cluster: ClusterArg = None) -> DestructiveOut:
        """Destroy a stopped VM and its disks, after the library's guards (running, protected, locked,
        template, outside vmid_ranges). Without plan_token: a preview and a plan token; the VM stays. With
        it: the VM's name typed by the user (elicitation) or confirm=<name>."""
        args = {"allow_template": allow_template}
        if plan_token is None:
            return await vm_preview("delete", vm, cluster, args,
                                    lambda dry, vmid: dry.vms.delete(vmid, yes=True, allow_template=allow_template))
        plan = await vm_confirmed("delete", ctx, cluster, plan_token, confirm, answer, vm,
                                  allow_template=allow_template)
        pve = rt.cluster(cluster)
        # the library asks `confirm(name)` with the name it has just read, right before its guards
        started = await rt.call(pve.vms.delete, plan.vmid, confirm=lambda name: name == plan.name,
                                allow_template=bool(plan.args.get("allow_template")), wait=False)
        return executed(plan, await rt.finish(ctx, started, timeout))

    async def vm_migrate(ctx: Context,
                         answer: Annotated[ElicitationResult[TypedName], Resolve(asker(rt, "migrate"))],
                         vm: VmArg, target: Annotated[str, Field(description="target node")],
                         online: bool | None = None, bwlimit: Annotated[int | None, Field(ge=1, description="KiB/s")] = None,
                         with_local_disks: Annotated[bool, Field(description="copy local disks to the target "
                                                                             "(needed for VMs on local storage)")] = False,
                         plan_token: PlanToken = None, confirm: Confirm = None, timeout: Wait = 300.0,
                         cluster: ClusterArg = None) -> DestructiveOut:
        """Move a VM to another node (live if running), after the pre-checks (see migration_check).
        Without plan_token: a preview and a plan token. With it: the VM's name typed by the user
        (elicitation) or confirm=<name>."""
        args = {"target": target, "online": online, "bwlimit": bwlimit, "with_local_disks": with_local_disks}
        if plan_token is None:
            return await vm_preview("migrate", vm, cluster, args,
                                    lambda dry, vmid: dry.vms.migrate(vmid, target, online=online, bwlimit=bwlimit,
                                                                      with_local_disks=with_local_disks),
                                    lambda dry, vmid: dry.vms.migration_check(vmid, target, online=online,
                                                                              with_local_disks=with_local_disks))
        plan = await vm_confirmed("migrate", ctx, cluster, plan_token, confirm, answer, vm, **args)
        pve = rt.cluster(cluster)
        a = plan.args
        started = await rt.call(pve.vms.migrate, plan.vmid, a["target"], online=a["online"], bwlimit=a["bwlimit"],
                                with_local_disks=a["with_local_disks"], wait=False)
        return executed(plan, await rt.finish(ctx, started, timeout))

    async def node_drain(ctx: Context,
                         answer: Annotated[ElicitationResult[TypedName], Resolve(asker(rt, "drain"))],
                         node: Annotated[str, Field(description="node to empty")],
                         to: Annotated[list[str] | None, Field(description="only these target nodes")] = None,
                         include_stopped: bool = False, with_local_disks: bool = False,
                         plan_token: PlanToken = None, confirm: Confirm = None, timeout: Wait = 600.0,
                         cluster: ClusterArg = None) -> DestructiveOut:
        """Empty a node: migrate its VMs away in parallel, each to a target by the migration checks and
        free memory. Without plan_token: the plan and a plan token. With it: the node's name typed by the
        user (elicitation) or confirm=<node>. A changed set of VMs on the node invalidates the token."""
        options: dict[str, Any] = {"to": to, "include_stopped": include_stopped, "with_local_disks": with_local_disks}
        pve = rt.cluster(cluster)
        if plan_token is None:
            members = await node_vms(pve, node)
            dry = rt.dry(cluster)
            return await preview(rt, action="drain", cluster=cluster, target={"node": node, "vms": len(members)},
                                 node=node, vmid=None, name=node, digest=_digest(members), args=options,
                                 dry_run=lambda: dry.nodes.drain(node, yes=True, **options))
        plan = await taken("drain", cluster, plan_token)
        if node != plan.node or options != plan.args:
            raise refuse(f"the plan token is for draining node {plan.node} with {plan.args}: nothing was done",
                         "preview again with these arguments")
        check_name(plan, typed_name(ctx, answer, confirm, plan))
        if _digest(await node_vms(pve, plan.node)) != plan.digest:
            raise refuse(f"the VMs on node {plan.node} changed since the preview: nothing was done",
                         "preview again")
        observed = pve.with_options(on_event=event_sender(ctx))
        res = await rt.call(observed.nodes.drain, plan.node, yes=True, timeout=timeout, **plan.args)
        return executed(plan, res.to_dict())

    async def node_vms(pve: Any, node: str) -> list[tuple[int, str]]:
        vms = await rt.call(pve.vms.list, node=node)
        return sorted((v.vmid, v.name) for v in vms)

    for fn in (vm_stop, vm_delete, vm_migrate, node_drain):
        registry.add(srv, enabled, fn)


def executed(plan: Plan, result: dict[str, Any]) -> DestructiveOut:
    target: dict[str, Any] = {"node": plan.node} if plan.vmid is None else \
        {"vmid": plan.vmid, "name": plan.name, "node": plan.node}
    return DestructiveOut(phase="executed", action=plan.action, target=target, allowed=True, result=result)


def _digest(members: list[tuple[int, str]]) -> str:
    return hashlib.sha256(repr(members).encode()).hexdigest()[:16]
