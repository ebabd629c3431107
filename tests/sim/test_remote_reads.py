"""GETs that reach outside the node, on nodes without DNS or a route out (sim/readers/remote.py):
each fails with the text the Perl code on a real node produces, never 501."""

from __future__ import annotations

import pytest
from apiharness import Client


@pytest.mark.parametrize("path, params, status, message", [
    # an IP literal resolves to itself (Storage.pm::resolv_server), then the tool cannot reach it
    ("/nodes/pve1/scan/nfs", {"server": "192.0.2.10"}, 500,
     "command '/sbin/showmount --no-headers --exports 192.0.2.10' failed: exit code 1"),
    ("/nodes/pve1/scan/nfs", {"server": "nas"}, 500, "unable to resolve address for server 'nas'"),
    # smbclient's connect failure on stderr becomes the error (Storage.pm::scan_cifs: raise($err))
    ("/nodes/pve1/scan/cifs", {"server": "192.0.2.11"}, 500,
     "do_connect: Connection to 192.0.2.11 failed (Error NT_STATUS_HOST_UNREACHABLE)"),
    ("/nodes/pve1/scan/cifs", {"server": "nas", "username": "u", "password": "p"}, 500,
     "unable to resolve address for server 'nas'"),
    # a PBS user logs in first: the LWP status line with its code
    ("/nodes/pve1/scan/pbs", {"server": "192.0.2.20", "username": "root@pam", "password": "x", "port": 8008}, 500,
     "error fetching datastores - 500 Can't connect to 192.0.2.20:8008 (No route to host)"),
    # an API token goes straight to the GET: the response message only (APIClient/LWP.pm::call)
    ("/nodes/pve1/scan/pbs", {"server": "pbs", "username": "root@pam!scan", "password": "x"}, 500,
     "error fetching datastores - Can't connect to pbs:8007 (Name or service not known)"),
    ("/nodes/pve1/query-url-metadata", {"url": "http://192.0.2.30:8080/x.iso"}, 500,
     "invalid server response: '500 Can't connect to 192.0.2.30:8080 (No route to host)'"),
    ("/nodes/pve1/query-oci-repo-tags", {"reference": "ghcr.io/org/app"}, 500,
     "command 'skopeo list-tags docker://ghcr.io/org/app' failed: exit code 1"),
    ("/nodes/pve1/storage/local/import-metadata", {"volume": "import/vm.ova"}, 500,
     "command 'tar -xO --wildcards --occurrence=1 -f /var/lib/vz/import/vm.ova '*.ovf'' failed: exit code 2"),
    ("/nodes/pve1/storage/local/import-metadata", {"volume": "import/disk.qcow2"}, 500, "invalid format"),
    ("/nodes/pve1/storage/local/import-metadata", {"volume": "iso/x.iso"}, 500,
     "unable to parse directory volume name 'iso/x.iso'"),
    ("/nodes/pve1/storage/local-lvm/import-metadata", {"volume": "import/vm.ovf"}, 500,
     "unable to parse lvm volume name 'import/vm.ovf'"),
    ("/nodes/pve1/storage/nosuch/import-metadata", {"volume": "import/vm.ovf"}, 500, "storage 'nosuch' does not exist"),
])
def test_remote_reads_fail_as_on_an_isolated_node(client: Client, path: str, params: dict[str, object], status: int,
                                                  message: str) -> None:
    r = client.call("GET", path, params)
    assert (r.status, r.reason) == (status, message)


def test_iscsi_scan(client: Client) -> None:
    # Storage.pm::resolv_portal: raise_param_exc for a name; an unreachable portal lists no target
    # (ISCSIPlugin.pm::iscsi_discovery skips a portal whose TCP ping fails)
    r = client.call("GET", "/nodes/pve1/scan/iscsi", {"portal": "san:3260"})
    assert (r.status, r.json.get("errors")) == (400, {"portal": "unable to resolve portal address 'san:3260'"})
    assert client.get("/nodes/pve1/scan/iscsi", {"portal": "192.0.2.40:3260"}) == []
    assert client.get("/nodes/pve1/scan/iscsi", {"portal": "[2001:db8::1]"}) == []


def test_scans_need_datastore_allocate(audit: Client) -> None:
    # Scan.pm: check => ['perm', '/storage', ['Datastore.Allocate']]
    r = audit.call("GET", "/nodes/pve1/scan/nfs", {"server": "192.0.2.10"})
    assert r.status == 403
