"""Every GET path of the 9.1 schema answers, with placeholders filled from the simulated state.

A placeholder is filled from the answer of the collection above it (`/pools/{poolid}` takes the first
`poolid` that `GET /pools` lists), or from the state for a few that have no collection GET. A path whose
collection is empty in the simulated state (no pools, no HA resources, no firewall rules, ...) cannot
name a real object: it is asked for a made-up one and must fail as PVE does for a missing object. The
rest answer 200 and fit the schema's `returns`, except the documented errors below.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest
from apiharness import Client, vms_by

from pvectl.sim.backend import Backend
from pvectl.sim.models import Container
from pvectl.schema import Schema

# Paths where real PVE answers an error for the simulated state, with the reason.
DOCUMENTED_ERRORS: dict[str, tuple[int, str]] = {
    # The nodes have no Ceph packages (the `ceph-vm` RBD pool is an external Ceph cluster configured by
    # `monhost` in storage.cfg): pve-manager PVE/Ceph/Tools.pm::check_ceph_inited ->
    # check_ceph_installed('ceph_mon') dies "binary not installed: /usr/bin/ceph-mon".
    **{p: (500, "binary not installed: /usr/bin/ceph-mon") for p in (
        "/cluster/ceph/metadata", "/cluster/ceph/status", "/cluster/ceph/flags", "/cluster/ceph/flags/{flag}",
        "/nodes/{node}/ceph/cfg/raw", "/nodes/{node}/ceph/cfg/db", "/nodes/{node}/ceph/cfg/value",
        "/nodes/{node}/ceph/cmd-safety", "/nodes/{node}/ceph/crush", "/nodes/{node}/ceph/fs",
        "/nodes/{node}/ceph/log", "/nodes/{node}/ceph/mds", "/nodes/{node}/ceph/mgr", "/nodes/{node}/ceph/mon",
        "/nodes/{node}/ceph/osd", "/nodes/{node}/ceph/osd/{osdid}/lv-info",
        "/nodes/{node}/ceph/osd/{osdid}/metadata", "/nodes/{node}/ceph/pool",
        "/nodes/{node}/ceph/pool/{name}", "/nodes/{node}/ceph/pool/{name}/status",
        "/nodes/{node}/ceph/rules", "/nodes/{node}/ceph/status")},
}

# 200 answers where real PVE itself does not fit its schema's `returns`.
SCHEMA_DEVIATIONS = {
    # pve-manager API2/Cluster.pm::nextid returns the VMID as a JSON string although the schema says
    # integer (pve-semantics row 10)
    "/cluster/nextid",
    # integer and boolean options (cores, onboot) come back as JSON numbers, as from GET .../config:
    # QemuServer.pm::parse_vm_config -> check_type returns `int($1)` / 1 / 0, and GuestHelpers.pm
    # config_with_pending_array passes them on; the schema types `value` and `pending` as string
    "/nodes/{node}/qemu/{vmid}/pending",
}
# GETs that reach outside the node (storage scans of remote servers, URL and OCI registry queries, an
# OVF to import): the simulated nodes have no DNS and no route out, and answer as a real node does then
# (sim/readers/remote.py; pve-storage Storage.pm::resolv_server, PVE/Cmd.pm::run_command, LWP).
REMOTE: dict[str, tuple[dict[str, str], tuple[int, str]]] = {
    "/nodes/{node}/scan/nfs": ({"server": "nas.example.com"},
                               (500, "unable to resolve address for server 'nas.example.com'")),
    "/nodes/{node}/scan/cifs": ({"server": "nas.example.com"},
                                (500, "unable to resolve address for server 'nas.example.com'")),
    "/nodes/{node}/scan/iscsi": ({"portal": "san.example.com:3260"}, (400, "Parameter verification failed.")),
    "/nodes/{node}/scan/pbs": ({"server": "pbs.example.com", "username": "backup@pbs", "password": "x"},
                               (500, "error fetching datastores - 500 Can't connect to pbs.example.com:8007 "
                                     "(Name or service not known)")),
    "/nodes/{node}/query-url-metadata": ({"url": "https://cdimage.example.com/debian.iso"},
                                         (500, "invalid server response: '500 Can't connect to "
                                               "cdimage.example.com:443 (Name or service not known)'")),
    "/nodes/{node}/query-oci-repo-tags": ({"reference": "docker.io/library/alpine"},
                                          (500, "command 'skopeo list-tags docker://docker.io/library/alpine' "
                                                "failed: exit code 1")),
    "/nodes/{node}/storage/{storage}/import-metadata": ({"volume": "import/appliance.ovf"},
                                                        (500, "can't open '/var/lib/vz/import/appliance.ovf' - "
                                                              "No such file or directory")),
}
# Directory indexes that PVE serves for any name, without looking the object up
# (qemu-server API2/Qemu.pm and pve-container API2/LXC/Snapshot.pm `snapshot_cmd_idx`).
INDEX_WITHOUT_LOOKUP = {"/nodes/{node}/qemu/{vmid}/snapshot/{snapname}", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}"}
# Methods declared without `permissions` are root@pam's alone (RPCEnvironment.pm::check_api2_permissions:
# raise_perm_exc('user != root@pam')), and an API token is never root@pam: pve-manager
# API2/Cluster/BackupInfo.pm index, API2/ACMEAccount.pm get_account, pve-network's vnet firewall index.
for _path in ("/cluster/backup-info", "/cluster/acme/account/{name}", "/cluster/sdn/vnets/{vnet}/firewall"):
    DOCUMENTED_ERRORS[_path] = (403, "Permission check failed (user != root@pam)")
# Reads other tools make at start-up: each must be among the 200 answers.
FIRST_CALLS = ("/nodes/{node}/version", "/nodes/{node}/lxc", "/pools", "/storage", "/cluster/tasks", "/cluster/options",
               "/cluster/ha/status/current", "/cluster/ha/resources", "/nodes/{node}/storage/{storage}/content",
               "/access/users", "/nodes/{node}/subscription", "/nodes/{node}/replication", "/cluster/backup",
               "/cluster/backup-info/not-backed-up", "/nodes/{node}/rrddata", "/nodes/{node}/qemu/{vmid}/rrddata",
               "/nodes/{node}/qemu/{vmid}/agent/info", "/nodes/{node}/qemu/{vmid}/status/current")
# VNC and migration tunnel websockets check their ticket first; the simulator issues none
# (AccessControl.pm::verify_vnc_ticket / verify_tunnel_ticket -> PVE::Ticket: 401).
for _path in ("/nodes/{node}/vncwebsocket", "/nodes/{node}/qemu/{vmid}/vncwebsocket",
              "/nodes/{node}/lxc/{vmid}/vncwebsocket"):
    DOCUMENTED_ERRORS[_path] = (401, "permission denied - invalid PVEVNC ticket")
for _path in ("/nodes/{node}/qemu/{vmid}/mtunnelwebsocket", "/nodes/{node}/lxc/{vmid}/mtunnelwebsocket"):
    DOCUMENTED_ERRORS[_path] = (401, "permission denied - invalid PVETUNNEL ticket")
# No Proxmox Backup Server storage and no backup archive in the simulated cluster: pve-storage
# API2/Storage/FileRestore.pm refuses non-PBS storages; Storage.pm::abs_filesystem_path finds no file.
for _path in ("/nodes/{node}/storage/{storage}/file-restore/list", "/nodes/{node}/storage/{storage}/file-restore/download"):
    DOCUMENTED_ERRORS[_path] = (400, "Parameter verification failed.")
DOCUMENTED_ERRORS["/nodes/{node}/vzdump/extractconfig"] = (
    500, "can't find file 'local:backup/vzdump-qemu-100-2025_01_01-00_00_00.vma.zst'")
# Placeholders without a collection GET above them, filled from the state.
FIXED = {"osdid": "0", "flag": "noout", "pos": "0", "cidr": "10.0.0.0/24", "fabric_id": "f1",
         "node_id": "pve1", "id": "x"}
# Extra query parameters some GETs require.
QUERY: dict[str, dict[str, str]] = {
    "/nodes/{node}/qemu/{vmid}/feature": {"feature": "snapshot"},
    "/nodes/{node}/lxc/{vmid}/feature": {"feature": "snapshot"},
    "/nodes/{node}/qemu/{vmid}/rrd": {"timeframe": "hour", "ds": "cpu"},
    "/nodes/{node}/qemu/{vmid}/rrddata": {"timeframe": "hour"},
    "/nodes/{node}/lxc/{vmid}/rrd": {"timeframe": "hour", "ds": "cpu"},
    "/nodes/{node}/lxc/{vmid}/rrddata": {"timeframe": "hour"},
    "/nodes/{node}/rrd": {"timeframe": "hour", "ds": "cpu"},
    "/nodes/{node}/rrddata": {"timeframe": "hour"},
    "/nodes/{node}/storage/{storage}/rrd": {"timeframe": "hour", "ds": "used"},
    "/nodes/{node}/storage/{storage}/rrddata": {"timeframe": "hour"},
    "/nodes/{node}/qemu/{vmid}/cloudinit/dump": {"type": "user"},
    "/nodes/{node}/disks/smart": {"disk": "/dev/nvme0n1"},
    "/nodes/{node}/apt/changelog": {"name": "pve-manager"},
    "/nodes/{node}/ceph/cfg/value": {"config-keys": "global:fsid"},
    "/nodes/{node}/ceph/cmd-safety": {"service": "osd", "id": "0", "action": "stop"},
    "/nodes/{node}/qemu/{vmid}/agent/file-read": {"file": "/etc/hostname"},
    "/nodes/{node}/qemu/{vmid}/agent/exec-status": {"pid": "4242"},
    "/cluster/jobs/schedule-analyze": {"schedule": "daily"},
    "/cluster/sdn/dry-run": {"node": "pve1"},
    "/nodes/{node}/scan/lvmthin": {"vg": "pve"},
    "/nodes/{node}/storage/{storage}/file-restore/list": {"volume": "backup/vm/100/2025-01-01T00:00:00Z",
                                                          "filepath": "/"},
    "/nodes/{node}/storage/{storage}/file-restore/download": {"volume": "backup/vm/100/2025-01-01T00:00:00Z",
                                                              "filepath": "Lw=="},
    "/nodes/{node}/vzdump/extractconfig": {"volume": "local:backup/vzdump-qemu-100-2025_01_01-00_00_00.vma.zst"},
    **{p: {"port": "5900", "vncticket": "PVEVNC:00000000::bm90LWEtdGlja2V0"} for p in (
        "/nodes/{node}/vncwebsocket", "/nodes/{node}/qemu/{vmid}/vncwebsocket", "/nodes/{node}/lxc/{vmid}/vncwebsocket")},
    **{p: {"socket": "/run/qemu-server/100.mtunnel", "ticket": "PVETUNNEL:00000000::bm90LWEtdGlja2V0"} for p in (
        "/nodes/{node}/qemu/{vmid}/mtunnelwebsocket", "/nodes/{node}/lxc/{vmid}/mtunnelwebsocket")},
}
for _path, (_query, _answer) in REMOTE.items():
    QUERY[_path] = _query
    DOCUMENTED_ERRORS[_path] = _answer
DOCUMENTED_ERRORS["/nodes/{node}/qemu/{vmid}/agent/exec-status"] = (
    # qemu-ga guest-exec-status for a PID it never started (QEMU qga/commands.c: "Invalid parameter 'pid'")
    500, "Agent error: Invalid parameter 'pid'")

_PARAM = re.compile(r"\{([^}]+)\}")


def _templates(schema: Schema) -> list[str]:
    return sorted(e.path for e in schema.endpoints if e.method == "GET")


class Walker:
    def __init__(self, client: Client, schema: Schema, backend: Backend) -> None:
        self.client = client
        self.schema = schema
        self.backend = backend
        running = [v for v in vms_by(backend, running=True, agent=True) if backend.state.vms[v].node == "pve1"]
        self.fixed = dict(FIXED, node="pve1", vmid=str(running[0]))
        self.ct = next(c for c in backend.state.containers.values() if c.node == "pve1")

    def fill(self, template: str) -> tuple[str | None, str]:
        """The concrete path, or (None, reason) when the state has no object for a placeholder."""
        path = ""
        for seg in [s for s in template.split("/") if s]:
            m = _PARAM.fullmatch(seg)
            if not m:
                path += "/" + seg
                continue
            name = m.group(1)
            value = self._value(template, path, name)
            if value is None:
                return None, f"no object for {{{name}}} under {path}"
            path += "/" + urllib.parse.quote(value, safe="")
        return path, ""

    def _value(self, template: str, parent: str, name: str) -> str | None:
        if name == "vmid" and "/lxc" in parent:
            return str(self.ct.vmid)
        if name in ("node", "vmid"):
            return self.fixed[name]
        if name == "upid":
            return next(r.upid for r in self.backend.engine.records() if r.node == "pve1")
        endpoint = self.schema.match("GET", parent)
        if endpoint is not None:
            r = self.client.call("GET", parent)
            if r.status == 200 and isinstance(r.data, list):
                key = name if not r.data or name in r.data[0] else next(
                    (k for k in ("id", "name", "volid", "userid", "sid", "group", "rule", "iface") if k in r.data[0]),
                    name)
                for item in r.data:
                    if name == "snapname" and item.get(key) == "current":
                        continue          # `current` is the live state, not a snapshot
                    if item.get(key) is not None and str(item[key]) != "":
                        return str(item[key])
                return None
        return self.fixed.get(name)


@pytest.fixture
def walker(client: Client, schema: Schema, backend: Backend) -> Walker:
    # a finished task on pve1 for {upid}, and two containers
    stopped = [v for v in vms_by(backend, running=False) if backend.state.vms[v].node == "pve1"]
    client.run("POST", f"/nodes/pve1/qemu/{stopped[0]}/status/start")
    with backend.mu:
        for vmid, node in ((200, "pve1"), (201, "pve2")):
            backend.state.containers[vmid] = Container.generate(vmid, node, running=vmid == 200)
    return Walker(client, schema, backend)


def test_every_get_path_answers(walker: Walker, schema: Schema, client: Client) -> None:
    answered: list[str] = []
    documented: list[str] = []
    absent: list[str] = []
    problems: list[str] = []
    for template in _templates(schema):
        path, why = walker.fill(template)
        query = urllib.parse.urlencode(QUERY.get(template, {}))
        if path is None:
            # nothing of that kind exists: ask for a made-up one; PVE answers an error, never 200 or 501
            made_up = _PARAM.sub("nosuch0", template).replace("/nodes/nosuch0", "/nodes/pve1")
            made_up = made_up.replace("/qemu/nosuch0", f"/qemu/{walker.fixed['vmid']}")
            made_up = made_up.replace("/lxc/nosuch0", f"/lxc/{walker.ct.vmid}")
            r = client.call("GET", made_up, query=query)
            if r.status == 200 and template in INDEX_WITHOUT_LOOKUP:
                pass
            elif r.status in (200, 501) or not r.reason:
                problems.append(f"{template}: {why}, yet {made_up} -> {r.status} {r.reason}")
            absent.append(template)
            continue
        r = client.call("GET", path, query=query)
        if template in DOCUMENTED_ERRORS:
            status, text = DOCUMENTED_ERRORS[template]
            if (r.status, r.reason) != (status, text):
                problems.append(f"{template}: want {status} {text!r}, got {r.status} {r.reason!r}")
            documented.append(template)
            continue
        if r.status != 200:
            problems.append(f"{path}: {r.status} {r.reason}")
            continue
        found = schema.match("GET", urllib.parse.unquote(path))
        assert found is not None
        bad = schema.check_returns(found[0], r.data)
        if bad and template not in SCHEMA_DEVIATIONS:
            problems.append(f"{path}: {bad[:3]}")
            continue
        answered.append(template)
    assert not problems, "\n".join(problems)
    assert set(FIRST_CALLS) <= set(answered), set(FIRST_CALLS) - set(answered)
    total = len(_templates(schema))
    assert total == 327
    assert len(answered) + len(documented) + len(absent) == total
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    claim = (f"{len(answered)} of {total} with schema-valid data",
             f"{len(documented) + len(absent)} with Proxmox's own")
    assert all(c in readme for c in claim), f"README's simulator section should say: {claim}"
    print(f"\nGET paths: {len(answered)} answered 200 and schema-valid, {len(documented)} documented errors, "
          f"{len(absent)} need an object the simulated state does not have (answered with PVE's error)")


def test_writes_outside_the_simulated_set_stay_501(client: Client) -> None:
    # pve-manager HTTPServer.pm::rest_handler: no handler -> 501, the message without a newline
    for method, path in (("POST", "/pools"), ("PUT", "/cluster/options"), ("DELETE", "/storage/local"),
                         ("POST", "/nodes/pve1/lxc/200/status/start")):
        r = client.call(method, path)
        assert (r.status, r.reason) == (501, f"Method '{method} {path}' not implemented")
        assert r.json["message"] == f"Method '{method} {path}' not implemented"


def test_agent_ping(client: Client, backend: Backend) -> None:
    # POST .../agent/ping is a read in all but method: {"result": {}} from a running agent
    import time

    vmid = next(v for v in vms_by(backend, running=True, agent=True) if backend.state.vms[v].node == "pve1")
    with backend.mu:
        backend.state.vms[vmid].started_at = time.time() - 600
    assert client.ok("POST", f"/nodes/pve1/qemu/{vmid}/agent/ping") == {"result": {}}
    stopped = next(v for v in vms_by(backend, running=False, agent=True) if backend.state.vms[v].node == "pve1")
    r = client.call("POST", f"/nodes/pve1/qemu/{stopped}/agent/ping")
    assert (r.status, r.reason) == (500, f"VM {stopped} is not running")


@pytest.mark.parametrize("path, status, message, errors", [
    ("/pools/dev", 500, "pool 'dev' does not exist", None),
    ("/cluster/ha/resources/vm:100", 500, "no such resource 'vm:100'", None),
    ("/cluster/firewall/ipset/blocked", 500, "no such IPSet 'blocked'", None),
    ("/nodes/pve1/qemu/100/firewall/ipset/blocked", 500, "no such IPSet 'blocked'", None),
    ("/cluster/backup/daily", 400, "Parameter verification failed.", {"id": "No such job 'daily'"}),
    ("/cluster/sdn/vnets/vnet1", 500, "sdn vnet 'vnet1' does not exist", None),
    ("/nodes/pve1/ceph/status", 500, "binary not installed: /usr/bin/ceph-mon", None),
])
def test_missing_objects_answer_pves_error(client: Client, path: str, status: int, message: str,
                                           errors: dict[str, str] | None) -> None:
    r = client.call("GET", path)
    assert (r.status, r.reason) == (status, message)
    assert r.json.get("errors") == errors


def test_the_walk_checks_enums_and_closed_objects(schema: Schema) -> None:
    # so that "schema-valid" above also means: enum values only, no keys a closed object does not list
    node_time = schema.endpoint("GET", "/nodes/{node}/time")
    good = {"time": 1_700_000_000, "localtime": 1_700_000_000, "timezone": "UTC"}
    assert schema.check_returns(node_time, good) == []
    assert schema.check_returns(node_time, dict(good, zone="UTC")) == [
        "data: properties the schema does not allow: ['zone']"]
    status = schema.endpoint("GET", "/nodes/{node}/qemu/{vmid}/status/current")
    problems = schema.check_returns(status, {"vmid": 100, "status": "sleeping", "ha": {"managed": 0}})
    assert problems == ["data.status: 'sleeping' not one of ['stopped', 'running']"]
