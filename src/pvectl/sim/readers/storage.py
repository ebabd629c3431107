"""Storage readers: storage.cfg (`/storage`), per-node status, content and RRD data."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from ..backend import ApiFail
from ..models import Storage
from .base import Ctx, reader
from .rrd import storage_rrd

# storage.cfg options of the generated storages beyond type and content (pve-storage Plugin.pm and the
# plugins' defaults); `rbd` is an external Ceph cluster (`monhost` set), see readers/ceph.py
_CFG_EXTRA: dict[str, dict[str, Any]] = {
    "dir": {"path": "/var/lib/vz", "prune-backups": "keep-all=1"},
    "lvmthin": {"thinpool": "data", "vgname": "pve"},
    "rbd": {"pool": "vm-pool", "monhost": "10.0.1.11 10.0.1.12 10.0.1.13", "username": "admin", "krbd": 0},
    "nfs": {"server": "10.0.0.50", "export": "/export/pve", "path": "/mnt/pve/nfs"},
}


def storage_config(s: Storage) -> dict[str, Any]:
    """The storage.cfg section of `s` (shared-by-nature types such as rbd/nfs carry no `shared` key)."""
    entry: dict[str, Any] = {"type": s.plugintype, "content": s.content}
    entry.update(_CFG_EXTRA.get(s.plugintype, {}))
    if s.shared and s.plugintype in ("dir", "lvm", "lvmthin", "zfspool"):
        entry["shared"] = 1
    if s.nodes is not None:
        entry["nodes"] = ",".join(s.nodes)
    if not s.enabled:
        entry["disable"] = 1
    return entry


def storage_cfg_digest(storages: Iterable[Storage]) -> str:
    """SHA1 of storage.cfg as PVE writes it (`<type>: <id>` then tab-indented options): the `digest`."""
    text = ""
    for s in storages:
        cfg = storage_config(s)
        text += f"{cfg.pop('type')}: {s.sid}\n" + "".join(f"\t{k} {v}\n" for k, v in cfg.items()) + "\n"
    return hashlib.sha1(text.encode()).hexdigest()


def _api_entry(ctx: Ctx, s: Storage) -> dict[str, Any]:
    # pve-storage API2/Storage/Config.pm $api_storage_config: the section plus `storage` and `digest`
    entry = storage_config(s)
    entry["storage"] = s.sid
    entry["digest"] = storage_cfg_digest(ctx.backend.state.storages.values())
    return entry


def _storage(ctx: Ctx) -> Storage:
    sid = str(ctx.params["storage"])
    s = ctx.backend.state.storages.get(sid)
    if s is None:
        # pve-storage PVE::Storage::storage_config
        raise ApiFail(f"storage '{sid}' does not exist")
    return s


@reader("/storage")
def storage_index(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-storage API2/Storage/Config.pm::index: only storages the caller may audit
    out = []
    for s in ctx.backend.state.storages.values():
        if ctx.params.get("type") and s.plugintype != ctx.params["type"]:
            continue
        if ctx.backend.has(ctx.caller.token, f"/storage/{s.sid}", "Datastore.Audit", "Datastore.AllocateSpace"):
            out.append(_api_entry(ctx, s))
    return out


@reader("/storage/{storage}")
def storage_read(ctx: Ctx) -> dict[str, Any]:
    return _api_entry(ctx, _storage(ctx))


@reader("/nodes/{node}/storage/{storage}/status")
def storage_status(ctx: Ctx) -> dict[str, Any]:
    # pve-storage API2/Storage/Status.pm::read_status: the node's entry of the status index
    s = _storage(ctx)
    for entry in ctx.backend.storage_list(ctx.node, ctx.caller.token, None, False):
        if entry["storage"] == s.sid:
            return {k: v for k, v in entry.items() if k not in ("storage", "used_fraction")}
    raise ApiFail(f"storage '{s.sid}' is not available on node '{ctx.node}'")


def _content(ctx: Ctx, s: Storage) -> list[dict[str, Any]]:
    # pve-storage Storage.pm::volume_list / Plugin.pm::list_images: VM disks with their owner vmid;
    # `content` filters by type (images, rootdir, iso, ...); `vmid` by owner
    b = ctx.backend
    out = []
    prefix = s.sid + ":"
    want = ctx.params.get("content")
    for vol in b.state.volumes.values():
        if not vol.volid.startswith(prefix) or (not s.shared and vol.node != ctx.node):
            continue
        if ctx.params.get("vmid") is not None and vol.vmid != int(ctx.params["vmid"]):
            continue
        kind = "rootdir" if vol.vmid in b.state.containers else "images"
        if want and want != kind:
            continue
        if not b.has(ctx.caller.token, f"/vms/{vol.vmid}", "VM.Audit") and \
                not b.has(ctx.caller.token, f"/storage/{s.sid}", "Datastore.Audit", "Datastore.AllocateSpace"):
            continue
        fmt = "qcow2" if s.plugintype in ("dir", "nfs", "cifs") else "raw"
        entry: dict[str, Any] = {"volid": vol.volid, "vmid": vol.vmid, "size": vol.size, "format": fmt,
                                 "content": kind, "ctime": int(b.epoch0) - 86400}
        if vol.base:
            entry["parent"] = vol.base.split(":", 1)[1]
        out.append(entry)
    return sorted(out, key=lambda e: e["volid"])


@reader("/nodes/{node}/storage/{storage}/content")
def storage_content(ctx: Ctx) -> list[dict[str, Any]]:
    s = _storage(ctx)
    ctx.backend.node(ctx.node)
    return _content(ctx, s)


@reader("/nodes/{node}/storage/{storage}/content/{volume}")
def volume_attributes(ctx: Ctx) -> dict[str, Any]:
    # pve-storage API2/Storage/Content.pm::info
    s = _storage(ctx)
    volume = str(ctx.params["volume"])
    volid = volume if ":" in volume else f"{s.sid}:{volume}"
    for entry in _content(ctx, s):
        if entry["volid"] == volid:
            path = f"/dev/pve/{volid.split(':', 1)[1]}" if s.plugintype == "lvmthin" else \
                f"rbd:vm-pool/{volid.split(':', 1)[1]}" if s.plugintype == "rbd" else f"/var/lib/vz/images/{volid}"
            return {"format": entry["format"], "size": entry["size"], "used": entry["size"], "path": path}
    raise ApiFail(f"no such volume '{volid}'")


@reader("/nodes/{node}/storage/{storage}/rrddata")
def storage_rrddata(ctx: Ctx) -> list[dict[str, Any]]:
    return storage_rrd(ctx.backend, ctx.node, str(ctx.params["storage"]), str(ctx.params["timeframe"]))


@reader("/nodes/{node}/storage/{storage}/prunebackups")
def prune(ctx: Ctx) -> list[dict[str, Any]]:
    _storage(ctx)
    return []


@reader("/nodes/{node}/storage/{storage}/file-restore/list", "/nodes/{node}/storage/{storage}/file-restore/download")
def file_restore(ctx: Ctx) -> Any:
    # pve-storage API2/Storage/FileRestore.pm: only Proxmox Backup Server storages can restore files,
    # and the simulated cluster has none
    _storage(ctx)
    raise ApiFail("Parameter verification failed.", 400, {"storage": "Only PBS storages supported for file-restore."})


@reader("/nodes/{node}/vzdump/extractconfig")
def extract_config(ctx: Ctx) -> str:
    # pve-manager API2/VZDump.pm::extractconfig -> pve-storage Storage.pm::extract_vzdump_config ->
    # abs_filesystem_path: no backup archive exists in the simulated cluster
    volid = str(ctx.params["volume"])
    sid = volid.split(":", 1)[0] if ":" in volid else None
    if sid is not None and sid not in ctx.backend.state.storages:
        raise ApiFail(f"storage '{sid}' does not exist")
    raise ApiFail(f"can't find file '{volid}'")
