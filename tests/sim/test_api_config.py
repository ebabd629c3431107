"""Config GET/PUT/POST: SYNC checks, digest, pending vs live on a running VM, cloud-init keys.

Spec: pve-semantics row 6 and §7.2 (PUT/POST, SYNC checks), §7.3 (delete/revert), §7.4 (hotplug),
row 7 and §7.5 (sshkeys, cipassword), §3.2 (locked VM), Appendix A.
"""

from __future__ import annotations

import urllib.parse

from apiharness import Client, auth

from pvectl.sim.backend import Backend
from pvectl.sim.routes import Api

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm1ZzYnA1sY0fL1s2Bq8yq2b8dH0zF3Jb6QK9sW3xYz me@host")


def test_put_returns_null_and_applies(client: Client, backend: Backend) -> None:
    assert client.ok("PUT", "/nodes/pve1/qemu/103/config", {"cores": 4, "memory": "4096"}) is None
    conf = client.get("/nodes/pve1/qemu/103/config")
    assert conf["cores"] == 4 and conf["memory"] == "4096"


def test_post_returns_qmconfig_upid(client: Client) -> None:
    upid = client.ok("POST", "/nodes/pve1/qemu/103/config", {"description": "hello"})
    assert upid.split(":")[5:7] == ["qmconfig", "103"]
    st = client.wait(upid)
    assert st["exitstatus"] == "OK"
    assert client.log(upid) == ["update VM 103: -description hello", "TASK OK"]
    assert client.get("/nodes/pve1/qemu/103/config")["description"] == "hello"


def test_no_options_specified(client: Client) -> None:
    for method in ("PUT", "POST"):
        r = client.fail(method, "/nodes/pve1/qemu/103/config", {"digest": "0" * 40})
        assert (r.status, r.reason) == (500, "no options specified")


def test_digest_mismatch_is_sync(client: Client) -> None:
    digest = client.get("/nodes/pve1/qemu/103/config")["digest"]
    client.ok("PUT", "/nodes/pve1/qemu/103/config", {"name": "changed", "digest": digest})
    for method in ("PUT", "POST"):
        r = client.fail(method, "/nodes/pve1/qemu/103/config", {"name": "again", "digest": digest})
        assert (r.status, r.reason) == (500, "checksum mismatch (file change by other user?)")


def test_config_of_missing_vm(client: Client) -> None:
    r = client.fail("PUT", "/nodes/pve1/qemu/555/config", {"name": "x"})
    assert (r.status, r.reason) == (500, "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist")


def test_delete_and_set_same_key(client: Client) -> None:
    r = client.fail("PUT", "/nodes/pve1/qemu/103/config", {"name": "x", "delete": "name"})
    assert r.status == 400
    assert r.json["errors"] == {"delete": "you can't use '-name' and -delete name' at the same time"}


def test_running_vm_pending_vs_live(client: Client) -> None:
    # §7.4: cores/memory stay pending (no cpu/memory hotplug by default); cloud-init, name, tags apply live
    conf = client.get("/nodes/pve1/qemu/100/config", {"current": 1})
    client.ok("PUT", "/nodes/pve1/qemu/100/config", {
        "cores": conf["cores"] + 1, "memory": "12288", "name": "web-renamed", "tags": "prod;new",
        "ciuser": "admin", "ipconfig0": "ip=10.1.1.5/24,gw=10.1.1.1", "nameserver": "1.1.1.1"})
    current = client.get("/nodes/pve1/qemu/100/config", {"current": 1})
    assert current["cores"] == conf["cores"] and current["memory"] == conf["memory"]
    assert current["name"] == "web-renamed" and current["tags"] == "prod;new" and current["ciuser"] == "admin"
    assert current["ipconfig0"] == "ip=10.1.1.5/24,gw=10.1.1.1" and current["nameserver"] == "1.1.1.1"
    merged = client.get("/nodes/pve1/qemu/100/config")            # pending applied by default (§7.1)
    assert merged["cores"] == conf["cores"] + 1 and merged["memory"] == "12288"
    pending = {p["key"]: p for p in client.get("/nodes/pve1/qemu/100/pending")}
    assert pending["cores"] == {"key": "cores", "value": conf["cores"], "pending": conf["cores"] + 1}
    assert pending["memory"]["pending"] == "12288"
    assert "pending" not in pending["name"]
    # a reboot applies pending changes (§5.1)
    client.run("POST", "/nodes/pve1/qemu/100/status/reboot")
    assert client.get("/nodes/pve1/qemu/100/config", {"current": 1})["cores"] == conf["cores"] + 1


def test_pending_and_config_value_types(client: Client) -> None:
    # qemu-server QemuServer.pm::parse_vm_config runs every value through check_type: integer and
    # boolean options become numbers (`int($1)`, `return 1`), `number` options keep the text they were
    # written as (`return $value`), so JSON::XS encodes them as strings; GuestHelpers.pm
    # config_with_pending_array hands both on as they are
    client.ok("PUT", "/nodes/pve1/qemu/100/config", {"cores": 3, "cpulimit": "1.5", "migrate_downtime": "2",
                                                     "onboot": "1", "description": "x"})
    pending = {p["key"]: p for p in client.get("/nodes/pve1/qemu/100/pending")}
    assert pending["cores"]["pending"] == 3 and pending["onboot"]["value"] == 1
    assert pending["cpulimit"]["value"] == "1.5" and pending["migrate_downtime"]["value"] == "2"
    assert pending["description"]["value"] == "x" and isinstance(pending["sockets"]["value"], int)
    conf = client.get("/nodes/pve1/qemu/100/config")
    assert (conf["cores"], conf["cpulimit"], conf["migrate_downtime"], conf["onboot"]) == (3, "1.5", "2", 1)


def test_delete_on_running_vm_is_pending(client: Client) -> None:
    client.ok("PUT", "/nodes/pve1/qemu/100/config", {"delete": "cpu,tags"})
    current = client.get("/nodes/pve1/qemu/100/config", {"current": 1})
    assert "cpu" in current and "tags" not in current
    pending = {p["key"]: p for p in client.get("/nodes/pve1/qemu/100/pending")}
    assert pending["cpu"]["delete"] == 1
    assert "cpu" not in client.get("/nodes/pve1/qemu/100/config")
    client.ok("PUT", "/nodes/pve1/qemu/100/config", {"revert": "cpu"})
    assert "delete" not in {p["key"]: p for p in client.get("/nodes/pve1/qemu/100/pending")}["cpu"]


def test_net_gets_a_generated_mac(client: Client) -> None:
    client.ok("PUT", "/nodes/pve1/qemu/103/config", {"net1": "virtio,bridge=vmbr0,firewall=1"})
    net1 = client.get("/nodes/pve1/qemu/103/config")["net1"]
    model, rest = net1.split(",", 1)
    assert model.startswith("virtio=BC:24:11:") and rest == "bridge=vmbr0,firewall=1"


def test_cipassword_is_masked(client: Client) -> None:
    client.ok("PUT", "/nodes/pve1/qemu/100/config", {"cipassword": "s3cret"})
    assert client.get("/nodes/pve1/qemu/100/config")["cipassword"] == "**********"


# ---------------------------------------------------------------- sshkeys (row 7, §7.5)
def test_sshkeys_not_urlencoded(client: Client) -> None:
    r = client.fail("PUT", "/nodes/pve1/qemu/103/config", {"sshkeys": KEY})
    assert (r.status, r.reason) == (400, "Parameter verification failed.")
    assert r.json["errors"] == {"sshkeys": f"invalid format - invalid urlencoded string: {KEY}\n"}


def test_sshkeys_urlencoded_accepted(client: Client) -> None:
    encoded = urllib.parse.quote(KEY + "\n", safe="")
    client.ok("PUT", "/nodes/pve1/qemu/103/config", {"sshkeys": encoded})
    # stored and returned in the url-encoded form (§7.1)
    assert client.get("/nodes/pve1/qemu/103/config")["sshkeys"] == encoded


def test_bad_ssh_key(client: Client) -> None:
    r = client.fail("PUT", "/nodes/pve1/qemu/103/config", {"sshkeys": urllib.parse.quote("ssh-rsa nope x", safe="")})
    assert (r.status, r.reason) == (500, "SSH public key validation error")
    r = client.fail("POST", "/nodes/pve1/qemu/103/config", {"sshkeys": urllib.parse.quote("not a key", safe="")})
    assert (r.status, r.reason) == (500, "SSH public key validation error")


# ---------------------------------------------------------------- permissions
def test_config_privileges(api: Api, backend: Backend) -> None:
    backend.add_token("ci@pve!t", "s1", privs={"/vms/103": ["VM.Audit", "VM.Config.Cloudinit"]})
    c = Client(api, auth("ci@pve!t", "s1"))
    assert c.ok("PUT", "/nodes/pve1/qemu/103/config", {"ciuser": "bob"}) is None
    r = c.fail("PUT", "/nodes/pve1/qemu/103/config", {"cores": 2})
    assert (r.status, r.reason) == (403, "Permission check failed (/vms/103, VM.Config.CPU)")
