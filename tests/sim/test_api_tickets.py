"""Password logins: `POST /access/ticket`, the `PVEAuthCookie` ticket, CSRF on writes, the 401 texts.

Sources: pve-access-control `src/PVE/API2/AccessControl.pm::create_ticket`, `src/PVE/AccessControl.pm`
(`$ticket_lifetime` 2 h, `$auth_graceperiod` 5 min, verify_csrf_prevention_token), pve-manager
`PVE/HTTPServer.pm::auth_handler` (no auth for /access/ticket, CSRF unless an API token), pve-http-server
`AnyEvent.pm` (ticket before API token, 3 s delay on every 401); pve-semantics §12.4, row 11.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from apiharness import FULL, FULL_SECRET, Client, auth

from pvectl.sim.backend import Backend
from pvectl.sim.routes import Api
from pvectl.schema import Schema

PASSWORD = "correct horse battery"


@pytest.fixture
def login(api: Api, backend: Backend) -> dict[str, str]:
    backend.access.add_user("root@pam", PASSWORD)
    r = Client(api, None).call("POST", "/access/ticket", {"username": "root@pam", "password": PASSWORD})
    assert r.status == 200, r.body
    return r.data


def ticket_client(api: Api, data: dict[str, str], *, csrf: bool = True) -> Client:
    headers = {"cookie": f"{'PVEAuthCookie'}={urllib.parse.quote(data['ticket'], safe='')}"}
    if csrf:
        headers["csrfpreventiontoken"] = data["CSRFPreventionToken"]
    return _HeaderClient(api, headers)


class _HeaderClient(Client):
    def __init__(self, api: Api, headers: dict[str, str]) -> None:
        super().__init__(api, None)
        self.headers = headers

    def raw(self, method: str, path: str, **kw):  # type: ignore[no-untyped-def]
        kw["headers"] = {**self.headers, **(kw.get("headers") or {})}
        return super().raw(method, path, **kw)


def test_login_answer(login: dict[str, object], backend: Backend, schema: Schema) -> None:
    assert schema.check_returns(schema.endpoint("POST", "/access/ticket"), login) == []
    assert login["username"] == "root@pam"
    assert re.fullmatch(r"PVE:root@pam:[0-9A-F]{8}::\S+", str(login["ticket"]))
    assert re.fullmatch(r"[0-9A-F]{8}:\S+", str(login["CSRFPreventionToken"]))
    cap = login["cap"]
    assert isinstance(cap, dict) and set(cap) == {"vms", "access", "storage", "nodes", "sdn", "dc", "mapping"}
    assert cap["vms"]["VM.Allocate"] == 1 and cap["storage"]["Datastore.Allocate"] == 1
    assert cap["nodes"]["Sys.PowerMgmt"] == 1 and "VM.Allocate" not in cap["nodes"]
    assert login["clustername"] == backend.state.cluster_name       # a cluster, and Sys.Audit on /


def test_realm_parameter_and_renewal(api: Api, login: dict[str, str]) -> None:
    anon = Client(api, None)
    r = anon.call("POST", "/access/ticket", {"username": "root", "realm": "pam", "password": PASSWORD})
    assert r.status == 200 and r.data["username"] == "root@pam"
    # a valid ticket is accepted as the password (renewal)
    r = anon.call("POST", "/access/ticket", {"username": "root@pam", "password": login["ticket"]})
    assert r.status == 200 and r.data["ticket"].startswith("PVE:root@pam:")
    assert anon.call("GET", "/access/ticket").status == 200           # the dummy GET needs no auth


def test_wrong_credentials(api: Api, backend: Backend, login: dict[str, str]) -> None:
    anon = Client(api, None)
    for params in ({"username": "root@pam", "password": "wrong"}, {"username": "nobody@pve", "password": PASSWORD},
                   {"username": "root@pam", "password": login["ticket"] + "x"}):
        r = anon.call("POST", "/access/ticket", params)
        # the same answer for every failure (no user enumeration), JSON body, delayed like every 401
        assert (r.status, r.reason) == (401, "authentication failure"), params
        assert json.loads(r.body) == {"data": None, "message": "authentication failure\n"}
        assert r.delay == backend.scale(3) > 0


def test_reads_with_the_cookie_writes_need_csrf(api: Api, backend: Backend, login: dict[str, str]) -> None:
    with_csrf, without = ticket_client(api, login), ticket_client(api, login, csrf=False)
    assert without.get("/version")["version"]                          # GET: no CSRF token needed
    r = without.call("PUT", "/nodes/pve1/qemu/103/config", {"name": "renamed"})
    assert (r.status, r.reason, r.body) == (401, "Permission denied - invalid csrf token", b"")
    assert r.delay > 0 and backend.state.vms[103].config["name"] != "renamed"
    r = ticket_client(api, {**login, "CSRFPreventionToken": login["CSRFPreventionToken"][:-2] + "xx"}).call(
        "PUT", "/nodes/pve1/qemu/103/config", {"name": "renamed"})
    assert r.reason == "Permission denied - invalid csrf token"
    assert with_csrf.ok("PUT", "/nodes/pve1/qemu/103/config", {"name": "renamed"}) is None
    # the ticket's user is the task user, and root@pam may use root-only options such as skiplock
    upid = with_csrf.ok("POST", "/nodes/pve1/qemu/103/status/start", {"skiplock": 1})
    assert upid.split(":")[7] == "root@pam"
    # an API token needs no CSRF token
    assert Client(api, auth(FULL, FULL_SECRET)).call("PUT", "/nodes/pve1/qemu/103/config",
                                                     {"description": "x"}).status == 200


def test_ticket_in_authorization_header_and_precedence(api: Api, login: dict[str, str]) -> None:
    assert Client(api, f"PVEAuthCookie={login['ticket']}").get("/version")["release"]
    # a ticket is looked for first; an API token only without one (AnyEvent.pm)
    bad_cookie = _HeaderClient(api, {"cookie": "PVEAuthCookie=PVE:root@pam:00000000::forged",
                                     "authorization": auth(FULL, FULL_SECRET)})
    r = bad_cookie.call("GET", "/version")
    assert (r.status, r.reason, r.body) == (401, "Authentication failed!", b"")


def test_ticket_lifetime(api: Api, backend: Backend, login: dict[str, str]) -> None:
    issued = int(login["ticket"].split(":")[2], 16)
    client = ticket_client(api, login)
    backend.access.clock = lambda: issued + 2 * 3600          # exactly 2 h old: still valid
    assert client.get("/version")
    backend.access.clock = lambda: issued + 2 * 3600 + 1
    r = client.call("GET", "/version")
    assert (r.status, r.reason) == (401, "Authentication failed!")
    # issued more than 5 minutes in the future (clock skew beyond the grace period)
    backend.access.clock = lambda: issued - 301
    assert client.call("GET", "/version").status == 401
    backend.access.clock = lambda: issued - 300
    assert client.call("GET", "/version").status == 200


def test_tampered_or_foreign_tickets(api: Api, backend: Backend, login: dict[str, str]) -> None:
    backend.access.add_user("ops@pve", "ops-password", privs={"/vms/100": ["PVEVMUser"]})
    ops = Client(api, None).call("POST", "/access/ticket", {"username": "ops@pve", "password": "ops-password"}).data
    assert "clustername" not in ops                            # no Sys.Audit on /
    assert ops["cap"]["vms"] == {p: 1 for p in sorted(("VM.Audit", "VM.Backup", "VM.Config.CDROM",
                                                       "VM.Config.Cloudinit", "VM.Console",
                                                       "VM.GuestAgent.Audit", "VM.PowerMgmt"))}
    user, stamp, sig = ops["ticket"].split(":")[1], ops["ticket"].split(":")[2], ops["ticket"].split("::")[1]
    forged = f"PVE:root@pam:{stamp}::{sig}"                    # another user's signature
    assert ticket_client(api, {**login, "ticket": forged}).call("GET", "/version").reason == "Authentication failed!"
    # a CSRF token is bound to its user
    r = ticket_client(api, {"ticket": login["ticket"], "CSRFPreventionToken": ops["CSRFPreventionToken"]}).call(
        "PUT", "/nodes/pve1/qemu/103/config", {"name": "x"})
    assert r.reason == "Permission denied - invalid csrf token"
    # ops@pve's ticket works, within its rights
    client = ticket_client(api, ops)
    assert client.get("/nodes/pve1/qemu/100/status/current")["vmid"] == 100 and user == "ops@pve"
    r = client.call("GET", "/nodes/pve1/qemu/103/config")
    assert (r.status, r.reason) == (403, "Permission check failed (/vms/103, VM.Audit)")


def test_api_token_header_is_unescaped_once(api: Api, backend: Backend) -> None:
    # Formatter.pm::extract_auth_value uri-unescapes the value once
    backend.add_token("pct@pve!t", "a%41b")
    assert Client(api, "PVEAPIToken=pct@pve!t=a%2541b").call("GET", "/version").status == 200
    assert Client(api, "PVEAPIToken=pct@pve!t=a%41b").call("GET", "/version").status == 401
