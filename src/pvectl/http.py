"""Transport: HTTPS to the Proxmox API on `ssl` + a minimal HTTP/1.1 connection (DESIGN §3b, §4).

- One keep-alive connection per node (a small idle pool when threads share the Transport).
- Connect and read timeouts are always set.
- TLS per node: pinned SHA-256 fingerprint (`tls.fingerprints`; ssl-level verification off, then the
  peer certificate's digest is compared), else `tls.ca_file` with host name checking against the node's
  `host`, else `tls.insecure: true` (warned about on every run), else the system CA store.
- Failover: nodes are tried in config order (a request for `node=` goes there first; any node proxies,
  `spec/pve-semantics.md` §12.5). A node that cannot be connected to is skipped for the rest of the
  process. TLS failures are never failed over: they raise TlsError at once.
- Retries: only GETs, only on transport errors and the proxy codes 595/596/599, with a short backoff.
  Proxmox answers 500 for ordinary refusals ("does not exist", "locked"), so 500 is never retried.
  A write is sent at most once: if the connection fails after the request may have reached the server,
  NodeUnreachable(uncertain=True) is raised and the caller re-reads state.
- Bodies: POST/PUT parameters are sent form-encoded as `urllib.parse.urlencode` does, which escapes `=`,
  `+`, `&` and `%` inside values. Proxmox's form decoder cuts a value at a raw `=` and turns `+` into a
  space (`spec/seed-errata.md` §1). Form encoding was chosen over JSON because every Proxmox version
  accepts it and Proxmox's own JSON schema checks then see the same strings the CLI tools send.
  Booleans become `1`/`0`, None values are left out.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time

from pvectl import httpconn
from pvectl.errors import NodeUnreachable, PvectlError, TlsError, from_response, redact

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping, Sequence

    from pvectl.config import Config, Node, Tls

__all__ = ["Transport", "Result", "encode_params", "RETRY_STATUSES"]

API_PREFIX = "/api2/json"
RETRY_STATUSES = frozenset({595, 596, 599})  # AnyEvent::HTTP pseudo-statuses relayed by pveproxy
USER_AGENT = "pvectl/0.1"


class Result:
    """A response's `data`, plus `total` when Proxmox sent one (task log, task list), and which node
    answered."""

    __slots__ = ("data", "total", "node", "status")

    def __init__(self, data: Any, total: int | None, node: str, status: int) -> None:
        self.data = data
        self.total = total
        self.node = node
        self.status = status

    def __repr__(self) -> str:
        return f"Result(data={self.data!r}, total={self.total!r}, node={self.node!r}, status={self.status})"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


# Percent-encoding as urllib.parse.quote / quote_plus do it (RFC 3986 unreserved characters stay),
# written out here because importing urllib.parse costs ~4 ms of every command's start.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_PATH_SAFE = _UNRESERVED | frozenset(b"/:@!$&'()*+,;=%")


def _quote(text: str, safe: frozenset[int], *, plus: bool = False) -> str:
    out = []
    for b in text.encode("utf-8"):
        if b in safe:
            out.append(chr(b))
        elif plus and b == 0x20:
            out.append("+")
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def quote_path(path: str) -> str:
    return _quote(path, _PATH_SAFE)


def encode_params(params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> str:
    """`k=v&…`, every key and value percent-encoded (`ipconfig0=ip=dhcp` -> `ipconfig0=ip%3Ddhcp`,
    `size=+10G` -> `size=%2B10G`). Lists repeat the key; None values are dropped."""
    if not params:
        return ""
    items = params.items() if hasattr(params, "items") else params
    pairs: list[tuple[str, str]] = []
    for k, v in items:  # type: ignore[union-attr]
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            pairs.extend((k, _value(x)) for x in v)
        else:
            pairs.append((k, _value(v)))
    return "&".join(f"{_quote(k, _UNRESERVED, plus=True)}={_quote(v, _UNRESERVED, plus=True)}" for k, v in pairs)


class _ConnectFailed(Exception):
    """Nothing was sent: safe to try another node with any method."""


class _SendFailed(Exception):
    """The request may have reached the server."""


def _reason(e: BaseException) -> str:
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.gaierror):
        return f"name resolution failed ({e.strerror})"
    if isinstance(e, httpconn.RemoteDisconnected):
        return "connection closed by the server"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower() if e.strerror[:1].isupper() and e.strerror[1:2].islower() else e.strerror
    return str(e) or type(e).__name__


def _fp(der: bytes) -> str:
    import hashlib

    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, 64, 2))


def _warn_stderr(msg: str) -> None:
    sys.stderr.write(f"pvectl: warning: {msg}\n")


class Transport:
    """Talks to one Proxmox cluster. Thread-safe; connections are reused per node."""

    def __init__(self, nodes: Sequence[Node], *, tls: Tls | None = None,
                 auth: Callable[[], str] | None = None, connect_timeout: float = 3.0,
                 read_timeout: float = 30.0, retries: int = 2, backoff: float = 0.2,
                 log: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None,
                 user_agent: str = USER_AGENT) -> None:
        """`auth` returns the Authorization header value (`Token.header`); it is called once, at the
        first request. `log` receives debug lines (never headers or bodies). `warn` receives warnings
        (default: stderr)."""
        if not nodes:
            raise ValueError("Transport needs at least one node")
        self.nodes = tuple(nodes)
        self._by_name = {n.name: n for n in self.nodes}
        self.tls = tls
        self._auth = auth
        self._auth_value: str | None = None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.backoff = backoff
        self._log = log
        self._warn = warn or _warn_stderr
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._idle: dict[str, list[httpconn.Connection]] = {}
        self._dead: dict[str, str] = {}  # node -> why it is skipped for the rest of the process
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._warned = False
        self.connections_opened = 0

    @classmethod
    def from_config(cls, cfg: Config, auth: Callable[[], str] | None = None, **kw: Any) -> Transport:
        return cls(cfg.nodes, tls=cfg.tls, auth=auth, **kw)

    # -- public ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
                node: str | None = None, raw: bool = False) -> Any:
        """Send one API request; return the response's `data` (or a `Result` with `raw=True`).

        `path` is relative to /api2/json (`/nodes/pve1/qemu`). GET and DELETE parameters go in the
        query string, POST and PUT parameters in a form body. Errors: errors.from_response types,
        NodeUnreachable, TlsError.
        """
        method = method.upper()
        rel = "/" + path.lstrip("/")
        url = API_PREFIX + quote_path(rel)
        body: bytes | None = None
        qs = encode_params(params)
        if method in ("POST", "PUT"):
            body = qs.encode("ascii")
        elif qs:
            url += "?" + qs
        idempotent = method == "GET"
        order = self._order(node)
        attempts: list[tuple[str, str]] = []
        for n in order:
            if n.name in self._dead:
                attempts.append((n.name, f"{n.address}: {self._dead[n.name]}"))
                continue
            for attempt in range(self.retries + 1 if idempotent else 1):
                if attempt:
                    time.sleep(self.backoff * (2 ** (attempt - 1)))
                try:
                    status, reason, data, elapsed = self._roundtrip(n, method, url, body)
                except _ConnectFailed as e:
                    self._dead[n.name] = str(e)
                    attempts.append((n.name, f"{n.address}: {e}"))
                    self._debug(f"{method} {rel} -> {n.name} ({n.address}): connect failed: {e}")
                    break
                except _SendFailed as e:
                    self._debug(f"{method} {rel} -> {n.name} ({n.address}): {e}")
                    if not idempotent:
                        raise NodeUnreachable(
                            f"{method} {rel}: connection to {n.name} ({n.address}) failed after the "
                            f"request was sent ({e}); it may or may not have been applied",
                            attempts=attempts + [(n.name, f"{n.address}: {e}")], uncertain=True,
                            method=method, path=rel, node=n.name) from None
                    if str(e) == "timed out":
                        # a node that accepts but does not answer (hung pveproxy): waiting the read
                        # timeout again on it would only multiply the delay; go to the next node
                        self._dead[n.name] = f"no answer within {self.read_timeout:g} s"
                        attempts.append((n.name, f"{n.address}: {self._dead[n.name]}"))
                        break
                    if attempt == self.retries:
                        attempts.append((n.name, f"{n.address}: {e}"))
                    continue
                self._debug(f"{method} {rel} -> {n.name}: {status} {reason} ({elapsed * 1000:.1f} ms)")
                if status in RETRY_STATUSES and idempotent and attempt < self.retries:
                    continue
                return self._result(status, reason, data, method, rel, n.name, raw)
            # next node
        tried = ", ".join(f"{name} ({why})" for name, why in attempts)
        raise NodeUnreachable(f"no node reachable: {tried}", attempts=attempts, method=method, path=rel)

    def get(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("GET", path, params, **kw)

    def post(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("POST", path, params, **kw)

    def put(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("PUT", path, params, **kw)

    def delete(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("DELETE", path, params, **kw)

    def close(self) -> None:
        with self._lock:
            conns = [c for lst in self._idle.values() for c in lst]
            self._idle.clear()
        for c in conns:
            c.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dead_nodes(self) -> dict[str, str]:
        """Nodes skipped for the rest of the process, with the reason."""
        return dict(self._dead)

    # -- internals ---------------------------------------------------------------------------------

    def _debug(self, line: str) -> None:
        if self._log is not None:
            self._log(redact(line))

    def _order(self, node: str | None) -> list[Node]:
        if node is not None and node in self._by_name:
            first = self._by_name[node]
            return [first] + [n for n in self.nodes if n is not first]
        return list(self.nodes)

    def _header(self) -> str | None:
        if self._auth_value is None and self._auth is not None:
            self._auth_value = self._auth()
        return self._auth_value

    def _context(self, n: Node) -> ssl.SSLContext:
        tls = self.tls
        mode = tls.mode(n.name) if tls is not None else "system"
        key = mode if mode != "ca_file" else f"ca_file:{tls.ca_file}"  # type: ignore[union-attr]
        ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx
        if mode in ("pin", "insecure"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif mode == "ca_file":
            try:
                ctx = ssl.create_default_context(cafile=tls.ca_file)  # type: ignore[union-attr]
            except (OSError, ssl.SSLError) as e:
                raise TlsError(f"cannot load tls.ca_file {tls.ca_file}: {e}",  # type: ignore[union-attr]
                               hint="tls.ca_file must be the cluster CA in PEM (/etc/pve/pve-root-ca.pem)") from None
        else:
            ctx = ssl.create_default_context()
        self._contexts[key] = ctx
        return ctx

    def _connect(self, n: Node) -> httpconn.Connection:
        ctx = self._context(n)
        if self.tls is not None and self.tls.mode(n.name) == "insecure" and not self._warned:
            self._warned = True
            self._warn("TLS verification is disabled (tls.insecure: true): anyone on the network path can "
                       "read the API token; set tls.ca_file or tls.fingerprints")
        conn = httpconn.Connection(n.host, n.port, timeout=self.connect_timeout, context=ctx)
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as e:
            conn.close()
            raise TlsError(f"TLS verification of {n.name} ({n.address}) failed: {e.verify_message or e}",
                           node=n.name,
                           hint="set tls.ca_file to the cluster CA (/etc/pve/pve-root-ca.pem) or pin the node "
                                "in tls.fingerprints") from None
        except ssl.SSLError as e:
            conn.close()
            raise TlsError(f"TLS handshake with {n.name} ({n.address}) failed: {e.reason or e}",
                           node=n.name) from None
        except (OSError, httpconn.HTTPException) as e:
            conn.close()
            raise _ConnectFailed(_reason(e)) from None
        pin = self.tls.fingerprint(n.name) if self.tls is not None else None
        if pin is not None:
            der = conn.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
            got = _fp(der) if der else "no certificate"
            if got != pin:
                conn.close()
                raise TlsError(f"TLS fingerprint mismatch for {n.name} ({n.address}): pinned {pin}, got {got}",
                               node=n.name, pinned=pin, got=got,
                               hint=f"if {n.name}'s certificate was renewed on purpose, update "
                                    f"tls.fingerprints.{n.name} (pvenode cert info on the node)")
        conn.sock.settimeout(self.read_timeout)  # type: ignore[union-attr]
        self.connections_opened += 1
        self._debug(f"connected to {n.name} ({n.address}), TLS {self.tls.mode(n.name) if self.tls else 'system'}")
        return conn

    def _take(self, n: Node) -> httpconn.Connection | None:
        with self._lock:
            lst = self._idle.get(n.name)
            while lst:
                c = lst.pop()
                if c.sock is not None and not _dropped(c.sock):
                    return c
                c.close()  # the server closed it while idle (pveproxy keep-alive timeout)
        return None

    def _give(self, n: Node, c: httpconn.Connection) -> None:
        with self._lock:
            self._idle.setdefault(n.name, []).append(c)

    def _roundtrip(self, n: Node, method: str, url: str,
                   body: bytes | None) -> tuple[int, str, bytes, float]:
        auth = self._header()  # first: a CredentialError must not leave a connection open
        conn = self._take(n)
        reused = conn is not None
        if conn is None:
            conn = self._connect(n)  # raises _ConnectFailed / TlsError
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if auth:
            headers["Authorization"] = auth
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        t0 = time.monotonic()
        try:
            conn.request(method, url, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, httpconn.HTTPException) as e:
            conn.close()
            stale = reused and isinstance(e, (httpconn.RemoteDisconnected, ConnectionResetError,
                                              BrokenPipeError, httpconn.BadStatusLine))
            if stale and method == "GET":
                # A keep-alive connection the server had closed: reconnect once, transparently.
                conn = self._connect(n)
                try:
                    conn.request(method, url, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, httpconn.HTTPException) as e2:
                    conn.close()
                    raise _SendFailed(_reason(e2)) from None
            else:
                raise _SendFailed(_reason(e)) from None
        elapsed = time.monotonic() - t0
        if resp.will_close:
            conn.close()
        else:
            self._give(n, conn)
        return resp.status, resp.reason, data, elapsed

    def _result(self, status: int, reason: str, data: bytes, method: str, rel: str, node: str,
                raw: bool) -> Any:
        if not 200 <= status < 300:
            raise from_response(status, reason, data, method, rel, node)
        try:
            obj = json.loads(data) if data else {}
        except ValueError:
            raise PvectlError(f"{method} {rel}: {node} answered {status} with a body that is not JSON") from None
        value = obj.get("data") if isinstance(obj, dict) else None
        if raw:
            total = obj.get("total") if isinstance(obj, dict) else None
            return Result(value, int(total) if total is not None else None, node, status)
        return value


def _dropped(sock: socket.socket) -> bool:
    """True when an idle connection was closed by the peer (readable at EOF) or broke."""
    import select

    try:
        r, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(r)  # an idle HTTP connection has nothing to read unless the server closed it
