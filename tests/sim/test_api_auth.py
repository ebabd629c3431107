"""Authentication, permissions, 501s, the proxy decision and pveproxy's parameter handling.

Spec: pve-semantics rows 11–13 and 15, C12, C15, §12.1, §12.3, §12.4, §12.5, §5.3 (vmlist filter),
§10.2 (permission filter of /cluster/resources).
"""

from __future__ import annotations

import json
import urllib.parse

from apiharness import FULL, Client

from pvectl.sim import wire
from pvectl.sim.backend import Backend
from pvectl.sim.routes import Api


# ---------------------------------------------------------------- 401 (row 11, §12.4)
def test_no_credentials_is_no_ticket(api: Api) -> None:
    r = Client(api, None).call("GET", "/version")
    assert (r.status, r.reason, r.body) == (401, "No ticket", b"")
    assert r.delay > 0


def test_bad_token_is_authentication_failed(api: Api) -> None:
    for header in (f"PVEAPIToken={FULL}=wrong-secret", "PVEAPIToken=nobody@pve!x=abc", "PVEAPIToken=garbage"):
        r = Client(api, header).call("GET", "/version")
        assert (r.status, r.reason, r.body) == (401, "Authentication failed!", b""), header
        assert r.delay > 0


def test_token_split_at_last_equals_and_space_separator(api: Api, backend: Backend) -> None:
    # AccessControl.pm::verify_token splits at the LAST '='; the separator may be '=' or ' ' (§12.4)
    backend.add_token("odd@pve!t", "s=e=cret")
    assert Client(api, "PVEAPIToken=odd@pve!t=s=e=cret").call("GET", "/version").status == 401
    backend.add_token("sp@pve!t", "secret1")
    assert Client(api, "PVEAPIToken sp@pve!t=secret1").call("GET", "/version").status == 200


def test_auth_before_501(api: Api) -> None:
    # row 13: authentication is checked first
    r = Client(api, None).call("GET", "/nodes/pve1/foo")
    assert r.status == 401


# ---------------------------------------------------------------- 403 and filtering (row 11, §5.3, §10.2)
def test_permission_check_failed(audit: Client) -> None:
    r = audit.fail("POST", "/nodes/pve1/qemu/100/status/start")
    assert (r.status, r.reason) == (403, "Permission check failed (/vms/100, VM.PowerMgmt)")
    assert r.json["message"] == "Permission check failed (/vms/100, VM.PowerMgmt)\n"
    r = audit.fail("GET", "/nodes/pve1/qemu/103/config")
    assert (r.status, r.reason) == (403, "Permission check failed (/vms/103, VM.Audit)")
    r = audit.fail("GET", "/nodes/pve1/qemu/100/agent/network-get-interfaces")
    assert r.reason == "Permission check failed (/vms/100, VM.GuestAgent.Audit|VM.GuestAgent.Unrestricted)"


def test_audit_token_reads_its_vm(audit: Client) -> None:
    assert audit.get("/nodes/pve1/qemu/100/status/current")["vmid"] == 100


def test_vm_without_audit_is_not_listed(audit: Client, backend: Backend) -> None:
    assert [v["vmid"] for v in audit.get("/nodes/pve1/qemu")] == [100]
    assert audit.get("/nodes/pve2/qemu") == []
    resources = audit.get("/cluster/resources")
    assert [e["vmid"] for e in resources if e["type"] == "qemu"] == [100]
    # nodes are listed without stats, storages need Datastore.Audit (§10.2)
    nodes = [e for e in resources if e["type"] == "node"]
    assert len(nodes) == 3 and all("maxmem" not in e for e in nodes)
    assert not [e for e in resources if e["type"] == "storage"]


def test_skiplock_is_root_only(client: Client) -> None:
    # §3.5, §6: a token is never root@pam
    r = client.fail("DELETE", "/nodes/pve1/qemu/103", {"skiplock": 1})
    assert (r.status, r.reason) == (400, "Parameter verification failed.")
    assert r.json["errors"] == {"skiplock": "Only root may use this option."}
    r = client.fail("PUT", "/nodes/pve1/qemu/103/config", {"skiplock": 1, "name": "x"})
    assert r.json["errors"] == {"skiplock": "Only root may use this option."}
    r = client.fail("POST", "/nodes/pve1/qemu/103/status/start", {"skiplock": 1})
    assert r.json["errors"] == {"skiplock": "Only root may use this option."}


# ---------------------------------------------------------------- 501 (row 13, §12.1)
def test_unknown_path_501(client: Client) -> None:
    r = client.fail("GET", "/nodes/pve1/foo")
    assert (r.status, r.reason) == (501, "Method 'GET /nodes/pve1/foo' not implemented")
    assert r.json == {"data": None, "message": "Method 'GET /nodes/pve1/foo' not implemented"}
    r = client.fail("PATCH", "/version")
    assert r.reason == "Method 'PATCH /version' not implemented"


def test_body_on_get_is_501(client: Client) -> None:
    r = client.call("GET", "/version", body=b"a=b", headers={"content-type": "application/x-www-form-urlencoded"})
    assert (r.status, r.reason) == (501, "Unexpected content for method 'GET'")


def test_query_overrides_body(client: Client, backend: Backend) -> None:
    # C15: query-string parameters overwrite body parameters of the same name
    r = client.call("PUT", "/nodes/pve1/qemu/103/config", body=b"name=from-body&description=kept",
                    query="name=from-query", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status == 200 and r.data is None
    assert backend.state.vms[103].config["name"] == "from-query"
    assert backend.state.vms[103].config["description"] == "kept"


def test_path_parameter_conflict(client: Client) -> None:
    # §12.1
    r = client.fail("PUT", "/nodes/pve1/qemu/103/config", {"vmid": 104, "name": "x"})
    assert r.status == 400
    assert r.json["errors"] == {"vmid": "duplicate parameter (already defined in URI) with conflicting values!"}


# ---------------------------------------------------------------- proxy decision (§12.5, C12)
def test_other_node_is_proxied_before_validation(client: Client) -> None:
    assert client.raw("GET", "/nodes/pve2/qemu", local="pve1") == wire.ProxyTo("pve2")
    # even with parameters the schema would reject
    bad = client.raw("POST", "/nodes/pve2/qemu/104/clone", body=b"newid=abc&bogus=1", local="pve1",
                     headers={"content-type": "application/x-www-form-urlencoded"})
    assert bad == wire.ProxyTo("pve2")
    # the local node and `localhost` are never proxied
    local = client.raw("GET", "/nodes/pve1/qemu", local="pve1")
    assert isinstance(local, wire.Response) and local.status == 200


def test_unknown_node_hostname_lookup(client: Client) -> None:
    r = client.call("GET", "/nodes/x/qemu", local="pve1")
    assert r.status == 500
    assert r.reason.startswith("hostname lookup 'x' failed - failed to get address info for: x: ")
    r = client.call("GET", "/nodes/foo_bar/qemu/100/status/current", local="pve1")
    assert r.status == 500 and r.reason.startswith("hostname lookup 'foo_bar' failed")


def test_proxy_loop_detected(client: Client) -> None:
    r = client.call("GET", "/nodes/pve2/qemu", local="pve1", headers={"pvedisableproxy": "true"})
    assert (r.status, r.reason) == (500, "proxy loop detected")
    # a relayed request for the node itself is fine
    r = client.call("GET", "/nodes/pve2/qemu", local="pve2", headers={"pvedisableproxy": "true"})
    assert r.status == 200


def test_non_proxied_endpoint_answers_for_cluster(client: Client) -> None:
    assert client.raw("GET", "/cluster/resources", local="pve3").status == 200  # type: ignore[union-attr]


# ---------------------------------------------------------------- form-decoding quirk end to end (C15)
FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_seed_form_bodies_are_rejected(client: Client, backend: Backend) -> None:
    # `ipconfig0=ip=dhcp` -> `ip`; `net0=virtio,bridge=vmbr0` -> `virtio,bridge`
    r = client.call("PUT", "/nodes/pve1/qemu/103/config", body=b"net0=virtio,bridge=vmbr0&ipconfig0=ip=dhcp",
                    headers=FORM)
    assert (r.status, r.reason) == (400, "Parameter verification failed.")
    assert set(r.json["errors"]) == {"net0", "ipconfig0"}
    # `size=+10G` -> ` 10G`
    r = client.call("PUT", "/nodes/pve1/qemu/103/resize", body=b"disk=scsi0&size=+10G", headers=FORM)
    assert r.status == 400 and r.json["errors"] == {"size": "value does not match the regex pattern"}
    before = dict(backend.state.vms[103].config)
    # once-encoded sshkeys: the form decoding removes the only encoding layer
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm1ZzYnA1sY0fL1s2Bq8yq2b8dH0zF3Jb6QK9sW3xYz me@host"
    once = urllib.parse.quote(key, safe="")
    r = client.call("PUT", "/nodes/pve1/qemu/103/config", body=f"sshkeys={once}".encode(), headers=FORM)
    assert r.status == 400
    assert r.json["errors"] == {"sshkeys": f"invalid format - invalid urlencoded string: {key}\n"}
    assert backend.state.vms[103].config == before


def test_same_values_correctly_encoded_succeed(client: Client, backend: Backend) -> None:
    body = urllib.parse.urlencode({"net0": "virtio,bridge=vmbr0", "ipconfig0": "ip=dhcp"}).encode()
    r = client.call("PUT", "/nodes/pve1/qemu/103/config", body=body, headers=FORM)
    assert r.status == 200, r.body
    conf = backend.state.vms[103].config
    assert conf["net0"].startswith("virtio=BC:24:11:") and conf["net0"].endswith(",bridge=vmbr0")
    assert conf["ipconfig0"] == "ip=dhcp"
    body = urllib.parse.urlencode({"disk": "scsi0", "size": "+10G"}).encode()
    r = client.call("PUT", "/nodes/pve1/qemu/103/resize", body=body, headers=FORM)
    assert r.status == 200
    assert client.wait(r.data)["exitstatus"] == "OK"
    assert "size=60G" in backend.state.vms[103].config["scsi0"]


def test_json_body_is_not_truncated(client: Client, backend: Backend) -> None:
    body = json.dumps({"net0": "virtio,bridge=vmbr1", "ipconfig0": "ip=10.0.0.5/24,gw=10.0.0.1"}).encode()
    r = client.call("PUT", "/nodes/pve1/qemu/103/config", body=body,
                    headers={"content-type": "application/json; charset=utf-8"})
    assert r.status == 200, r.body
    assert backend.state.vms[103].config["ipconfig0"] == "ip=10.0.0.5/24,gw=10.0.0.1"
    assert backend.state.vms[103].config["net0"].endswith(",bridge=vmbr1")


def test_limited_token_client_sees_own_tasks_only(client: Client, audit: Client) -> None:
    # §1.3: a token sees only its own tasks without Sys.Audit
    upid = client.ok("POST", "/nodes/pve1/qemu/103/status/stop")
    client.wait(upid)
    assert audit.get("/nodes/pve1/tasks") == []
    r = audit.fail("GET", f"/nodes/pve1/tasks/{urllib.parse.quote(upid, safe='')}/status")
    assert r.status == 403
