"""The Proxmox API token: where it comes from, and keeping its secret out of sight.

Sources, first match wins:

1. the environment: `PVECTL_TOKEN_ID` + `PVECTL_TOKEN_SECRET`;
2. `credentials.token_file` (line 1 token id, last non-empty line secret; `credentials.token_id`
   replaces line 1, and then the file may hold the secret alone);
3. `credentials.pass_path`: ONE `pass show PATH` per process (line 1 token id, last non-empty line
   secret — the seed's `head -1` / `tail -1`, without decrypting twice: `spec/seed-errata.md` §4).
   `credentials.token_id`, when set, replaces line 1 here too.

A `TokenSource` is one `Cluster`'s token: `start()` runs `pass` early so that gpg decrypts while the
CLI imports the rest of itself, `token()` collects it once (threads asking together wait for the one
read), `reload()` reads it again (`Cluster.refresh_credentials`) without touching any other
Cluster's token. `prefetch(cfg)` / `load_token(cfg)` do the same with one cache
for the whole process (callers that hold no `Cluster`). The secret never goes to a child's argv
(`pass` only gets the entry path), a log line, an exception message or a repr
(`spec/seed-errata.md` §2).
"""

from __future__ import annotations

import os
import threading

from pvectl.errors import CredentialError, register_secret

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Mapping, NoReturn

    from pvectl.config import Config

__all__ = ["Token", "TokenSource", "load_token", "prefetch", "parse_token_id", "reset"]

ENV_ID = "PVECTL_TOKEN_ID"
ENV_SECRET = "PVECTL_TOKEN_SECRET"


class Token:
    """An API token. `secret` is readable but never shown by repr/str."""

    __slots__ = ("token_id", "secret", "source")

    token_id: str
    secret: str
    source: str  # "environment", "token_file /path", "pass proxmox/api-token"

    def __init__(self, token_id: str, secret: str, source: str = "") -> None:
        object.__setattr__(self, "token_id", token_id)
        object.__setattr__(self, "secret", secret)
        object.__setattr__(self, "source", source)
        register_secret(secret)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Token is frozen (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Token is frozen (cannot delete {name!r})")

    def __repr__(self) -> str:
        return f"Token(token_id={self.token_id!r}, secret=<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return (self.token_id, self.secret) == (other.token_id, other.secret)

    def __hash__(self) -> int:
        return hash((self.token_id, self.secret))

    def __reduce__(self) -> NoReturn:
        raise TypeError("Token is not picklable (it holds a secret)")

    @property
    def user(self) -> str:
        """`user@realm`."""
        return self.token_id.split("!", 1)[0]

    @property
    def name(self) -> str:
        """The token name after `!`."""
        return self.token_id.split("!", 1)[1]

    def header(self) -> str:
        """The `Authorization` header value: `PVEAPIToken=USER@REALM!NAME=SECRET`
        (pve-access-control splits it at the LAST `=`; `spec/pve-semantics.md` §12.4)."""
        return f"PVEAPIToken={self.token_id}={self.secret}"


def parse_token_id(value: str, where: str) -> str:
    """`value` stripped, if it is USER@REALM!TOKENNAME; CredentialError otherwise. The value itself is
    not echoed (it might be a misplaced secret)."""
    import re

    v = value.strip()
    # The id travels in the Authorization header, which carries Latin-1 only (RFC 9110 §5.5)
    encodable = _latin1(v)
    if encodable and re.match(r"^[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$", v):
        return v
    if not encodable:
        detail = "it has characters an HTTP header cannot carry"
    elif re.match(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", v):
        detail = "it looks like a secret (a UUID) - are the lines swapped?"
    elif not v:
        detail = "it is empty"
    elif "!" not in v:
        detail = "it has no '!TOKENNAME' (a user's password cannot be used, only an API token)"
    elif "@" not in v.split("!", 1)[0]:
        detail = "it has no '@REALM'"
    else:
        detail = "it has characters a token id cannot contain"
    raise CredentialError(f"malformed token id in {where}: expected USER@REALM!TOKENNAME "
                          f"(e.g. root@pam!pvectl); {detail}",
                          hint="line 1 is the token id, the last line the secret")


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _check_secret(secret: str, where: str) -> str:
    s = secret.strip()
    if not s:
        raise CredentialError(f"empty secret in {where}: expected the token secret on the last line",
                              hint="line 1 is the token id, the last non-empty line the secret")
    if any(c.isspace() or ord(c) < 32 or c == "=" for c in s):
        raise CredentialError(f"malformed secret in {where}: it contains whitespace, control characters "
                              f"or '=' (a Proxmox token secret is a UUID)")
    if not (s.isascii() and s.isprintable()):
        # `pveum user token add` makes UUIDs; anything else cannot be what Proxmox expects, and
        # outside Latin-1 it cannot even be put into the Authorization header
        raise CredentialError(f"malformed secret in {where}: it contains characters other than printable "
                              f"ASCII (a Proxmox token secret is a UUID)")
    return s


def _split_entry(text: str, where: str, token_id: str | None) -> Token:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if token_id is not None:
        if not lines:
            raise CredentialError(f"empty secret in {where}: the entry is empty",
                                  hint="put the token secret on the last line")
        return Token(parse_token_id(token_id, "credentials.token_id"), _check_secret(lines[-1], where),
                     where)
    if len(lines) < 2:
        raise CredentialError(
            f"empty secret in {where}: expected 2 lines (line 1 token id, last line secret), "
            f"found {len(lines)}", hint="or set credentials.token_id and keep only the secret there")
    tid = parse_token_id(lines[0], f"line 1 of {where}")
    return Token(tid, _check_secret(lines[-1], where), where)


# --------------------------------------------------------------------------------------------------
# The process-wide token of `load_token` / `prefetch` (callers that hold no `Cluster`): one
# `TokenSource` per pass entry or token file, so it is read once per process

_shared: dict[tuple[str, str | None], TokenSource] = {}
_shared_lock = threading.Lock()


def reset() -> None:
    """Forget the process-wide tokens and kill a pending `pass` (tests; long-running servers on SIGHUP)."""
    with _shared_lock:
        sources = list(_shared.values())
        _shared.clear()
    for source in sources:
        source.close()


def _shared_source(cfg: Config | None, env: Mapping[str, str]) -> TokenSource | None:
    """The process-wide source of `cfg`'s pass entry or token file (None: the environment, or none)."""
    kind = _source(cfg, env)
    if cfg is None or kind not in ("file", "pass"):
        return None
    cr = cfg.credentials
    key = (f"{kind}:{cr.token_file if kind == 'file' else cr.pass_path}", cr.token_id)
    with _shared_lock:
        source = _shared.get(key)
        if source is None:
            source = _shared[key] = TokenSource(cfg, env=env)
        return source


def _source(cfg: Config | None, env: Mapping[str, str]) -> str:
    if env.get(ENV_ID) or env.get(ENV_SECRET):
        return "env"
    cr = cfg.credentials if cfg is not None else None
    if cr is not None and cr.token_file:
        return "file"
    if cr is not None and cr.pass_path:
        return "pass"
    return "none"


def _spawn_pass(path: str) -> subprocess.Popen[bytes] | BaseException:
    import subprocess

    env = dict(os.environ)
    env.pop("PASSWORD_STORE_CLIP_TIME", None)
    try:
        # argv holds only the entry path; the decrypted entry comes back on a pipe.
        return subprocess.Popen(["pass", "show", path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except OSError as e:
        return e


def _stop(proc: subprocess.Popen[bytes] | BaseException | None) -> None:
    if proc is not None and not isinstance(proc, BaseException):
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):     # (not read: a child of `pass` may still hold them)
            if pipe is not None:
                pipe.close()


def prefetch(cfg: Config | None, *, env: Mapping[str, str] | None = None) -> None:
    """Start `pass show` now (only when pass is the token's source) and return at once."""
    source = _shared_source(cfg, os.environ if env is None else env)
    if source is not None:
        source.start()


def _finish_pass(proc: subprocess.Popen[bytes] | BaseException, path: str, token_id: str | None,
                 timeout: float) -> Token:
    """The token from a `pass show PATH` started earlier (or the error that kept it from starting)."""
    where = f"pass entry '{path}'"
    if isinstance(proc, BaseException):
        if isinstance(proc, FileNotFoundError):
            raise CredentialError("`pass` is not installed (needed for credentials.pass_path)",
                                  hint="install pass or set credentials.token_file")
        raise CredentialError(f"cannot run `pass show {path}`: {proc}",
                              hint="install pass or set credentials.token_file")
    import subprocess

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise CredentialError(f"`pass show {path}` did not finish within {timeout:g} s "
                              f"(waiting for a gpg passphrase?)",
                              hint="unlock the gpg key (gpg-agent), or set credentials.token_file") from None
    errtext = err.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        if "is not in the password store" in errtext:
            raise CredentialError(f"{where} not found: {errtext.splitlines()[-1][:200]}",
                                  hint=f"create it with `pass insert -m {path}` (line 1 token id, last "
                                       f"line secret) or fix credentials.pass_path")
        last = errtext.splitlines()[-1][:200] if errtext else "no error output"
        raise CredentialError(f"`pass show {path}` failed (exit {proc.returncode}): {last}",
                              hint="gpg could not decrypt the entry: check `gpg --list-secret-keys`, "
                                   "gpg-agent and pinentry (GPG_TTY)")
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"{where} is not UTF-8 text") from None
    return _split_entry(text, where, token_id)


def load_token(cfg: Config | None, *, env: Mapping[str, str] | None = None,
               timeout: float = 60.0) -> Token:
    """The API token, from the environment, `credentials.token_file` or `credentials.pass_path`.

    Raises CredentialError (exit 2) with a message that never contains the secret.
    """
    env = os.environ if env is None else env
    source = _shared_source(cfg, env)
    if source is not None:
        return source.token(timeout)
    if _source(cfg, env) == "env":
        return _from_env(env)
    _no_source()


def _from_env(env: Mapping[str, str]) -> Token:
    tid, sec = env.get(ENV_ID), env.get(ENV_SECRET)
    if not tid:
        raise CredentialError(f"{ENV_SECRET} is set but {ENV_ID} is not",
                              hint=f"set {ENV_ID}=USER@REALM!TOKENNAME")
    if not sec:
        raise CredentialError(f"{ENV_ID} is set but {ENV_SECRET} is not",
                              hint=f"set {ENV_SECRET} (or unset {ENV_ID} to use the config)")
    return Token(parse_token_id(tid, f"${ENV_ID}"), _check_secret(sec, f"${ENV_SECRET}"), "environment")


def _read_file(path: str, token_id: str | None) -> Token:
    where = f"token_file {path}"
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise CredentialError(f"cannot read credentials.token_file {path}: {e.strerror}",
                              hint="fix credentials.token_file (line 1 token id, last line secret)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"{where} is not UTF-8 text") from None
    return _split_entry(text, where, token_id)


def _no_source() -> NoReturn:
    raise CredentialError("no API token configured",
                          hint=f"set credentials.pass_path or credentials.token_file in the config, "
                               f"or {ENV_ID} and {ENV_SECRET}")


class TokenSource:
    """One `Cluster`'s API token, from the same sources as `load_token`: read once until `reload()`,
    whatever the number of threads asking, and never shared with another `TokenSource`
    (refreshing one Cluster's token re-reads no other's). Calling it gives the Authorization header
    value, as `Transport(auth=...)` expects."""

    __slots__ = ("config", "_env", "_lock", "_pending", "_token")

    def __init__(self, config: Config | None, *, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._env = env
        self._lock = threading.Lock()
        self._pending: subprocess.Popen[bytes] | BaseException | None = None
        self._token: Token | None = None

    def __repr__(self) -> str:
        return f"TokenSource({self._kind()})"

    def _kind(self) -> str:
        return _source(self.config, os.environ if self._env is None else self._env)

    def start(self) -> None:
        """Start `pass show` now when pass is the source (gpg decrypts while the caller goes on)."""
        with self._lock:
            if self._token is None and self._pending is None and self._kind() == "pass":
                assert self.config is not None and self.config.credentials.pass_path is not None
                self._pending = _spawn_pass(self.config.credentials.pass_path)

    def token(self, timeout: float = 60.0) -> Token:
        """The token, read on the first call."""
        with self._lock:
            if self._token is None:
                self._token = self._read(timeout)
            return self._token

    def __call__(self) -> str:
        return self.token().header()

    def reload(self, timeout: float = 60.0) -> Token:
        """Read the source again now (a rotated token). A token that cannot be read raises, and the
        one read before stays."""
        with self._lock:
            self._token = self._read(timeout)
            return self._token

    def close(self) -> None:
        """Stop a `pass show` started early and never collected (the Cluster made no request)."""
        with self._lock:
            pending, self._pending = self._pending, None
        _stop(pending)

    def _read(self, timeout: float) -> Token:
        kind = self._kind()
        cr = self.config.credentials if self.config is not None else None
        if kind == "env":
            return _from_env(os.environ if self._env is None else self._env)
        if kind == "file":
            assert cr is not None and cr.token_file is not None
            return _read_file(cr.token_file, cr.token_id)
        if kind == "pass":
            assert cr is not None and cr.pass_path is not None
            pending, self._pending = self._pending, None
            return _finish_pass(pending if pending is not None else _spawn_pass(cr.pass_path), cr.pass_path,
                                cr.token_id, timeout)
        _no_source()
