"""Transport: HTTPS to the Proxmox API on `ssl` + a minimal HTTP/1.1 connection (DESIGN §3b, §4).

- One keep-alive connection per node (a small idle pool when threads share the Transport).
- Connect and read timeouts are always set.
- TLS per node: pinned SHA-256 fingerprint (`tls.fingerprints`; ssl-level verification off, then the
  peer certificate's digest is compared), else `tls.ca_file` with host name checking against the node's
  `host`, else `tls.insecure: true` (warned about on every run), else the system CA store.
- Failover: nodes are tried in config order (a request for `node=` goes there first; any node proxies,
  `spec/pve-semantics.md` §12.5). TLS failures are never failed over: they raise TlsError at once.
- Node health: a node that cannot be connected to is skipped as an entry point; a node that does not
  answer (no answer in time, or 595/596 from a node that relayed to it) is also skipped for requests
  whose path names it: they fail fast, nothing is sent. A failure is blamed on the node in the path,
  never on a healthy relay. Either mark lasts a back-off (2 s, doubling to 30 s), then the node is
  probed again (with a short timeout) and a success clears it.
- Deadlines: `deadline` (the command's `--timeout`) and `bounded(d)` (per thread) bound every
  request. Each connect/read timeout is the configured one or the time left, whichever is shorter;
  a read gets at most half of the time left (>= 1 s) so that a hung node leaves time for the others;
  a read any node can answer moves on to the next node after `failover_after` (5 s).
  When the deadline itself runs out: DeadlineExceeded (exit 4), `uncertain` for a write already sent.
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
from pvectl.errors import DeadlineExceeded, NodeUnreachable, PvectlError, TlsError, from_response, redact
from pvectl.nodehealth import NodeHealth

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping, Sequence

    from pvectl.config import Config, Node, Tls
    from pvectl.deadline import Deadline

__all__ = ["Transport", "Result", "encode_params", "RETRY_STATUSES"]

API_PREFIX = "/api2/json"
REPORT_GRACE = 3.0  # seconds for the reads that report a command's state after its deadline
RETRY_STATUSES = frozenset({595, 596, 599})  # AnyEvent::HTTP pseudo-statuses relayed by pveproxy
PROXY_FAILED = frozenset({595, 596})   # the relay could not connect to / got no answer from the target
# pveproxy closes a keep-alive connection after 5 s without a request (AnyEvent.pm::new `timeout => 5`)
WRITE_REUSE_IDLE = 2.0
POOL_IDLE_MAX = 8      # idle connections kept per node (threads sharing a Transport each take one)
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


class _Failed(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(_reason(cause))
        self.timed_out = isinstance(cause, (socket.timeout, TimeoutError))


class _ConnectFailed(_Failed):
    """Nothing was sent: safe to try another node with any method."""


class _SendFailed(_Failed):
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


class _Scope:
    """`with transport.bounded(deadline):` — the deadline bounds every request of this thread."""

    __slots__ = ("_stack", "_deadline")

    def __init__(self, stack: list[Deadline], deadline: Deadline) -> None:
        self._stack = stack
        self._deadline = deadline

    def __enter__(self) -> Deadline:
        self._stack.append(self._deadline)
        return self._deadline

    def __exit__(self, *exc: object) -> None:
        self._stack.remove(self._deadline)


class _Report:
    """`with transport.reporting():` — see Transport.reporting."""

    __slots__ = ("_local", "_grace", "_saved")

    def __init__(self, local: threading.local, grace: float) -> None:
        self._local = local
        self._grace = grace
        self._saved: Deadline | None = None

    def __enter__(self) -> None:
        from .deadline import Deadline

        self._saved = getattr(self._local, "grace", None)
        self._local.grace = Deadline(self._grace)

    def __exit__(self, *exc: object) -> None:
        self._local.grace = self._saved


class Transport:
    """Talks to one Proxmox cluster. Thread-safe; connections are reused per node (a small pool)."""

    def __init__(self, nodes: Sequence[Node], *, tls: Tls | None = None,
                 auth: Callable[[], str] | None = None, connect_timeout: float = 3.0,
                 read_timeout: float = 30.0, retries: int = 2, backoff: float = 0.2,
                 log: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None,
                 user_agent: str = USER_AGENT, deadline: Deadline | None = None,
                 reprobe_after: float = 2.0, reprobe_max: float = 30.0, probe_timeout: float = 5.0,
                 failover_after: float = 5.0) -> None:
        """`auth` returns the Authorization header value (`Token.header`); it is called at the first
        request and again after `refresh_auth()`. `log` receives debug lines (never headers or bodies).
        `warn` receives warnings (default: stderr). `deadline` bounds every request (see `bounded()`
        for a per-thread one). A node that failed is skipped for `reprobe_after` s, doubling per
        failure up to `reprobe_max`, then tried again with at most `probe_timeout` s to answer. A read
        that any node can answer (no node in its path) waits `failover_after` s before the next node."""
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
        self.deadline = deadline
        self.probe_timeout = probe_timeout
        self.failover_after = failover_after
        self._log = log
        self._warn = warn or _warn_stderr
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._local = threading.local()
        self._idle: dict[str, list[tuple[httpconn.Connection, float]]] = {}
        self.health = NodeHealth(reprobe_after, reprobe_max)
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
        NodeUnreachable, DeadlineExceeded (exit 4: the deadline passed first), TlsError.
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
        target = _path_node(rel)
        attempts: list[tuple[str, str]] = []
        silent = self.health.skip_target(target) if target is not None else None
        if silent is not None:
            # the node the path names did not answer a moment ago, directly or through another node:
            # fail fast (nothing is sent) until its back-off ends, then it is probed again
            raise NodeUnreachable(f"{method} {rel}: node {target} is not answering ({silent}); "
                                  f"it is tried again after a back-off",
                                  attempts=[(target, silent)], method=method, path=rel, node=target)
        entries = self._entries(node, attempts)
        for n in entries:
            if target is not None and n.name != target and self.health.skip_target(target) is not None:
                break       # the node in the path stopped answering: any relay would wait for it too
            # a cluster-wide read that another node can answer waits less for this one
            others = idempotent and target is None and n is not entries[-1]
            for attempt in range(self.retries + 1 if idempotent else 1):
                if attempt:
                    self._pause(self.backoff * (2 ** (attempt - 1)))
                timeout, cut = self._budget(n, target, idempotent, method, rel, attempts)
                if others and self.failover_after < timeout:
                    timeout, cut = self.failover_after, False
                try:
                    status, reason, data, elapsed = self._roundtrip(n, method, url, body, timeout)
                except _ConnectFailed as e:
                    if cut and e.timed_out:
                        raise self._expired(method, rel, n, attempts, sent=False) from None
                    why = self.health.unreachable(n.name, str(e))
                    attempts.append((n.name, f"{n.address}: {why}"))
                    self._debug(f"{method} {rel} -> {n.name} ({n.address}): connect failed: {e}")
                    break
                except _SendFailed as e:
                    self._debug(f"{method} {rel} -> {n.name} ({n.address}): {e}")
                    if e.timed_out and cut:
                        raise self._expired(method, rel, n, attempts, sent=True, uncertain=not idempotent) from None
                    if e.timed_out:
                        # no answer within the time given: blame the node the path names (a relay
                        # waits for it as long as we do), else the node asked
                        who = target or n.name
                        why = self.health.unresponsive(who, f"no answer within {timeout:.3g} s")
                        attempts.append((who, f"{n.address}: {why}" if who == n.name else f"via {n.name}: {why}"))
                    elif attempt == self.retries or not idempotent:
                        attempts.append((n.name, f"{n.address}: {e}"))
                    if not idempotent:
                        raise NodeUnreachable(
                            f"{method} {rel}: connection to {n.name} ({n.address}) failed after the "
                            f"request was sent ({e}); it may or may not have been applied",
                            attempts=attempts, uncertain=True, method=method, path=rel, node=n.name) from None
                    if e.timed_out:
                        break
                    continue
                self._debug(f"{method} {rel} -> {n.name}: {status} {reason} ({elapsed * 1000:.1f} ms)")
                if status in PROXY_FAILED and target is not None and target != n.name:
                    # 595/596: the node we asked could not reach (595) or got no answer from (596) the
                    # node in the path (AnyEvent.pm::proxy_request, `timeout => 30`; pve-semantics
                    # §12.5). The relay itself is fine: mark the target, never the relay. A relay
                    # that already waited its 30 s for the target is not asked to wait again.
                    self.health.answered(n.name)
                    if idempotent and attempt < self.retries and "timed out" not in reason.lower():
                        continue
                    self.health.unresponsive(target, f"{status} {reason} via {n.name}")
                    return self._result(status, reason, data, method, rel, n.name, raw)
                if status in RETRY_STATUSES and idempotent and attempt < self.retries:
                    continue
                self.health.answered(n.name)
                if target is not None and status not in RETRY_STATUSES:
                    self.health.answered(target)
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

    def bounded(self, deadline: Deadline | None) -> _Scope:
        """`with transport.bounded(d): ...` — every request this thread makes inside the block ends
        by `d` (and by `self.deadline`, whichever comes first)."""
        from .deadline import Deadline

        return _Scope(self._scopes(), deadline if deadline is not None else Deadline(None))

    def reporting(self, grace: float = REPORT_GRACE) -> _Report:
        """`with transport.reporting(): ...` — reads that say what state a command left once its
        deadline has passed (what is still on a node, a VM's status) get `grace` seconds of their own
        in this thread instead of the spent deadline: the command still ends by its deadline plus a
        small margin, and with the state it left."""
        return _Report(self._local, grace)

    def time_left(self) -> float | None:
        """Seconds until the earliest deadline that bounds this thread's requests (None: no limit)."""
        from .deadline import earliest

        grace = getattr(self._local, "grace", None)
        if grace is not None:
            return grace.remaining()
        stack = getattr(self._local, "stack", None)
        if not stack:
            d = self.deadline
            return d.remaining() if d is not None else None
        return earliest([self.deadline, *stack])

    def refresh_auth(self) -> None:
        """Ask `auth` again now (a rotated token): a token that cannot be read raises here, and the
        old value stays in use."""
        if self._auth is not None:
            value = self._auth()
            with self._lock:
                self._auth_value = value

    def close(self) -> None:
        with self._lock:
            conns = [c for lst in self._idle.values() for c, _ in lst]
            self._idle.clear()
        for c in conns:
            c.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dead_nodes(self) -> dict[str, str]:
        """Nodes skipped right now (until their back-off ends), with the reason."""
        return self.health.skipped()

    # -- internals ---------------------------------------------------------------------------------

    def _entries(self, node: str | None, attempts: list[tuple[str, str]]) -> list[Node]:
        """Nodes to send this request to, in order; nodes in back-off are left out (all of them are
        tried when every node is in back-off: better a probe than no attempt)."""
        order = self._order(node)
        usable = []
        for n in order:
            why = self.health.skip_entry(n.name)
            if why is None:
                usable.append(n)
            else:
                attempts.append((n.name, f"{n.address}: {why} (skipped)"))
        if usable:
            return usable
        del attempts[:]
        return order

    def _budget(self, n: Node, target: str | None, idempotent: bool, method: str, rel: str,
                attempts: list[tuple[str, str]]) -> tuple[float, bool]:
        """(socket timeout for this attempt, whether the deadline is what limits it)."""
        timeout = self.read_timeout
        if idempotent and (self.health.suspect(n.name) or (target is not None and self.health.suspect(target))):
            timeout = min(timeout, self.probe_timeout)      # a read re-probing a node that failed before
        left = self.time_left()
        if left is None:
            return timeout, False
        if left <= 0:
            raise self._expired(method, rel, n, attempts, sent=False)
        from .deadline import read_slice

        # a read may use a share of the time left, so one node that does not answer leaves time for
        # the others and for the rest of the workflow; a write waits as long as the deadline allows
        cap = read_slice(left) if idempotent else left
        if cap < timeout:
            return cap, cap >= left
        return timeout, False

    def _pause(self, seconds: float) -> None:
        left = self.time_left()
        time.sleep(seconds if left is None else max(0.0, min(seconds, left)))

    def _expired(self, method: str, rel: str, n: Node, attempts: list[tuple[str, str]], *, sent: bool,
                 uncertain: bool = False) -> DeadlineExceeded:
        if sent:
            attempts.append((n.name, f"{n.address}: no answer before the deadline"))
            what = (f"{method} {rel}: no answer from {n.name} before the deadline"
                    + ("; the request was sent and may or may not have been applied" if uncertain else ""))
        else:
            what = f"{method} {rel}: the deadline passed before the request could be sent (nothing was sent)"
        return DeadlineExceeded(what, attempts=list(attempts), uncertain=uncertain, method=method, path=rel,
                                node=n.name)

    def _scopes(self) -> list[Deadline]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _debug(self, line: str) -> None:
        if self._log is not None:
            self._log(redact(line))

    def _order(self, node: str | None) -> list[Node]:
        if node is not None and node in self._by_name:
            first = self._by_name[node]
            return [first] + [n for n in self.nodes if n is not first]
        return list(self.nodes)

    def _header(self) -> str | None:
        value = self._auth_value
        if value is None and self._auth is not None:
            value = self._auth()
            with self._lock:
                self._auth_value = value
        return value

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

    def _connect(self, n: Node, timeout: float) -> httpconn.Connection:
        ctx = self._context(n)
        if self.tls is not None and self.tls.mode(n.name) == "insecure" and not self._warned:
            self._warned = True
            self._warn("TLS verification is disabled (tls.insecure: true): anyone on the network path can "
                       "read the API token; set tls.ca_file or tls.fingerprints")
        conn = httpconn.Connection(n.host, n.port, timeout=min(self.connect_timeout, timeout), context=ctx)
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
            raise _ConnectFailed(e) from None
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
        with self._lock:
            self.connections_opened += 1
        self._debug(f"connected to {n.name} ({n.address}), TLS {self.tls.mode(n.name) if self.tls else 'system'}")
        return conn

    def _take(self, n: Node, write: bool) -> httpconn.Connection | None:
        now = time.monotonic()
        with self._lock:
            lst = self._idle.get(n.name)
            while lst:
                c, since = lst.pop()
                # A write never goes out on a connection that has idled long enough for pveproxy to
                # be closing it (a write is never resent, so it must not race the server's close).
                if c.sock is not None and not _dropped(c.sock) and not (write and now - since > WRITE_REUSE_IDLE):
                    return c
                c.close()  # the server closed it while idle (pveproxy keep-alive timeout)
        return None

    def _give(self, n: Node, c: httpconn.Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(n.name, [])
            if len(idle) < POOL_IDLE_MAX:
                idle.append((c, time.monotonic()))
                return
        c.close()

    def _exchange(self, conn: httpconn.Connection, method: str, url: str, body: bytes | None,
                  headers: dict[str, str], timeout: float) -> httpconn.Response:
        conn.sock.settimeout(timeout)  # type: ignore[union-attr]
        conn.request(method, url, body=body, headers=headers)
        return conn.getresponse()

    def _roundtrip(self, n: Node, method: str, url: str, body: bytes | None,
                   timeout: float) -> tuple[int, str, bytes, float]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        auth = self._header()  # before connecting: an unreadable token must not leave a socket open
        conn = self._take(n, method != "GET")
        reused = conn is not None
        if conn is None:
            conn = self._connect(n, timeout)  # raises _ConnectFailed / TlsError
        if auth:
            headers["Authorization"] = auth
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        t0 = time.monotonic()
        try:
            resp = self._exchange(conn, method, url, body, headers, timeout)
        except (OSError, httpconn.HTTPException) as e:
            conn.close()
            stale = reused and isinstance(e, (httpconn.RemoteDisconnected, ConnectionResetError,
                                              BrokenPipeError, httpconn.BadStatusLine))
            if not (stale and method == "GET"):
                raise _SendFailed(e) from None
            # A keep-alive connection the server had closed: a GET is reopened once, transparently.
            conn = self._connect(n, max(timeout - (time.monotonic() - t0), 0.001))
            try:
                resp = self._exchange(conn, method, url, body, headers,
                                      max(timeout - (time.monotonic() - t0), 0.001))
            except (OSError, httpconn.HTTPException) as e2:
                conn.close()
                raise _SendFailed(e2) from None
        elapsed = time.monotonic() - t0
        if resp.will_close:
            conn.close()
        else:
            self._give(n, conn)
        return resp.status, resp.reason, resp.read(), elapsed

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


def _path_node(rel: str) -> str | None:
    """The node a `/nodes/{node}/...` path names (the one that must answer it), else None."""
    if not rel.startswith("/nodes/"):
        return None
    name = rel[7:].split("/", 1)[0]
    return name or None


def _dropped(sock: socket.socket) -> bool:
    """True when an idle connection was closed by the peer (readable at EOF) or broke."""
    import select

    try:
        r, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(r)  # an idle HTTP connection has nothing to read unless the server closed it
