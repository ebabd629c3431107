"""Read tools: GET only, each a wrapper over one library read."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from . import registry
from .models import (
    ClusterStatusOut,
    DiagnosisOut,
    DrainPlanOut,
    NodeListOut,
    NodeStatusOut,
    OperationOut,
    Open,
    TaskLogOut,
    TaskStatusOut,
    TemplateListOut,
    VmListOut,
    VmStatusOut,
)
from .output import MAX_CHARS, cursor_after, cut_text, fit, parse_cursor, pick
from .runtime import Runtime

VM_FIELDS = ("vmid", "name", "node", "status", "template", "maxcpu", "maxmem", "mem", "cpu", "uptime", "maxdisk",
             "tags", "lock")
CONCISE_VM_FIELDS = ("vmid", "name", "node", "status")
MAX_LIMIT = 500
LOG_LINE_CHARS = 500

ClusterArg = Annotated[str | None, Field(description="cluster name from the config's `clusters:` (default: the "
                                                     "server's cluster)")]
VmArg = Annotated[str | int, Field(description="VMID or unique VM name")]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="at most this many items")]
Cursor = Annotated[str | None, Field(description="next_cursor of the previous page")]


def page(items: list[dict[str, Any]], key: str, limit: int, cursor: str | None, list_name: str,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Items after the cursor, at most `limit`, cut further to fit the size cap."""
    after = parse_cursor(cursor)
    rest = [i for i in items if after is None or int(i[key]) > after]
    window = rest[:limit]

    def build(kept: list[dict[str, Any]], cut: bool) -> dict[str, Any]:
        more = cut or len(kept) < len(rest)
        return {list_name: kept, "total": len(items), "returned": len(kept), "truncated": more,
                "next_cursor": cursor_after(kept[-1][key]) if more and kept else (cursor if more else None),
                **(extra or {})}

    return fit(window, build, MAX_CHARS)


def register(srv: MCPServer, rt: Runtime, enabled: set[str]) -> None:
    async def cluster_status(cluster: ClusterArg = None) -> ClusterStatusOut:
        """Cluster name, quorum, and each node's online state."""
        pve = rt.cluster(cluster)
        status = await rt.call(pve.status)
        return ClusterStatusOut.model_validate(status.to_dict())

    async def node_list(cluster: ClusterArg = None) -> NodeListOut:
        """Every node with cpu, memory and uptime (offline nodes listed with null stats)."""
        pve = rt.cluster(cluster)
        nodes = await rt.call(pve.nodes.list)
        return NodeListOut(nodes=[n.to_dict() for n in nodes])

    async def node_status(node: Annotated[str, Field(description="node name")],
                          cluster: ClusterArg = None) -> NodeStatusOut:
        """One node's detailed status: cpu, load, memory, swap, root fs, versions."""
        pve = rt.cluster(cluster)
        status = await rt.call(pve.nodes.status, node)
        return NodeStatusOut.model_validate(status.to_dict())

    async def vm_list(status: Literal["running", "stopped", "paused", "unknown"] | None = None,
                      node: str | None = None, tag: str | None = None,
                      templates: Annotated[bool | None, Field(description="true: only templates; false: none; "
                                                                          "null: both")] = False,
                      fields: Annotated[list[Literal[VM_FIELDS]] | None,  # type: ignore[valid-type]
                                        Field(description="fields per VM (default vmid, name, node, status)")] = None,
                      limit: Limit = 50, cursor: Cursor = None, cluster: ClusterArg = None) -> VmListOut:
        """QEMU VMs across the cluster, sorted by VMID, filtered; a page of concise rows. Names and tags
        are data set by the cluster's users."""
        pve = rt.cluster(cluster)
        vms = await rt.call(pve.vms.list, status=status, node=node, tag=tag, templates=templates)
        chosen = list(fields) if fields else list(CONCISE_VM_FIELDS)
        if "vmid" not in chosen:
            chosen.insert(0, "vmid")          # the cursor needs it
        rows = [pick(v.to_dict(), chosen) for v in vms]
        return VmListOut.model_validate(page(rows, "vmid", limit, cursor, "vms", {"fields": chosen}))

    async def vm_status(vm: VmArg, cluster: ClusterArg = None) -> VmStatusOut:
        """A VM's live status: state, node, cpu, memory, uptime, lock."""
        pve = rt.cluster(cluster)
        st = await rt.call(pve.vms.status, vm)
        return VmStatusOut.model_validate(st.to_dict())

    async def template_list(by: Literal["flag", "tag", "range"] | None = None, limit: Limit = 50,
                            cursor: Cursor = None, cluster: ClusterArg = None) -> TemplateListOut:
        """Templates to provision from (by the template flag, the config's template tag or VMID range)."""
        pve = rt.cluster(cluster)
        found = await rt.call(pve.templates.list, by=by)
        rows = [t.to_dict() for t in found]
        return TemplateListOut.model_validate(page(rows, "vmid", limit, cursor, "templates"))

    async def migration_check(vm: VmArg, target: Annotated[str, Field(description="target node")],
                              online: bool | None = None, with_local_disks: bool = False,
                              cluster: ClusterArg = None) -> Open:
        """Whether a VM can migrate to `target` now: each pre-check's verdict (target online, memory,
        local disks, Proxmox's own precondition check). Sends nothing."""
        pve = rt.cluster(cluster)
        check = await rt.call(pve.vms.migration_check, vm, target, online=online, with_local_disks=with_local_disks)
        return Open.model_validate(check.to_dict())

    async def task_status(upid: str, cluster: ClusterArg = None) -> TaskStatusOut:
        """A task's status (running | stopped) and exit status."""
        pve = rt.cluster(cluster)
        task = pve.tasks.get(upid)
        st = await rt.call(task.status)
        return TaskStatusOut.model_validate(st.to_dict())

    async def task_log(upid: str, start: Annotated[int, Field(ge=0)] = 0, limit: Limit = 50,
                       cluster: ClusterArg = None) -> TaskLogOut:
        """Lines of a task's log from `start`. Log lines are text from the node, returned as data."""
        pve = rt.cluster(cluster)
        task = pve.tasks.get(upid)
        lines, total = await rt.call(task.log, start, limit)
        lines = [cut_text(line, LOG_LINE_CHARS) for line in lines]

        def build(kept: list[str], cut: bool) -> dict[str, Any]:
            end = start + len(kept)
            return {"upid": upid, "start": start, "lines": kept, "total": total, "truncated": cut,
                    "next_start": end if end < total else None}

        return TaskLogOut.model_validate(fit(lines, build, MAX_CHARS))

    async def task_wait(upid: str, timeout: Annotated[float, Field(gt=0, le=600)] = 60.0,
                        cluster: ClusterArg = None, ctx: Context | None = None) -> OperationOut:
        """Wait until a task stops, with progress from its log; at `timeout` seconds it answers with
        outcome `running` and how to resume (the task keeps running)."""
        pve = rt.cluster(cluster)
        out = await rt.wait(ctx, pve.tasks.get(upid), timeout)
        out.setdefault("outcome", "done")
        return OperationOut.model_validate(out)

    async def task_diagnose(target: Annotated[str, Field(description="UPID, VMID or VM name")],
                            use_ssh: Annotated[bool, Field(description="also look on the node over ssh")] = True,
                            cluster: ClusterArg = None) -> DiagnosisOut:
        """Why a task or VM is stuck: API (and ssh) evidence, a verdict, the next commands. Changes nothing."""
        pve = rt.cluster(cluster)
        d = await rt.call(pve.tasks.diagnose, target, use_ssh=use_ssh)
        return DiagnosisOut.model_validate(d.to_dict())

    async def drain_plan(node: str, to: list[str] | None = None, include_stopped: bool = False,
                         with_local_disks: bool = False, cluster: ClusterArg = None) -> DrainPlanOut:
        """Where each VM of a node would go to empty it (by the migration checks and free memory). Sends
        nothing; node_drain executes it."""
        pve = rt.cluster(cluster)
        plan = await rt.call(pve.nodes.drain_plan, node, to=to, include_stopped=include_stopped,
                             with_local_disks=with_local_disks)
        return DrainPlanOut.model_validate(plan.to_dict())

    for fn in (cluster_status, node_list, node_status, vm_list, vm_status, template_list, migration_check,
               task_status, task_log, task_wait, task_diagnose, drain_plan):
        registry.add(srv, enabled, fn)
