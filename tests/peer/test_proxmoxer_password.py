"""proxmoxer's `password=` mode against `pvectl.sim`: login ticket, cookie, CSRF token on writes.

proxmoxer posts to /access/ticket, sends the ticket as the `PVEAuthCookie` cookie and adds the
`CSRFPreventionToken` header to every non-GET request itself; the simulator checks both as pveproxy
does (pve-manager `PVE/HTTPServer.pm::auth_handler`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from simpeer import served
import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError
from proxmoxer.tools import Tasks

from pvectl.sim.cluster import Cluster



@pytest.fixture(scope="module")
def sim() -> Iterator[Cluster]:
    with served(nodes=2, vms=4, templates=1, time_scale=0.02) as c:
        yield c


def login(sim: Cluster, password: str | None = None) -> ProxmoxAPI:
    host, port = sim.nodes["pve1"]
    return ProxmoxAPI(host, port=port, user=sim.user, password=password or sim.password,
                      verify_ssl=str(sim.ca_path), timeout=30)


def test_password_login_reads_and_writes(sim: Cluster) -> None:
    prox = login(sim)
    assert sim.user == "root@pam"
    assert sorted(n["node"] for n in prox.nodes.get()) == ["pve1", "pve2"]
    vmid = next(v["vmid"] for v in prox.nodes("pve1").qemu.get() if not v.get("template"))
    vm = prox.nodes("pve1").qemu(vmid)
    assert vm.config.put(description="changed with a ticket") is None
    assert vm.config.get()["description"] == "changed with a ticket"
    upid = vm.snapshot.post(snapname="before_change", description="with a ticket")
    assert Tasks.decode_upid(upid)["user"] == "root@pam" and Tasks.decode_upid(upid)["type"] == "qmsnapshot"
    status = Tasks.blocking_status(prox, upid, timeout=30, polling_interval=0.05)
    assert status is not None and status["exitstatus"] == "OK", status
    assert [s["name"] for s in vm.snapshot.get()] == ["before_change", "current"]
    upid = vm.snapshot("before_change").delete()
    status = Tasks.blocking_status(prox, upid, timeout=30, polling_interval=0.05)
    assert status is not None and status["exitstatus"] == "OK", status
    # a write for another node is proxied with the cookie and the CSRF token (tickets are cluster-wide)
    other = next(v["vmid"] for v in prox.nodes("pve2").qemu.get())
    assert prox.nodes("pve2").qemu(other).config.put(description="via pve1") is None
    assert sim.backend.state.vms[other].config["description"] == "via pve1"


def test_csrf_token_is_what_makes_writes_pass(sim: Cluster) -> None:
    ticket, csrf = login(sim).get_tokens()
    host, port = sim.nodes["pve1"]
    url = f"https://{host}:{port}/api2/json/nodes/pve1/qemu/100/config"
    # `verify=` per request: a session's own `verify` loses to REQUESTS_CA_BUNDLE (requests#3829)
    tls = {"verify": str(sim.ca_path), "timeout": 30, "cookies": {"PVEAuthCookie": ticket}}
    assert requests.get(url, **tls).status_code == 200
    r = requests.put(url, data={"description": "no csrf"}, **tls)
    assert (r.status_code, r.reason, r.content) == (401, "Permission denied - invalid csrf token", b"")
    r = requests.put(url, data={"description": "with csrf"}, headers={"CSRFPreventionToken": csrf}, **tls)
    assert r.status_code == 200


def test_wrong_password(sim: Cluster) -> None:
    with pytest.raises(AuthenticationError, match="code: 401"):
        login(sim, password="not-the-password")
