"""The single path every change to a cluster takes: send it (and audit it), or, with `--dry-run`,
print it as the curl command the seed would use and send nothing.

Dry-run curl lines are always correctly encoded (`--data-urlencode` for every value: the seed's
`-d "a=b=c"` is mangled by Proxmox's form decoder, spec/seed-errata.md §1), verify TLS with the
configured CA, and never contain the secret: the Authorization header reads it at run time, from
the same source pvectl uses (`$(pass show PATH)`, the token file, or the environment), the same way
pvectl reads it. Secret parameters (`cipassword`, ...) are not printed either: the line takes them
from an environment variable, and the summary line hides them.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from . import audit

if TYPE_CHECKING:
    from .config import Config
    from .http import Transport


@dataclass(frozen=True, slots=True)
class Write:
    method: str                   # POST | PUT | DELETE
    path: str                     # relative to /api2/json
    params: dict[str, Any]
    node: str                     # the node to send it to (the VM's node)
    summary: str                  # one line for humans: "start VM 105 on pve2"

    def __repr__(self) -> str:    # (a repr may end up in a traceback: no secret parameter in it)
        return (f"Write(method={self.method!r}, path={self.path!r}, params={audit.clean_params(self.params)!r}, "
                f"node={self.node!r}, summary={hide_secrets(self.summary, self.params)!r})")

    def register_secrets(self) -> None:
        """Make every error message hide the values of secret parameters (errors.redact)."""
        from .errors import register_secret

        for key, value in self.params.items():
            if key in audit.HIDDEN_KEYS and isinstance(value, str):
                register_secret(value)


def hide_secrets(text: str, params: dict[str, Any]) -> str:
    """`text` (a summary like "set cipassword=x on VM 105") without the values of secret parameters."""
    from .errors import redact

    for key, value in params.items():
        if key in audit.HIDDEN_KEYS and value not in (None, ""):
            text = text.replace(f"{key}={value}", f"{key}=<hidden>")
    return redact(text)


@dataclass(frozen=True, slots=True)
class PlannedWrite:
    """A write a dry run would have sent: what, where, and the curl line that sends it by hand
    (secret parameters hidden, the token read at run time)."""

    method: str
    path: str
    params: dict[str, Any]
    node: str
    summary: str
    curl: str

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "params": audit.clean_params(self.params),
                "node": self.node, "summary": self.summary, "curl": self.curl}


@dataclass
class Writer:
    """Sends the writes of ONE operation (Session.writer() makes one per call), or with `dry_run`
    records them as `PlannedWrite`s (and prints them to `out`, if given) and sends nothing."""

    config: Config
    transport: Transport
    command: str                  # the command line or call, for the audit log
    dry_run: bool = False
    audit: bool | str = True      # False: nothing recorded; a str: the audit file to use
    via: str = "library"
    out: TextIO | None = None
    planned: list[Write] = field(default_factory=list)

    def planned_writes(self) -> list[PlannedWrite]:
        return [PlannedWrite(w.method, w.path, dict(w.params), w.node, hide_secrets(w.summary, w.params),
                             curl_line(self.config, w)) for w in self.planned]

    def send(self, write: Write) -> Any:
        """Send one write; returns its data (a UPID for async calls, None for sync ones).
        In dry-run mode prints the curl line and returns None."""
        write.register_secrets()
        self.planned.append(write)
        if self.dry_run:
            if self.out is not None:
                self.out.write(f"# {hide_secrets(write.summary, write.params)}\n{curl_line(self.config, write)}\n")
            return None
        try:
            data = self.transport.request(write.method, write.path, write.params, node=write.node)
        except Exception as exc:
            self._audit("write", write, result=f"error: {exc}")
            raise
        except BaseException as exc:     # Ctrl-C (or exit) while the write was in flight
            self._audit("write", write, result=f"outcome unknown: interrupted ({type(exc).__name__}) after the "
                                               f"request was started; check the state before repeating it")
            raise
        upid = data if isinstance(data, str) and data.startswith("UPID:") else None
        self._audit("write", write, upid=upid, result="task started" if upid else "ok")
        return data

    def task_done(self, upid: str, result: str) -> None:
        """Record how a task this command started ended (OK, WARNINGS: n, or the error)."""
        if not self.dry_run:
            self._audit("task", None, upid=upid, result=result)

    def _audit(self, event: str, write: Write | None, *, upid: str | None = None, result: str) -> None:
        if self.audit is False:
            return
        cfg = self.config
        token_id = _token_id(cfg, self.transport)
        try:
            audit.record(cluster=cfg.name, token_id=token_id, command=self.command, event=event,
                         method=write.method if write else None, path=write.path if write else None,
                         params=write.params if write else None, node=write.node if write else None,
                         upid=upid, result=result, via=self.via,
                         log_path=self.audit if isinstance(self.audit, str) else None)
        except OSError as exc:       # an unwritable audit log must not turn a done write into a failure
            sys.stderr.write(f"pvectl: warning: could not append to the audit log: {exc}\n")


def _token_id(config: Config, transport: Transport) -> str:
    try:
        from .credentials import TokenSource, load_token

        # the token the requests carry: the Cluster's own (read once), else the process-wide one
        source = getattr(transport, "auth", None)
        return (source.token() if isinstance(source, TokenSource) else load_token(config)).token_id
    except Exception:  # noqa: BLE001 - the audit record must not fail on this
        return "?"


# pvectl reads a token file or pass entry as lines split at LF, CR, VT and FF (str.splitlines), each
# stripped, blank ones skipped: the token id is the first, the secret the last (credentials.py).
# `head -1` / `tail -1` would keep a CRLF file's CR or take a trailing blank line.
_AS_LINES = r"tr '\r\v\f' '\n\n\n'"
_FIRST_LINE = "awk 'NF {print $1; exit}'"
_LAST_LINE = "awk 'NF {s = $1} END {print s}'"


def secret_expression(config: Config) -> tuple[str, str]:
    """Shell expressions for the token id and secret, read at run time from pvectl's own source, the
    way pvectl reads it."""
    import os

    creds = config.credentials
    if os.environ.get("PVECTL_TOKEN_ID") and os.environ.get("PVECTL_TOKEN_SECRET"):
        return "$PVECTL_TOKEN_ID", "$PVECTL_TOKEN_SECRET"
    if creds.token_file:
        f = shlex.quote(creds.token_file)
        token_id = creds.token_id or f"$({_AS_LINES} < {f} | {_FIRST_LINE})"
        return token_id, f"$({_AS_LINES} < {f} | {_LAST_LINE})"
    path = shlex.quote(creds.pass_path or "proxmox/api-token")
    token_id = creds.token_id or f"$(pass show {path} | {_AS_LINES} | {_FIRST_LINE})"
    return token_id, f"$(pass show {path} | {_AS_LINES} | {_LAST_LINE})"


def secret_param_word(key: str) -> str:
    """The `--data-urlencode` word for a secret parameter: its value comes from the environment at run
    time (`PVECTL_CIPASSWORD` for `cipassword`), and the line stops if that is not set."""
    var = "PVECTL_" + key.upper()
    return f'"{key}=${{{var}:?set {var} to the {key}}}"'


def curl_line(config: Config, write: Write) -> str:
    from urllib.parse import quote

    cfg = config
    node = cfg.node(write.node) if cfg.has_node(write.node) else cfg.nodes[0]
    token_id, secret = secret_expression(config)
    tls = cfg.tls
    if tls and tls.insecure and not tls.ca_file:
        tls_opt = "-k"
    elif tls and tls.ca_file:
        tls_opt = f"--cacert {shlex.quote(tls.ca_file)}"
    else:
        tls_opt = ""
    url = f"https://{node.address}/api2/json{quote(write.path, safe='/:@!')}"  # (IPv6 in brackets)
    parts = ["curl -s", tls_opt, f"-X {write.method}",
             f'-H "Authorization: PVEAPIToken={token_id}={secret}"']
    if write.method in ("POST", "PUT"):
        # the same pairs the transport sends (http.encode_params): None dropped, lists repeat the key
        for key, value in write.params.items():
            if key in audit.HIDDEN_KEYS and value is not None:
                parts.append("--data-urlencode " + secret_param_word(key))
                continue
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if v is None:
                    continue
                v = "1" if v is True else "0" if v is False else str(v)
                parts.append("--data-urlencode " + shlex.quote(f"{key}={v}"))
        parts.append(shlex.quote(url))
    else:
        if write.params:
            from .http import encode_params

            url += "?" + encode_params(write.params)
        parts.append(shlex.quote(url))
    return " ".join(p for p in parts if p)
