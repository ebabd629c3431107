"""Read commands: cluster status, node list/status, vm list/status, template list."""

from __future__ import annotations

TYPE_CHECKING = False

from ..render import Column, human_bytes, human_duration, percent

if TYPE_CHECKING:
    from .context import Context


def require_node(ctx: Context, name: str) -> None:
    from ..nodes.reads import require_node as check

    check(ctx.cluster.session, name)


def cluster_status(ctx: Context) -> int:
    st = ctx.cluster.status()
    if ctx.output != "table":
        ctx.emit(st.to_dict())
        return 0
    quorum = "yes" if st.quorate else "NO - writes are refused (cluster not ready - no quorum?)"
    print(f"cluster {st.name or '(standalone node)'}  quorate: {quorum}")
    ctx.emit([{"name": n.name, "online": "online" if n.online else "OFFLINE", "nodeid": n.nodeid, "ip": n.ip}
              for n in st.nodes],
             columns=[Column("name", "NODE"), Column("online", "STATE"), Column("nodeid", "ID"), Column("ip", "IP")])
    return 0


def node_list(ctx: Context) -> int:
    nodes = ctx.cluster.nodes.list()
    rows = [n.to_dict() | {"mem_free": n.mem_free} for n in nodes]
    ctx.emit(rows, columns=[Column("name", "NODE"), Column("status", "STATUS"), Column("cpu", "CPU", percent),
                            Column("maxcpu", "CPUS"), Column("mem", "MEM USED", human_bytes),
                            Column("maxmem", "MEM TOTAL", human_bytes), Column("mem_free", "MEM FREE", human_bytes),
                            Column("uptime", "UPTIME", human_duration)])
    return 0


def node_status(ctx: Context) -> int:
    cluster = ctx.cluster
    if ctx.args.node:
        require_node(ctx, ctx.args.node)
    names = [ctx.args.node] if ctx.args.node else [n.name for n in cluster.nodes.list() if n.status == "online"]
    if ctx.args.node:
        rows = [cluster.nodes.status(ctx.args.node).to_dict()]
    else:
        # every node: one that cannot answer is reported in its row, like an offline node in `node list`
        from ..errors import ApiError

        rows = []
        for name in names:
            try:
                rows.append(cluster.nodes.status(name).to_dict())
            except ApiError as exc:
                rows.append({"name": name, "error": exc.message})
    if ctx.output != "table":
        ctx.emit(rows[0] if ctx.args.node else rows)
        return 0
    ctx.emit(rows, columns=[Column("name", "NODE"), Column("cpu", "CPU", percent), Column("cpus", "CPUS"),
                            Column("memory_used", "MEM USED", human_bytes),
                            Column("memory_total", "MEM TOTAL", human_bytes),
                            Column("memory_free", "MEM FREE", human_bytes),
                            Column("loadavg", "LOAD", lambda v: " ".join(f"{x:.2f}" for x in v) if v else "-"),
                            Column("uptime", "UPTIME", human_duration), Column("pveversion", "VERSION")])
    for row in rows:
        if "error" in row:
            print(f"note: {row['name']}: {row['error']}")
    return 0


VM_COLUMNS = [Column("vmid", "VMID"), Column("name", "NAME"), Column("status", "STATUS"), Column("node", "NODE"),
              Column("maxcpu", "CPUS"), Column("maxmem", "MEM", human_bytes),
              Column("template", "TEMPLATE", lambda v: "yes" if v else "-"), Column("tags", "TAGS"),
              Column("lock", "LOCK")]


def vm_list(ctx: Context) -> int:
    a = ctx.args
    if a.node:
        require_node(ctx, a.node)  # a mistyped node name must not look like an empty node
    vms = ctx.cluster.vms.list(status=a.status, node=a.node, tag=a.tag, templates=a.templates)
    ctx.emit([v.to_dict() for v in vms], columns=VM_COLUMNS)
    return 0


def vm_status(ctx: Context) -> int:
    st = ctx.cluster.vms.status(ctx.args.vm)
    d = st.to_dict()
    if ctx.output != "table":
        ctx.emit(d)
        return 0
    from ..render import kv

    kv({"vmid": st.vmid, "name": st.name, "node": st.node, "status": st.status, "qmpstatus": st.qmpstatus,
        "pid": st.pid, "cpu": percent(st.cpu), "cpus": st.cpus, "mem": human_bytes(st.mem),
        "maxmem": human_bytes(st.maxmem), "disk": human_bytes(st.maxdisk), "uptime": human_duration(st.uptime),
        "lock": st.lock, "tags": st.tags, "template": "yes" if st.template else "no",
        "agent": "enabled" if st.agent else "not configured"})
    return 0


def template_list(ctx: Context) -> int:
    templates = ctx.cluster.templates.list(by=ctx.args.by)
    ctx.emit([t.to_dict() for t in templates],
             columns=[Column("vmid", "VMID"), Column("name", "NAME"), Column("node", "NODE"),
                      Column("template", "FLAG", lambda v: "yes" if v else "NO"), Column("tags", "TAGS"),
                      Column("maxdisk", "DISK", human_bytes), Column("matched_by", "FOUND BY")])
    if ctx.output == "table":
        suspicious = [t for t in templates if not t.is_template]
        for t in suspicious:
            print(f"note: VM {t.vm.vmid} ({t.vm.name}) matches {'/'.join(t.matched_by)} but is not a template "
                  "(no template flag): cloning it makes a full copy of a normal VM")
    return 0
