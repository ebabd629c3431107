"""Access readers: users, tokens, groups, roles, realms, ACLs, TFA; pools.

Users are the owners of the simulated API tokens plus `root@pam`; no groups, no pools, no TFA entries:
the answers of a fresh cluster whose only additions are API tokens.
"""

from __future__ import annotations

from typing import Any

from ..backend import ApiFail
from ..models import ROLES
from .base import Ctx, reader

_BUILTIN_ROLES = ROLES  # the built-in roles the simulator knows (pve-access-control AccessControl.pm)


def _users(ctx: Ctx) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {"root@pam": []}
    for tokenid in ctx.backend.state.tokens:
        user, _, name = tokenid.partition("!")
        users.setdefault(user, []).append(name)
    return users


def _user_entry(userid: str, tokens: list[str], full: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"userid": userid, "enable": 1, "expire": 0, "realm-type": userid.split("@")[1]}
    if userid == "root@pam":
        entry["email"] = "root@lab.example.com"
    if full:
        entry["tokens"] = [{"tokenid": t, "expire": 0, "privsep": 0} for t in tokens]
        entry["groups"] = ""
    return entry


@reader("/access/users")
def users(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-access-control API2/User.pm::index
    full = bool(ctx.params.get("full"))
    return [_user_entry(u, t, full) for u, t in sorted(_users(ctx).items())]


def _user(ctx: Ctx) -> tuple[str, list[str]]:
    userid = str(ctx.params["userid"])
    tokens = _users(ctx).get(userid)
    if tokens is None:
        raise ApiFail(f"no such user ('{userid}')")  # API2/User.pm::read_user via verify_username
    return userid, tokens


@reader("/access/users/{userid}")
def user(ctx: Ctx) -> dict[str, Any]:
    userid, tokens = _user(ctx)
    entry = _user_entry(userid, tokens, False)
    entry.pop("userid")
    entry.pop("realm-type")
    entry["tokens"] = {t: {"expire": 0, "privsep": 0} for t in tokens}
    entry["groups"] = []
    return entry


@reader("/access/users/{userid}/token")
def user_tokens(ctx: Ctx) -> list[dict[str, Any]]:
    _, tokens = _user(ctx)
    return [{"tokenid": t, "expire": 0, "privsep": 0} for t in tokens]


@reader("/access/users/{userid}/token/{tokenid}")
def user_token(ctx: Ctx) -> dict[str, Any]:
    userid, tokens = _user(ctx)
    if ctx.params["tokenid"] not in tokens:
        raise ApiFail(f"no such token '{ctx.params['tokenid']}' for user '{userid}'")
    return {"expire": 0, "privsep": 0}


@reader("/access/users/{userid}/tfa")
def user_tfa(ctx: Ctx) -> dict[str, Any]:
    _user(ctx)
    return {"types": []} if not ctx.params.get("multiple") else {"types": []}


@reader("/access/ticket")
def ticket_dummy(ctx: Ctx) -> None:
    # pve-access-control API2/AccessControl.pm get_ticket: "Dummy. Useful for formatters which want to
    # provide a login page." - returns null
    return None


@reader("/access/tfa")
def tfa(ctx: Ctx) -> list[dict[str, Any]]:
    return []


@reader("/access/tfa/{userid}")
def tfa_user(ctx: Ctx) -> list[dict[str, Any]]:
    _user(ctx)
    return []


@reader("/access/domains")
def domains(ctx: Ctx) -> list[dict[str, Any]]:
    # the two built-in realms
    return [{"realm": "pam", "type": "pam", "comment": "Linux PAM standard authentication"},
            {"realm": "pve", "type": "pve", "comment": "Proxmox VE authentication server", "default": 1}]


@reader("/access/domains/{realm}")
def domain(ctx: Ctx) -> dict[str, Any]:
    for d in domains(ctx):
        if d["realm"] == ctx.params["realm"]:
            return {k: v for k, v in d.items() if k != "realm"} | {"digest": "0" * 40}
    raise ApiFail(f"domain '{ctx.params['realm']}' does not exist")


@reader("/access/roles")
def roles(ctx: Ctx) -> list[dict[str, Any]]:
    return [{"roleid": r, "privs": ",".join(sorted(p)), "special": 1} for r, p in sorted(_BUILTIN_ROLES.items())]


@reader("/access/roles/{roleid}")
def role(ctx: Ctx) -> dict[str, Any]:
    privs = _BUILTIN_ROLES.get(str(ctx.params["roleid"]))
    if privs is None:
        raise ApiFail(f"role '{ctx.params['roleid']}' does not exist")
    return {p: 1 for p in privs}


@reader("/access/acl")
def acl(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-access-control API2/ACL.pm::read_acl: token ACLs as privilege sets; the simulator stores
    # expanded privileges, so an entry names the built-in role that matches them, else none is listed
    out = []
    for tokenid, token in sorted(ctx.backend.state.tokens.items()):
        for path, privs in sorted(token.acl.items()):
            role = next((r for r, p in _BUILTIN_ROLES.items() if sorted(p) == sorted(privs)), None)
            if role:
                out.append({"path": path, "type": "token", "ugid": tokenid, "roleid": role, "propagate": 1})
    return out


@reader("/access/tfa/{userid}/{id}")
def tfa_entry(ctx: Ctx) -> dict[str, Any]:
    _user(ctx)
    # proxmox-tfa via PVE::RS::TFA: no entry with that id
    raise ApiFail("no such tfa entry", 404)
