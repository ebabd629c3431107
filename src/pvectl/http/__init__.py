"""Transport: HTTPS to the Proxmox API on `ssl` + a minimal HTTP/1.1 connection (DESIGN §3b, §4).

The package, one module per concern: `conn` (HTTP/1.1 on a socket), `tls` (opening a verified
connection), `pool` (idle keep-alive connections), `health` (which node to skip, until when),
`encode` (paths and form bodies), `failures` (what one attempt ran into), `scopes` (per-thread
deadlines); this module puts them together.

- One keep-alive connection per node and thread: a thread takes an idle connection for one request
  and gives it back (a small pool), so one Transport is safe to share between threads.
- Connect and read timeouts are always set.
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
  NodeUnreachable(uncertain=True) is raised and the caller re-reads state. A kept-alive connection
  that the server closed (pveproxy drops idle ones after 5 s) is reopened transparently for a GET.
- Bodies: POST/PUT parameters are sent form-encoded (see `encode`). Form encoding was chosen over JSON
  because every Proxmox version accepts it and Proxmox's own JSON schema checks then see the same
  strings the CLI tools send.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from ..errors import DeadlineExceeded, NodeUnreachable, PvectlError, TlsError, from_response, redact
from . import conn as httpconn
from .encode import encode_params, quote_path
from .failures import ConnectFailed, SendFailed
from .health import NodeHealth
from .pool import IdlePool
from .scopes import Report, Scope
from .tls import Connector

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, Sequence

    from ..config import Config, Node, Tls
    from ..deadline import Deadline

__all__ = ["Transport", "Result", "encode_params", "quote_path", "RETRY_STATUSES"]

API_PREFIX = "/api2/json"
REPORT_GRACE = 3.0  # seconds for the reads that report a command's state after its deadline
RETRY_STATUSES = frozenset({595, 596, 599})  # AnyEvent::HTTP pseudo-statuses relayed by pveproxy
PROXY_FAILED = frozenset({595, 596})   # the relay could not connect to / got no answer from the target
USER_AGENT = "pvectl/0.1"
# a kept-alive connection the server had closed before our request reached it
_STALE = (httpconn.RemoteDisconnected, ConnectionResetError, BrokenPipeError, httpconn.BadStatusLine)


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


def _warn_stderr(msg: str) -> None:
    sys.stderr.write(f"pvectl: warning: {msg}\n")


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
        self.read_timeout = read_timeout
        self.retries = retries
        self.backoff = backoff
        self.deadline = deadline
        self.probe_timeout = probe_timeout
        self.failover_after = failover_after
        self._log = log
        self.user_agent = user_agent
        self._auth_lock = threading.Lock()
        self._local = threading.local()
        self._pool = IdlePool()
        self.health = NodeHealth(reprobe_after, reprobe_max)
        self._connector = Connector(tls, connect_timeout, warn=warn or _warn_stderr, debug=self._debug)

    @classmethod
    def from_config(cls, cfg: Config, auth: Callable[[], str] | None = None, **kw: Any) -> Transport:
        return cls(cfg.nodes, tls=cfg.tls, auth=auth, **kw)

    @property
    def auth(self) -> Callable[[], str] | None:
        """What gives the Authorization header (a `credentials.TokenSource` for a library Cluster)."""
        return self._auth

    @property
    def connect_timeout(self) -> float:
        return self._connector.connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, seconds: float) -> None:
        self._connector.connect_timeout = seconds

    @property
    def connections_opened(self) -> int:
        """New connections made so far (keep-alive reuse does not count)."""
        return self._connector.opened

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
        if target is not None and silent is not None:
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
                except ConnectFailed as e:
                    if cut and e.timed_out:
                        raise self._expired(method, rel, n, attempts, sent=False) from None
                    why = self.health.unreachable(n.name, str(e))
                    attempts.append((n.name, f"{n.address}: {why}"))
                    self._debug(f"{method} {rel} -> {n.name} ({n.address}): connect failed: {e}")
                    break
                except SendFailed as e:
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

    def bounded(self, deadline: Deadline | None) -> Scope:
        """`with transport.bounded(d): ...` — every request this thread makes inside the block ends
        by `d` (and by `self.deadline`, whichever comes first)."""
        from ..deadline import Deadline

        return Scope(self._scopes(), deadline if deadline is not None else Deadline(None))

    def reporting(self, grace: float = REPORT_GRACE) -> Report:
        """`with transport.reporting(): ...` — reads that say what state a command left once its
        deadline has passed (what is still on a node, a VM's status) get `grace` seconds of their own
        in this thread instead of the spent deadline: the command still ends by its deadline plus a
        small margin, and with the state it left."""
        return Report(self._local, grace)

    def time_left(self) -> float | None:
        """Seconds until the earliest deadline that bounds this thread's requests (None: no limit)."""
        from ..deadline import earliest

        grace: Deadline | None = getattr(self._local, "grace", None)
        if grace is not None:
            return grace.remaining()
        stack: list[Deadline] | None = getattr(self._local, "stack", None)
        if not stack:
            d = self.deadline
            return d.remaining() if d is not None else None
        return earliest([self.deadline, *stack])

    def refresh_auth(self) -> None:
        """Ask `auth` again now (a rotated token): a token that cannot be read raises here, and the
        old value stays in use."""
        if self._auth is not None:
            with self._auth_lock:
                self._auth_value = self._auth()

    def close(self) -> None:
        """Close the idle connections (the Transport stays usable: it reconnects when asked)."""
        self._pool.close()

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
        from ..deadline import read_slice

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
        stack: list[Deadline] | None = getattr(self._local, "stack", None)
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
            # threads that start together read the token once (one `pass show`, one file read)
            with self._auth_lock:
                value = self._auth_value
                if value is None:
                    value = self._auth_value = self._auth()
        return value

    def _prepare(self, n: Node) -> None:
        """The node's SSL context, made now (a TLS error is raised when connecting, not here)."""
        try:
            self._connector.context(n)
        except TlsError:
            pass

    @staticmethod
    def _exchange(conn: httpconn.Connection, method: str, url: str, body: bytes | None,
                  headers: dict[str, str], timeout: float) -> httpconn.Response:
        assert conn.sock is not None
        conn.sock.settimeout(timeout)
        conn.request(method, url, body=body, headers=headers)
        return conn.getresponse()

    def _roundtrip(self, n: Node, method: str, url: str, body: bytes | None,
                   timeout: float) -> tuple[int, str, bytes, float]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self._auth_value is None:
            self._prepare(n)       # loading the CA takes a few ms: do it while `pass show` decrypts
        auth = self._header()  # before connecting: an unreadable token must not leave a socket open
        conn = self._pool.take(n.name, method != "GET")
        reused = conn is not None
        if conn is None:
            conn = self._connector.open(n, timeout)  # raises ConnectFailed / TlsError
        if auth:
            headers["Authorization"] = auth
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        t0 = time.monotonic()
        try:
            resp = self._exchange(conn, method, url, body, headers, timeout)
        except (OSError, httpconn.HTTPException) as e:
            conn.close()
            if not (reused and method == "GET" and isinstance(e, _STALE)):
                raise SendFailed(e) from None
            # A kept-alive connection the server had closed: a GET is reopened once, transparently
            # (a write never is: it may have been carried out).
            self._debug(f"{method} -> {n.name}: kept-alive connection closed by the server, reconnecting")
            conn = self._connector.open(n, max(timeout - (time.monotonic() - t0), 0.001))
            try:
                resp = self._exchange(conn, method, url, body, headers,
                                      max(timeout - (time.monotonic() - t0), 0.001))
            except (OSError, httpconn.HTTPException) as e2:
                conn.close()
                raise SendFailed(e2) from None
        elapsed = time.monotonic() - t0
        if resp.will_close:
            conn.close()
        else:
            self._pool.give(n.name, conn)
        return resp.status, resp.reason, resp.read(), elapsed

    @staticmethod
    def _result(status: int, reason: str, data: bytes, method: str, rel: str, node: str, raw: bool) -> Any:
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
