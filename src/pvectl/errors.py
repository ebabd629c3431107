"""pvectl's exception tree: the one place that maps an HTTP status and Proxmox's error text to a type.

::

    PvectlError(message, hint, retryable)                     exit_code
    ├── ConfigError            cluster-config.yaml, --cluster, unknown node          2
    ├── CredentialError        token not obtainable (pass, token_file, environment)  2
    ├── UsageError             a bad or ambiguous argument (VM name matching several) 2
    ├── TlsError               certificate verification failed or pin mismatch       5
    ├── GuardRefused(reason)   a safety rule said no, or --yes is missing            3
    ├── ApiError(status, reason, method, path, node, errors)                         1
    │   ├── AuthError          401 No ticket / Authentication failed!                5
    │   ├── PermissionDenied   403 Permission check failed (<path>, <privilege>)     1
    │   ├── NotFound           500 Configuration file '…' does not exist, no such task 1
    │   ├── AlreadyExists      500 … already exists                                  1
    │   ├── Locked             500 VM is locked (clone) / can't lock file … timeout  1 (retryable)
    │   ├── ParameterError     400 Parameter verification failed. + errors           1
    │   └── NodeUnreachable    595/596/599, connection errors, all nodes down        5 (retryable)
    │       └── DeadlineExceeded  no answer before the deadline (--timeout)           4
    └── TaskError(upid)
        ├── TaskFailed(exitstatus, log_tail)   the task ended in an error            1
        └── TaskTimeout                        still running at the deadline         4

Exit codes follow DESIGN §3. Proxmox answers 500 for "not found", "already exists", "locked" and most
other refusals; the text is the HTTP reason phrase (cut to its first line) and, since
libpve-http-server-perl 5.2.0 (PVE 8.3/8.4), also `message` in the JSON body (`spec/pve-semantics.md`
§12.3). There are no 404s for missing objects.

No secret may appear in an error: every message and hint passes through `redact()`, which removes
every string registered with `register_secret()` (credentials.py registers the token secret).
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs start-up time; annotations are strings (PEP 563)
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from .upid import Upid

from .lazyre import LazyPattern

__all__ = [
    "PvectlError", "ConfigError", "CredentialError", "TlsError", "GuardRefused",
    "ApiError", "AuthError", "PermissionDenied", "NotFound", "AlreadyExists", "Locked",
    "ParameterError", "NodeUnreachable", "DeadlineExceeded", "TaskError", "TaskFailed", "TaskTimeout",
    "from_response", "register_secret", "redact",
]

_SECRETS: set[str] = set()


def register_secret(secret: str) -> None:
    """Remember a secret so that no error message or hint can ever contain it."""
    if secret and len(secret) >= 4:
        _SECRETS.add(secret)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `<redacted>`."""
    for s in _SECRETS:
        if s in text:
            text = text.replace(s, "<redacted>")
    return text


class PvectlError(Exception):
    """Base of every error pvectl raises on purpose. `str(e)` is the one-line message."""

    exit_code: ClassVar[int] = 1
    default_hint: ClassVar[str | None] = None

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool = False) -> None:
        self.message = redact(message)
        h = hint if hint is not None else self.default_hint
        self.hint = redact(h) if h is not None else None
        self.retryable = retryable
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """The JSON error object of DESIGN §3: `{"error": {"type", "message", "hint", "upid"?, "node"?}}`."""
        err: dict[str, Any] = {"type": self.type, "message": self.message, "hint": self.hint}
        upid = getattr(self, "upid", None)
        if upid:
            err["upid"] = str(upid)
        node = getattr(self, "node", None)
        if node:
            err["node"] = node
        return {"error": err}


class ConfigError(PvectlError):
    """cluster-config.yaml is missing, unreadable or invalid; or a --cluster/--node choice is wrong.

    `file`, `line` (1-based) and `key` (dotted, e.g. `cluster.nodes[1].host`) say where, when known.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None, file: str | None = None,
                 line: int | None = None, key: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.line = line
        self.key = key


class CredentialError(PvectlError):
    """The API token could not be obtained locally (pass, token_file, environment). Nothing was sent."""

    exit_code = 2


class TlsError(PvectlError):
    """The node's certificate failed verification against tls.ca_file / the system store, or its
    SHA-256 fingerprint differs from the pin in tls.fingerprints. Never failed over silently."""

    exit_code = 5

    def __init__(self, message: str, *, hint: str | None = None, node: str | None = None,
                 pinned: str | None = None, got: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.node = node
        self.pinned = pinned
        self.got = got


class UsageError(PvectlError):
    """A command-line argument is wrong or ambiguous (e.g. a VM name that matches several VMs)."""

    exit_code = 2


class GuardRefused(PvectlError):
    """A safety rule (guards.py) refused the operation, or confirmation (`--yes`) is missing."""

    exit_code = 3

    def __init__(self, reason: str, hint: str | None = None, *, node: str | None = None) -> None:
        super().__init__(reason, hint=hint)
        self.reason = self.message
        self.node = node


# --------------------------------------------------------------------------------------------------
# API errors


class ApiError(PvectlError):
    """Proxmox answered with an error status. `message` is Proxmox's text (without trailing newline)."""

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None,
                 method: str | None = None, path: str | None = None, node: str | None = None,
                 errors: dict[str, str] | None = None, hint: str | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message, hint=hint, retryable=retryable)
        self.status = status
        self.reason = redact(reason) if reason is not None else None
        self.method = method
        self.path = path
        self.node = node
        self.errors: dict[str, str] = {k: redact(v) for k, v in (errors or {}).items()}


class AuthError(ApiError):
    """401: `No ticket` (no token sent) or `Authentication failed!` (wrong, expired or deleted token)."""

    exit_code = 5
    default_hint = ("check the API token: its id (USER@REALM!NAME) and secret in credentials.pass_path "
                    "or credentials.token_file; the token or its user may be expired, disabled or deleted "
                    "(pveum user token list USER)")


class PermissionDenied(ApiError):
    """403 `Permission check failed (<acl path>, <privilege>)`. `acl_path` and `privilege` are parsed;
    `privilege` may be `A|B` (any of). The request path stays in `path`."""

    def __init__(self, message: str, *, acl_path: str | None = None, privilege: str | None = None,
                 **kw: Any) -> None:
        if kw.get("hint") is None and acl_path and privilege:
            kw["hint"] = (f"grant {privilege} on {acl_path} to the token's user, and to the token itself "
                          f"if it has privilege separation (pveum acl modify {acl_path} --tokens ... "
                          f"--roles ...)")
        elif kw.get("hint") is None:
            kw["hint"] = "the API token lacks a privilege for this request (pveum user token permissions)"
        super().__init__(message, **kw)
        self.acl_path = acl_path
        self.privilege = privilege


class NotFound(ApiError):
    """The VM, task, storage… does not exist (Proxmox says so with a 500, or 400 `no such task`)."""

    default_hint = "check the VMID/name and node (pvectl vm list)"


class AlreadyExists(ApiError):
    """`unable to create VM 105: config file already exists`, `VM 105 already exists on node 'pve2'`."""

    default_hint = "pick another VMID (pvectl picks the next free one from vmid_ranges.vms)"


class Locked(ApiError):
    """`VM is locked (clone)` (`lock` = the config lock) or `can't lock file '…' - got timeout`
    (`timeout` True, `lock` None): another operation holds the VM. Retryable once it ends
    (`spec/pve-semantics.md` §3.2, §3.3)."""

    def __init__(self, message: str, *, lock: str | None = None, timeout: bool = False,
                 lock_file: str | None = None, **kw: Any) -> None:
        if kw.get("hint") is None:
            if lock:
                kw["hint"] = (f"a '{lock}' operation holds the VM; wait for its task to finish "
                              f"(pvectl task list), or run `qm unlock <vmid>` on the node if the lock is stale")
            else:
                kw["hint"] = "another task holds the VM's lock; retry when it has finished"
        kw.setdefault("retryable", True)
        super().__init__(message, **kw)
        self.lock = lock
        self.timeout = timeout
        self.lock_file = lock_file


class ParameterError(ApiError):
    """400 `Parameter verification failed.`; `errors` maps each parameter to Proxmox's message."""

    default_hint = "fix the named parameters (see the API schema: pvesh usage <path> -v)"


class NodeUnreachable(ApiError):
    """No answer from a node: connection refused/timed out, TLS-less hangup, or Proxmox's proxy codes
    595 (connecting to the target node failed) / 596 (request phase failed or timed out) / 599.

    `attempts` lists `(node, reason)` for every node tried. `uncertain` is True when a write may have
    reached the server before the connection failed: re-read the state before repeating it.
    """

    exit_code = 5
    default_hint = "check that the nodes are up and pveproxy runs (systemctl status pveproxy); pvectl doctor"

    def __init__(self, message: str, *, attempts: list[tuple[str, str]] | None = None,
                 uncertain: bool = False, **kw: Any) -> None:
        if uncertain and kw.get("hint") is None:
            kw["hint"] = ("the request may have reached the server before the connection failed; "
                          "check the VM/task state before repeating it")
        kw.setdefault("retryable", not uncertain)
        super().__init__(message, **kw)
        self.attempts = list(attempts or [])
        self.uncertain = uncertain


class DeadlineExceeded(NodeUnreachable):
    """The deadline (`--timeout`, `timeout=`) passed before a node answered. Nothing more is sent;
    `uncertain` says whether the last request (a write) may have been applied."""

    exit_code = 4

    def __init__(self, message: str, **kw: Any) -> None:
        if kw.get("hint") is None:
            kw["hint"] = ("the request may have been applied: check the state before repeating it"
                          if kw.get("uncertain") else "nothing was changed by it; retry with a longer --timeout")
        kw.setdefault("retryable", True)
        super().__init__(message, **kw)


# --------------------------------------------------------------------------------------------------
# Task errors


class TaskError(PvectlError):
    """Base of errors about a Proxmox task (a UPID)."""

    def __init__(self, message: str, *, upid: str | Upid, node: str | None = None, hint: str | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message, hint=hint, retryable=retryable)
        self.upid = upid
        self.node = node if node is not None else getattr(upid, "node", None)


class TaskFailed(TaskError):
    """The task stopped with an exit status other than `OK` / `WARNINGS: n` (`spec/pve-semantics.md` §1.2).
    `log_tail` holds the last lines of the task log."""

    exit_code = 1

    def __init__(self, upid: str | Upid, exitstatus: str, log_tail: list[str] | tuple[str, ...] = (), *,
                 message: str | None = None, hint: str | None = None, node: str | None = None) -> None:
        super().__init__(message or f"task {upid} failed: {exitstatus}", upid=upid, node=node,
                         hint=hint if hint is not None else f"pvectl task log {upid}")
        self.exitstatus = redact(exitstatus)
        self.log_tail = [redact(x) for x in log_tail]


class TaskTimeout(TaskError):
    """The deadline passed while the task was still running; it keeps running on the node."""

    exit_code = 4

    def __init__(self, upid: str | Upid, *, message: str | None = None, hint: str | None = None,
                 node: str | None = None) -> None:
        super().__init__(message or f"task {upid} still running at the deadline", upid=upid, node=node,
                         hint=hint if hint is not None else f"resume with: pvectl task wait {upid}",
                         retryable=True)


# --------------------------------------------------------------------------------------------------
# Mapping an HTTP error response to a type

# pve-access-control RPCEnvironment.pm::check/check_any -> raise_perm_exc("$path, $privs")
_PERM_RE = LazyPattern(r"^Permission check failed \((?P<path>/[^,()]*), (?P<priv>[A-Za-z0-9_.|]+)\)")
# pve-guest-common AbstractConfig.pm::check_lock: "<VM|CT> is locked (<lock>)"
_LOCKED_RE = LazyPattern(r"\b(?:VM|CT) is locked \((?P<lock>[^)]*)\)")
# pve-common Tools.pm::lock_file_full: "can't lock file '<file>' - got timeout"
_LOCKFILE_RE = LazyPattern(r"can't lock file '(?P<file>[^']*)' - (?P<why>.*)$")
_NOT_FOUND_RE = LazyPattern(
    r"(?:^Configuration file '[^']*' does not exist"          # AbstractConfig.pm::load_config
    r"|unable to find configuration file for (?:VM|CT)"      # QemuConfig/LXC find_vmstate / check_running
    r"|\bdoes not exist\b"                                   # storage/snapshot/disk/bridge/group ...
    r"|^no such (?:task|user|cluster node|VM|vm|snapshot|storage)\b)")
_EXISTS_RE = LazyPattern(r"\balready exists\b")
_NODE_PATH_RE = LazyPattern(r"^/?(?:api2/json/)?nodes/([^/?]+)")

# AnyEvent::HTTP pseudo-statuses relayed by pveproxy (spec/pve-semantics.md §12.5)
PROXY_STATUSES = frozenset({595, 596, 597, 599})


def _node_in_path(path: str | None) -> str | None:
    m = _NODE_PATH_RE.match(path or "")
    return m.group(1) if m else None


def _parse_body(body: bytes | None) -> tuple[str | None, dict[str, str]]:
    if not body:
        return None, {}
    import json  # only on the error path

    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, {}
    if not isinstance(obj, dict):
        return None, {}
    msg = obj.get("message")
    errs = obj.get("errors")
    errors = {str(k): str(v).rstrip("\n") for k, v in errs.items()} if isinstance(errs, dict) else {}
    return (msg.rstrip("\n") if isinstance(msg, str) else None), errors


def from_response(status: int, reason: str | None, body_bytes: bytes | None, method: str | None,
                  path: str | None, node: str | None) -> ApiError:
    """The typed error for one Proxmox error response.

    The text is `message` from the JSON body (PVE >= 8.3) or else the reason phrase (older servers, and
    401s whose body is empty). `node` is the node that answered.
    """
    msg, errors = _parse_body(body_bytes)
    reason = (reason or "").strip()
    text = msg or reason or f"HTTP {status}"
    kw: dict[str, Any] = dict(status=status, reason=reason, method=method, path=path, node=node,
                              errors=errors)

    if status == 401:
        return AuthError(text, **kw)
    if status == 403:
        m = _PERM_RE.match(text)
        return PermissionDenied(text, acl_path=m.group("path") if m else None,
                                privilege=m.group("priv") if m else None, **kw)
    if status in PROXY_STATUSES:
        # The receiving node could not reach the node named in the path (or its own pvedaemon).
        target = _node_in_path(path) or node
        via = f" (via {node})" if node and node != target else ""
        return NodeUnreachable(f"node {target} unreachable{via}: {status} {text}",
                               attempts=[(target or "?", f"{status} {text}")],
                               uncertain=status != 595 and (method or "GET") != "GET", **kw)
    if status == 400:
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        full = f"{text.rstrip('.')}: {detail}" if detail else text
        if errors.get("upid") == "no such task":  # pve-manager Tasks.pm::read_task_status
            return NotFound(full, **kw)
        if _EXISTS_RE.search(errors.get("vmid", "")):  # /cluster/nextid?vmid=<used>: "VM 105 already exists"
            return AlreadyExists(full, **kw)
        return ParameterError(full, **kw)

    m = _LOCKED_RE.search(text)
    if m:
        return Locked(text, lock=m.group("lock") or None, **kw)
    m = _LOCKFILE_RE.search(text)
    if m:
        return Locked(text, lock=None, timeout="timeout" in m.group("why"), lock_file=m.group("file"), **kw)
    if _EXISTS_RE.search(text):
        return AlreadyExists(text, **kw)
    if status == 500 and _NOT_FOUND_RE.search(text):
        return NotFound(text, **kw)
    return ApiError(text, **kw)
