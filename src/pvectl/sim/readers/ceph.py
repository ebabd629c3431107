"""Ceph readers. The simulated nodes have no Ceph packages: the `ceph-vm` RBD storage is an external
Ceph cluster (storage.cfg `monhost`). pve-manager then answers every Ceph data call with the error of
PVE/Ceph/Tools.pm::check_ceph_inited -> check_ceph_installed('ceph_mon'):
`die "binary not installed: /usr/bin/ceph-mon\\n"` (HTTP 500). The index methods (`/nodes/{node}/ceph`,
`.../ceph/cfg`, `.../osd/{osdid}`, `/cluster/ceph`) have no such check and list their children.
"""

from __future__ import annotations

from typing import NoReturn

from ..backend import ApiFail
from .base import Ctx, reader

NOT_INSTALLED = "binary not installed: /usr/bin/ceph-mon"

_PATHS = (
    "/cluster/ceph/metadata", "/cluster/ceph/status", "/cluster/ceph/flags", "/cluster/ceph/flags/{flag}",
    "/nodes/{node}/ceph/cfg/raw", "/nodes/{node}/ceph/cfg/db", "/nodes/{node}/ceph/cfg/value",
    "/nodes/{node}/ceph/cmd-safety", "/nodes/{node}/ceph/crush", "/nodes/{node}/ceph/fs",
    "/nodes/{node}/ceph/log", "/nodes/{node}/ceph/mds", "/nodes/{node}/ceph/mgr", "/nodes/{node}/ceph/mon",
    "/nodes/{node}/ceph/osd", "/nodes/{node}/ceph/osd/{osdid}/lv-info", "/nodes/{node}/ceph/osd/{osdid}/metadata",
    "/nodes/{node}/ceph/pool", "/nodes/{node}/ceph/pool/{name}", "/nodes/{node}/ceph/pool/{name}/status",
    "/nodes/{node}/ceph/rules", "/nodes/{node}/ceph/status",
)


@reader(*_PATHS)
def not_installed(ctx: Ctx) -> NoReturn:
    raise ApiFail(NOT_INSTALLED)
