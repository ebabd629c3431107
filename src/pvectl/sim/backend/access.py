"""Password logins: `POST /access/ticket`, the `PVEAuthCookie` ticket and the CSRF prevention token.

How a request is authenticated, as pveproxy does it (pve-http-server `AnyEvent.pm`
`authenticate_and_handle_request`, pve-manager `PVE/HTTPServer.pm::auth_handler`,
pve-access-control `PVE/AccessControl.pm`, `PVE/API2/AccessControl.pm::create_ticket`):

- the ticket comes from the `PVEAuthCookie` cookie, else from an `Authorization: PVEAuthCookie=...`
  header; only without a ticket is an `Authorization: PVEAPIToken=...` header looked at;
- `GET`/`POST /access/ticket` and `GET /access/domains` need no authentication;
- no ticket and no token: 401 `No ticket`; a bad or expired ticket or token: 401 `Authentication failed!`;
- with a ticket (not with a token) every non-GET request needs a valid `CSRFPreventionToken` header,
  else 401 `Permission denied - invalid csrf token`;
- every 401 waits 3 s before it is sent (scaled by the simulator's time scale), with an empty body;
- tickets are valid from 5 minutes in the future (clock skew) to 2 hours old, and a valid ticket is
  accepted as the password of a new login (renewal).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import wire
from ..models import ALL_PRIVS, Token
from .common import expand_acl

if TYPE_CHECKING:
    from .core import BackendCore as Backend

TICKET_LIFETIME = 2 * 3600          # AccessControl.pm `$ticket_lifetime`
AUTH_GRACE = 5 * 60                 # AccessControl.pm `$auth_graceperiod`
COOKIE = "PVEAuthCookie"
NO_AUTH = {("GET", "/access/ticket"), ("POST", "/access/ticket"), ("GET", "/access/domains")}
_TICKET_RE = re.compile(r"^PVE:([^:\s]+):([A-Z0-9]{8})::(\S+)$")
_CSRF_RE = re.compile(r"^([A-Z0-9]{8}):(\S+)$")
# RPCEnvironment.pm::compute_api_permission: which privileges each capability group shows; the
# group of a path is its first component ('dc' for `/`), checked for these paths and every ACL path
_CAP_GROUPS: dict[str, re.Pattern[str]] = {
    "vms": re.compile(r"VM\.|Permissions\.Modify"),
    "access": re.compile(r"(User|Group)\.|Permissions\.Modify"),
    "storage": re.compile(r"Datastore\.|Permissions\.Modify"),
    "nodes": re.compile(r"Sys\.|Permissions\.Modify"),
    "sdn": re.compile(r"SDN\.|Permissions\.Modify"),
    "dc": re.compile(r"Sys\.Audit|Sys\.Modify|SDN\."),
    "mapping": re.compile(r"Mapping\.|Permissions.Modify"),
}
_CAP_PATHS = ("/", "/nodes", "/access/groups", "/vms", "/storage", "/sdn", "/mapping")


def extract_auth_value(header: str | None, key: str) -> str | None:
    """Formatter.pm::extract_auth_value: `<key>=<value>` or `<key> <value>` up to `;`, URI-unescaped."""
    if not header:
        return None
    m = re.search(r"(?:^|\s)" + re.escape(key) + r"(?:=| )([^;]*)", header)
    if not m or not m.group(1):
        return None
    import urllib.parse

    return urllib.parse.unquote(m.group(1))


def _unauthorized(reason: str, delay: float) -> wire.Response:
    # no JSON body for /api2/json 401s: there is no login formatter for json (pve-semantics row 11)
    return wire.Response(401, reason, b"", [], delay=delay)


class LoginFailed(Exception):
    pass


class Access:
    """Users with passwords, and the tickets and CSRF tokens issued for them. One per cluster: the
    signing keys live in /etc/pve (pmxcfs), so every node accepts every node's tickets."""

    def __init__(self, backend: Backend, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.clock = clock
        self.users: dict[str, Token] = {}      # userid -> identity; `secret` holds the password
        self._ticket_key = secrets.token_bytes(32)
        self._csrf_key = secrets.token_bytes(32)

    def add_user(self, userid: str, password: str, *, privs: dict[str, list[str]] | None = None) -> None:
        """privs: ACL path -> privileges or role names; None: root@pam's all-powerful identity
        (Administrator on `/` for any other user)."""
        acl = expand_acl(privs) if privs is not None or userid != "root@pam" else {"/": list(ALL_PRIVS)}
        with self.backend.mu:
            self.users[userid] = Token(userid, password, acl)

    # ------------------------------------------------------------------ tickets and CSRF tokens
    def _sig(self, key: bytes, data: str) -> str:
        return base64.b64encode(hmac.new(key, data.encode(), hashlib.sha256).digest()).decode().rstrip("=")

    def assemble_ticket(self, userid: str, at: float | None = None) -> str:
        # PVE::Ticket::assemble_rsa_ticket: `PVE:<user>:<hex time>::<signature>`
        plain = f"PVE:{userid}:{int(self.clock() if at is None else at):08X}"
        return f"{plain}::{self._sig(self._ticket_key, plain)}"

    def _fresh(self, hex_time: str) -> bool:
        age = self.clock() - int(hex_time, 16)
        return -AUTH_GRACE <= age <= TICKET_LIFETIME

    def verify_ticket(self, ticket: str) -> Token | None:
        m = _TICKET_RE.match(ticket)
        if not m:
            return None
        userid, hex_time, sig = m.groups()
        plain = f"PVE:{userid}:{hex_time}"
        if not hmac.compare_digest(sig, self._sig(self._ticket_key, plain)) or not self._fresh(hex_time):
            return None
        return self.users.get(userid)       # check_user_enabled: the user must (still) exist

    def csrf_token(self, userid: str) -> str:
        # PVE::Ticket::assemble_csrf_prevention_token: `<hex time>:<hmac_sha256_base64("time:user")>`
        stamp = f"{int(self.clock()):08X}"
        return f"{stamp}:{self._sig(self._csrf_key, f'{stamp}:{userid}')}"

    def verify_csrf(self, userid: str, token: str | None) -> bool:
        m = _CSRF_RE.match(token or "")
        if not m:
            return False
        stamp, sig = m.groups()
        return hmac.compare_digest(sig, self._sig(self._csrf_key, f"{stamp}:{userid}")) and self._fresh(stamp)

    # ------------------------------------------------------------------ requests
    def authenticate(self, headers: dict[str, str], method: str, rel: str) -> Token | None | wire.Response:
        """The caller's identity, None for the endpoints that need none, or the 401 answer."""
        delay = self.backend.scale(3)
        authorization = headers.get("authorization")
        ticket = extract_auth_value(headers.get("cookie"), COOKIE) or extract_auth_value(authorization, COOKIE)
        api_token = None if ticket else extract_auth_value(authorization, "PVEAPIToken")
        if (method, rel) in NO_AUTH:
            return None
        if api_token:
            # AccessControl.pm::verify_token on the header as sent (unescaped once, split at the last '=')
            token = self.backend.authenticate(authorization)
            return token if isinstance(token, Token) else _unauthorized("Authentication failed!", delay)
        if not ticket:
            return _unauthorized("No ticket", delay)
        user = self.verify_ticket(ticket)
        if user is None:
            return _unauthorized("Authentication failed!", delay)
        if method != "GET" and not self.verify_csrf(user.tokenid, headers.get("csrfpreventiontoken")):
            return _unauthorized("Permission denied - invalid csrf token", delay)
        return user

    def login(self, params: dict[str, Any]) -> dict[str, Any]:
        """API2/AccessControl.pm::create_ticket; any failure is the same `authentication failure`."""
        userid = str(params.get("username", ""))
        if params.get("realm"):
            userid = f"{userid}@{params['realm']}"
        password = str(params.get("password", ""))
        user = self.users.get(userid)
        if user is None:
            raise LoginFailed(userid)
        renewing = self.verify_ticket(password)
        # a valid ticket works as the password (renewal); root@pam may create tickets for others
        if not (renewing is not None and renewing.tokenid in ("root@pam", userid)):
            if not hmac.compare_digest(password.encode(), user.secret.encode()):
                raise LoginFailed(userid)
        out: dict[str, Any] = {"username": userid, "ticket": self.assemble_ticket(userid),
                               "CSRFPreventionToken": self.csrf_token(userid), "cap": self.capabilities(user)}
        b = self.backend
        if len(b.state.nodes) > 1 and b.has(user, "/", "Sys.Audit"):
            out["clustername"] = b.state.cluster_name
        return out

    def capabilities(self, user: Token) -> dict[str, dict[str, int]]:
        b = self.backend
        cap: dict[str, dict[str, int]] = {group: {} for group in _CAP_GROUPS}
        for path in dict.fromkeys([*_CAP_PATHS, *user.acl]):
            group = path.split("/")[1] if path != "/" else "dc"
            pattern = _CAP_GROUPS.get(group)
            if pattern is None:
                continue
            cap[group].update({p: 1 for p in b.privileges(user, path) if pattern.match(p)})
        return {group: dict(sorted(privs.items())) for group, privs in cap.items()}
