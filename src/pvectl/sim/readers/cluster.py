"""Cluster readers: options, tasks, HA, backup info, corosync config, log, metrics, notifications.

Concepts the simulator does not model answer what a cluster without them answers: no HA resources
(`ha/status/current` then lists only the quorum entry), no backup jobs (every guest is "not backed up"),
no replication, no SDN fabrics.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from ..backend import ApiFail
from ..tasks import decode_upid
from .base import Ctx, reader



@reader("/cluster/options")
def options(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/Cluster.pm::get_options: datacenter.cfg (a fresh cluster's holds only the
    # installer's `keyboard`; keys the simulated datacenter.cfg sets, e.g. `max_workers`, as stored;
    # callers without Sys.Audit on / see only console and tag-style) plus
    # `allowed-tags`: pve-guest-common GuestHelpers.pm::get_allowed_tags with the default
    # user-allow 'free' - every tag on a guest the caller may see (all of them with Sys.Modify on /)
    b = ctx.backend
    token = ctx.caller.token
    out: dict[str, Any] = {}
    if b.has(token, "/", "Sys.Audit"):
        out = {"keyboard": "en-us", **b.state.datacenter}
    privileged = b.has(token, "/", "Sys.Modify")
    tags: set[str] = set()
    guests = [*b.state.vms.values(), *b.state.containers.values()]
    for g in guests:
        if privileged or b.has(token, f"/vms/{g.vmid}", "VM.Audit"):
            tags.update(t for t in re.split(r"[;, ]+", str(g.config.get("tags", ""))) if t)
    out["allowed-tags"] = sorted(tags)
    return out


@reader("/cluster/tasks")
def tasks(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-manager API2/Cluster.pm::get_tasks: the cluster-wide task list pvestatd broadcasts (recent
    # and running tasks of every node), newest first, only those the caller may see
    b = ctx.backend
    out = []
    for rec in b.engine.records():
        u = decode_upid(rec.upid)
        if not b.task_visible(ctx.caller.token, rec.node, u.user):
            continue
        item = b.task_fields(rec.upid)
        if rec.status == "stopped":
            item["status"] = rec.exitstatus or "unexpected status"
            item["endtime"] = rec.endtime
        out.append(item)
    out.sort(key=lambda t: t["starttime"], reverse=True)
    return out


@reader("/cluster/ha/status/current")
def ha_status(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-ha-manager API2/HA/Status.pm::status (9.1, before the 2026 fencing entry): the quorum line;
    # master and LRM lines only once a manager status exists, i.e. once HA was ever used
    quorate = ctx.backend.quorate()
    return [{"id": "quorum", "type": "quorum", "node": ctx.local, "quorate": int(quorate),
             "status": "OK" if quorate else f"No quorum on node '{ctx.local}'!"}]


@reader("/cluster/ha/status/manager_status")
def ha_manager_status(ctx: Ctx) -> dict[str, Any]:
    # Status.pm::manager_status: the (empty) manager status and this node's quorum
    return {"manager_status": {}, "quorum": {"node": ctx.local, "quorate": int(ctx.backend.quorate())}}


@reader("/cluster/backup-info/not-backed-up")
def not_backed_up(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-manager API2/BackupInfo.pm::get_guests_not_in_backup: no backup jobs, so every guest
    b = ctx.backend
    out: list[dict[str, Any]] = [{"vmid": vm.vmid, "type": "qemu", "name": vm.config.get("name", f"VM {vm.vmid}")}
                                 for vm in b.state.vms.values() if not vm.is_template]
    out += [{"vmid": ct.vmid, "type": "lxc", "name": ct.config.get("hostname", f"CT{ct.vmid}")}
            for ct in b.state.containers.values()]
    return sorted(out, key=lambda g: g["vmid"])


def _totem(ctx: Ctx) -> dict[str, Any]:
    # corosync.conf's totem section as pve-cluster parses it (Corosync.pm)
    return {"cluster_name": ctx.backend.state.cluster_name, "config_version": str(ctx.backend.state.config_version),
            "interface": {"0": {"linknumber": "0"}}, "ip_version": "ipv4-6", "link_mode": "passive",
            "secauth": "on", "version": "2"}


@reader("/cluster/config/totem")
def totem(ctx: Ctx) -> dict[str, Any]:
    return _totem(ctx)


@reader("/cluster/config/qdevice")
def qdevice(ctx: Ctx) -> dict[str, Any]:
    # pve-cluster API2/ClusterConfig.pm::get_qdevice_status: {} without a QDevice
    return {}


@reader("/cluster/config/apiversion")
def apiversion(ctx: Ctx) -> int:
    # pve-cluster PVE::Cluster::Setup::JOIN_API_VERSION (PVE 9)
    return 2


def _nodelist(ctx: Ctx) -> list[dict[str, Any]]:
    return [{"name": n.name, "node": n.name, "nodeid": n.nodeid, "quorum_votes": 1,
             "ring0_addr": f"10.0.0.{n.nodeid}", "pve_addr": f"10.0.0.{n.nodeid}",
             "pve_fp": ctx.backend.fingerprints.get(n.name) or ":".join(["00"] * 32)}
            for n in ctx.backend.state.nodes.values()]


@reader("/cluster/config/nodes")
def config_nodes(ctx: Ctx) -> list[dict[str, Any]]:
    return [{k: v for k, v in n.items() if k not in ("pve_addr", "pve_fp")} for n in _nodelist(ctx)]


@reader("/cluster/config/join")
def join_info(ctx: Ctx) -> dict[str, Any]:
    # pve-cluster API2/ClusterConfig.pm::join_info
    node = str(ctx.params.get("node") or ctx.local)
    if node not in ctx.backend.state.nodes:
        raise ApiFail(f"unknown node '{node}'")
    digest = hashlib.sha1(repr(_nodelist(ctx)).encode()).hexdigest()
    return {"nodelist": _nodelist(ctx), "preferred_node": node, "totem": _totem(ctx), "config_digest": digest}


@reader("/cluster/log")
def cluster_log(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-manager API2/Cluster.pm::log: the cluster log (task start/end lines from every node)
    b = ctx.backend
    out = []
    for i, rec in enumerate(b.engine.records()):
        u = decode_upid(rec.upid)
        out.append({"uid": i + 1, "time": u.starttime, "pri": 6, "tag": "pvedaemon", "pid": u.pid, "node": rec.node,
                    "user": u.user, "msg": f"<{u.user}> starting task {rec.upid}:"})
    limit = int(ctx.params.get("max") or 50)
    return out[-limit:][::-1]


@reader("/cluster/metrics/export")
def metrics_export(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/Cluster/MetricServer.pm::export: the current value per metric and object
    b = ctx.backend
    now = int(time.time())
    data = []
    for n in b.state.nodes.values():
        if n.online:
            u = b.node_usage(n)
            data += [{"id": f"node/{n.name}", "metric": "cpu_current", "timestamp": now, "type": "gauge",
                      "value": u["cpu"]},
                     {"id": f"node/{n.name}", "metric": "mem_used", "timestamp": now, "type": "gauge",
                      "value": u["mem"]}]
    return {"data": data}


@reader("/cluster/acme/meta")
def acme_meta(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/ACME... (proxmox-acme): Let's Encrypt's directory metadata
    return {"termsOfService": "https://letsencrypt.org/documents/LE-SA-v1.5-February-24-2025.pdf",
            "website": "https://letsencrypt.org", "caaIdentities": ["letsencrypt.org"]}


@reader("/cluster/acme/tos")
def acme_tos(ctx: Ctx) -> str:
    return "https://letsencrypt.org/documents/LE-SA-v1.5-February-24-2025.pdf"


# pve-manager API2/ACMEPlugin.pm: plugins.cfg's parser always adds the built-in `standalone` plugin
_STANDALONE = {"plugin": "standalone", "type": "standalone"}


@reader("/cluster/acme/plugins")
def acme_plugins(ctx: Ctx) -> list[dict[str, Any]]:
    if ctx.params.get("type") not in (None, "standalone"):
        return []
    return [dict(_STANDALONE, digest=hashlib.sha1(b"").hexdigest())]


@reader("/cluster/acme/plugins/{id}")
def acme_plugin(ctx: Ctx) -> dict[str, Any]:
    if ctx.params["id"] != "standalone":
        raise ApiFail(f"ACME plugin '{ctx.params['id']}' not defined")
    return dict(_STANDALONE, digest=hashlib.sha1(b"").hexdigest())


@reader("/cluster/acme/directories")
def acme_directories(ctx: Ctx) -> list[dict[str, Any]]:
    return [{"name": "Let's Encrypt V2", "url": "https://acme-v02.api.letsencrypt.org/directory"},
            {"name": "Let's Encrypt V2 Staging", "url": "https://acme-staging-v02.api.letsencrypt.org/directory"}]


@reader("/cluster/sdn/dry-run")
def sdn_dry_run(ctx: Ctx) -> dict[str, Any]:
    # pve-network API2/Network/SDN.pm::dry_run: no SDN configuration, so no pending difference
    ctx.backend.node(str(ctx.params["node"]))
    return {}


@reader("/cluster/sdn/fabrics/all")
def fabrics_all(ctx: Ctx) -> dict[str, Any]:
    return {"fabrics": [], "nodes": []}


# Since PVE 8.1 every cluster has the built-in `mail-to-root` sendmail target and `default-matcher`
# (proxmox-notify `context/pve.rs` BUILTIN_CONFIG, origin `builtin`).
_MAIL_TO_ROOT = {"name": "mail-to-root", "mailto-user": ["root@pam"],
                 "comment": "Send mails to root@pam's email address",
                 "origin": "builtin"}
_DEFAULT_MATCHER = {"name": "default-matcher", "mode": "all", "target": ["mail-to-root"],
                    "comment": "Route all notifications to mail-to-root", "origin": "builtin"}


def _builtin(entry: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    if name != entry["name"]:
        raise ApiFail(f"{kind} '{name}' does not exist", 404)
    return dict(entry, digest=hashlib.sha256(repr(entry).encode()).hexdigest())


@reader("/cluster/notifications/endpoints/sendmail")
def sendmail(ctx: Ctx) -> list[dict[str, Any]]:
    return [dict(_MAIL_TO_ROOT)]


@reader("/cluster/notifications/endpoints/sendmail/{name}")
def sendmail_one(ctx: Ctx) -> dict[str, Any]:
    return _builtin(_MAIL_TO_ROOT, "endpoint", str(ctx.params["name"]))


@reader("/cluster/notifications/matchers")
def matchers(ctx: Ctx) -> list[dict[str, Any]]:
    return [dict(_DEFAULT_MATCHER)]


@reader("/cluster/notifications/matchers/{name}")
def matcher_one(ctx: Ctx) -> dict[str, Any]:
    return _builtin(_DEFAULT_MATCHER, "matcher", str(ctx.params["name"]))


@reader("/cluster/notifications/targets")
def targets(ctx: Ctx) -> list[dict[str, Any]]:
    return [{"name": "mail-to-root", "type": "sendmail", "comment": _MAIL_TO_ROOT["comment"], "origin": "builtin"}]
