"""HTTPS listeners of the simulated cluster: one per node, on loopback only.

Each listener behaves like pveproxy on port 8006 (pve-http-server `src/PVE/APIServer/AnyEvent.pm`,
`spec/pve-semantics.md` §12): TLS with the node certificate, HTTP/1.1 keep-alive, the header set of
`AnyEvent.pm::response`, requests for other nodes relayed to their listener (`proxy_request`, with
595/596 when that fails), and a bounded worker pool of 3 per node (C14, `max_workers => 3`).

A listener turns each request into a `wire.Request` and hands it to `Api.handle(local_node, request)`;
paths under `/_sim/` go to the control API instead (no real PVE has that path). Listener-level faults
(`faults.Faults`) are applied before the API sees the request.

Threads: one accept thread per listener and one thread per connection (like `ThreadingHTTPServer`);
the per-node worker semaphore bounds how many requests are being *handled* at once, while connections
and the 401 delay do not take a worker (pveproxy workers are event-driven; the delay is a timer).
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import sys
import threading
import time
import traceback
import zlib
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

from . import wire
from .wire import first_line
from .wire import plain_error as error_response

if TYPE_CHECKING:
    from .faults import Faults

SERVER_HEADER = "pve-api-daemon/3.0"                 # AnyEvent.pm::response
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"  # Formatter/Standard.pm (json)
MAX_WORKERS = 3             # pveproxy/pvedaemon `max_workers => 3` (C14)
KEEP_ALIVE_REQUESTS = 100   # pveproxy `keep_alive => 100`: requests per connection
IDLE_TIMEOUT = 5.0          # AnyEvent.pm::new: `$self->{timeout} = 5` (handle inactivity timeout)
PROXY_TIMEOUT = 30.0        # AnyEvent.pm::proxy_request: `timeout => 30`
MAX_HEADER_LINES = 64       # AnyEvent.pm: $limit_max_headers
MAX_HEADER_SIZE = 8 * 1024  # AnyEvent.pm: $limit_max_header_size
MAX_POST = 64 * 1024        # AnyEvent.pm: $limit_max_post -> 501 "for data too large"
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})  # AnyEvent.pm: $known_methods
GZIP_MIN = 1024             # AnyEvent.pm::response: gzip when content_length > 1024
GZIP_LEVEL = 1              # memGzip uses zlib's default (6); level 1 costs 0.48 ms instead of 1.42 ms
                            # for a 147 KB body and is 3 % larger - clients cannot tell the difference
_POOL_IDLE = 4.0            # drop pooled proxy connections before the peer's 5 s idle timeout
_POOL_MAX = 8

_REQUEST_LINE = re.compile(rb"(\S+) (\S+) HTTP/(\d+)\.(\d+)")   # AnyEvent.pm::push_request_header
_HEADER_LINE = re.compile(rb"([^:\s]+)\s*:\s*(.*)")              # AnyEvent.pm::unshift_read_header
_PASSWORD_IN_QUERY = re.compile(r"(?i)((?:^|[&;])(?:password|new-password)=)[^&;]*")


class SimAddressError(ValueError):
    """A bind or proxy address outside 127.0.0.0/8."""


class PortInUseError(OSError):
    """The address a listener should bind is taken (`str()` is the one-line message)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class Handler(Protocol):
    def handle(self, local_node: str, request: wire.Request) -> wire.Response | wire.ProxyTo: ...


class ControlHandler(Protocol):
    def handle(self, local_node: str, request: wire.Request) -> tuple[wire.Response, Callable[[], None] | None]: ...


def check_loopback(host: str) -> str:
    """Return `host` as an IPv4 literal if it lies in 127.0.0.0/8, else raise SimAddressError."""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise SimAddressError(
            f"{host!r} is not an IPv4 address: the simulator binds loopback addresses (127.0.0.0/8) only"
        ) from None
    if addr.version != 4 or addr not in ipaddress.ip_network("127.0.0.0/8"):
        raise SimAddressError(
            f"refusing to use {host}: the simulator binds and contacts loopback addresses (127.0.0.0/8) only"
        )
    return str(addr)


# ----------------------------------------------------------------------------------------------
# Rendering responses

_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        cached = (now, email.utils.formatdate(now, usegmt=True))
        _date_cache = cached
    return cached[1]


_STD_HEADERS = frozenset({
    "cache-control", "connection", "date", "pragma", "server", "content-length", "expires",
    "keep-alive", "transfer-encoding",
})


def render_response(
    status: int,
    reason: str,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
    *,
    proto: str = "HTTP/1.1",
    keep_alive: bool = True,
    accept_gzip: bool = False,
    compression: bool = True,
) -> bytes:
    """The bytes pveproxy writes for one answer (AnyEvent.pm::response).

    Header order follows HTTP::Headers (general, response, entity headers). `Date`/`Expires`/
    `Cache-Control`/`Pragma`/`Server`/`Connection`/`Content-Length` are always set here; a relayed
    answer keeps its `Content-Type`, `Content-Encoding` and other headers.
    """
    try:
        std = HTTPStatus(status).phrase
    except ValueError:
        std = ""
    msg = first_line(reason) if reason else std
    if 100 <= status < 200 or status in (204, 304):
        body = b""  # AnyEvent.pm::response: no content for 1xx/204/304
    content_type: str | None = None
    encoding: str | None = None
    location: str | None = None
    others: list[tuple[str, str]] = []
    for name, value in headers or ():
        low = name.lower()
        if low == "content-type":
            content_type = value
        elif low == "content-encoding":
            encoding = value
        elif low == "location":
            location = value
        elif low not in _STD_HEADERS:
            others.append((name, value))
    if body and content_type is None:
        content_type = JSON_CONTENT_TYPE
    if body and encoding is None and compression and accept_gzip and len(body) > GZIP_MIN:
        body = _gzip(body)
        encoding = "gzip"
    date = _http_date()
    parts = [
        f"{proto} {status} {msg}\r\n",
        "Cache-Control: max-age=0\r\n",
        "Connection: Keep-Alive\r\n" if keep_alive else "Connection: close\r\n",
        f"Date: {date}\r\n",
        "Pragma: no-cache\r\n",
    ]
    if location is not None:
        parts.append(f"Location: {location}\r\n")
    parts.append(f"Server: {SERVER_HEADER}\r\n")
    if encoding is not None:
        parts.append(f"Content-Encoding: {encoding}\r\n")
    # AnyEvent.pm removes Content-Length for an empty answer (the connection then closes after it);
    # an empty keep-alive answer still needs `Content-Length: 0` to be framed.
    if body or keep_alive:
        parts.append(f"Content-Length: {len(body)}\r\n")
    if content_type is not None:
        parts.append(f"Content-Type: {content_type}\r\n")
    parts.append(f"Expires: {date}\r\n")
    for name, value in others:
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    head = "".join(parts).encode("utf-8", "replace")
    return head + body if body else head


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)   # 31 = gzip container, like memGzip
    return c.compress(data) + c.flush()


# ----------------------------------------------------------------------------------------------
# Request log (for tests that count requests; never holds credentials)


class RequestLog:
    """A bounded, thread-safe log of recent requests: method, path, node, status, ..."""

    def __init__(self, maxlen: int = 10000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, *, node: str, method: str, path: str, query: str, status: int | None,
            client: str, forwarded: bool, proxied_to: str | None = None,
            note: str | None = None) -> None:
        if query and ("password" in query.lower()):
            query = _PASSWORD_IN_QUERY.sub(r"\1***", query)
        with self._lock:
            self._seq += 1
            self._entries.append({
                "seq": self._seq, "time": time.time(), "node": node, "method": method,
                "path": path, "query": query, "status": status, "client": client,
                "forwarded": forwarded, "proxied_to": proxied_to, "note": note,
            })

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def entries(self, *, since: int = 0, node: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            out = [dict(e) for e in self._entries if e["seq"] > since and (node is None or e["node"] == node)]
        if limit is not None and limit >= 0:
            out = out[-limit:] if limit else []
        return out

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# ----------------------------------------------------------------------------------------------
# Listeners


class NodeListener:
    """pveproxy of one node: a loopback TLS listener plus its worker slots."""

    def __init__(self, server: SimServer, name: str, host: str, port: int, ssl_context: ssl.SSLContext) -> None:
        self.server = server
        self.name = name
        self.host = check_loopback(host)
        self.port = port
        self.ssl_context = ssl_context
        self.slots = threading.BoundedSemaphore(server.workers)
        self.generation = 0
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: set[_Connection] = set()
        self.waiting = 0         # requests waiting for a worker slot
        self.active = 0          # requests being handled now (inside a worker slot)
        self.max_active = 0      # high-water mark, for tests and /_sim/state

    @property
    def up(self) -> bool:
        return self._accept_thread is not None and self._sock is not None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def bind(self) -> None:
        """Bind and listen (port 0 picks a free port, kept across stop/start)."""
        with self._lock:
            if self._sock is not None:
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError as e:
                sock.close()
                if e.errno in (98, 48, 10048):   # EADDRINUSE on Linux / BSD / Windows
                    raise PortInUseError(e.errno, f"{self.host}:{self.port} is in use - pick --port or stop the other server") from None
                if e.errno == 99:                # EADDRNOTAVAIL
                    raise SimAddressError(f"cannot bind {self.host}:{self.port}: {e.strerror}") from None
                raise
            sock.listen(128)
            self.port = sock.getsockname()[1]
            self._sock = sock

    def start(self) -> None:
        self.bind()
        with self._lock:
            if self._accept_thread is not None:
                return
            assert self._sock is not None
            gen = self.generation
            t = threading.Thread(target=self._accept_loop, args=(self._sock, gen), daemon=True,
                                 name=f"sim-{self.name}-accept")
            self._accept_thread = t
        t.start()

    def stop(self) -> None:
        """Close the listening socket (new connections are refused) and every open connection."""
        with self._lock:
            sock, self._sock = self._sock, None
            thread, self._accept_thread = self._accept_thread, None
            self.generation += 1
            conns = list(self._conns)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)   # wakes a blocked accept() on Linux
            except OSError:
                pass
            sock.close()
        for c in conns:
            c.abort()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def _accept_loop(self, lsock: socket.socket, gen: int) -> None:
        while True:
            try:
                sock, addr = lsock.accept()
            except OSError:
                if gen != self.generation:
                    return
                time.sleep(0.01)   # e.g. EMFILE: back off, keep listening
                continue
            if gen != self.generation:
                sock.close()
                return
            conn = _Connection(self, sock, addr[0], gen)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=conn.run, daemon=True, name=f"sim-{self.name}-conn").start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Connection:
    """One client connection; its thread serves requests until close, error or listener stop."""

    __slots__ = ("listener", "sock", "client", "gen", "aborted")

    def __init__(self, listener: NodeListener, sock: socket.socket, client: str, gen: int) -> None:
        self.listener = listener
        self.sock = sock
        self.client = client
        self.gen = gen
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def _alive(self) -> bool:
        return not self.aborted and self.gen == self.listener.generation

    def run(self) -> None:
        lst = self.listener
        srv = lst.server
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # AnyEvent.pm uses TCP_NODELAY
            self.sock.settimeout(srv.idle_timeout)
            first = self.sock.recv(1, socket.MSG_PEEK)
            if not first:
                return
            if first[0] != 0x16:   # not a TLS handshake record: plain HTTP on the TLS port
                self._serve_plain()
                return
            self.sock = lst.ssl_context.wrap_socket(self.sock, server_side=True)
            if not self._alive():
                return
            self._serve_tls()
        except (OSError, ValueError):
            pass
        except Exception:  # noqa: BLE001 - a bug must not kill the listener; report it
            traceback.print_exc(file=sys.stderr)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            lst._forget(self)

    # -- request parsing ---------------------------------------------------------------------

    @staticmethod
    def _read_head(rfile: Any) -> tuple[str, str, str, dict[str, str]] | None:
        """Request line and headers; None on a clean EOF before a request."""
        while True:
            line = rfile.readline(65537)
            if not line:
                return None
            if line not in (b"\r\n", b"\n"):
                break   # AnyEvent.pm: empty lines before a request are ignored
        m = _REQUEST_LINE.match(line)
        if not m:
            raise _BadRequest(400, "bad request")
        method, target, maj, minor = m.group(1).decode("latin-1"), m.group(2).decode("latin-1"), m.group(3), m.group(4)
        proto = f"HTTP/{int(maj)}.{int(minor)}"
        if int(maj) != 1:
            raise _BadRequest(506, f"http protocol version {int(maj)}.{int(minor)} not supported")
        headers: dict[str, str] = {}
        count = 0
        size = 0
        last: str | None = None
        while True:
            hl = rfile.readline(MAX_HEADER_SIZE + 2)
            if not hl:
                raise _BadRequest(400, "bad request")
            if hl in (b"\r\n", b"\n"):
                break
            count += 1
            size += len(hl)
            if count >= MAX_HEADER_LINES:
                raise _BadRequest(400, f"too many http header lines (> {MAX_HEADER_LINES})")
            if size >= MAX_HEADER_SIZE:
                raise _BadRequest(400, "http header too large")
            hl = hl.rstrip(b"\r\n")
            if hl[:1] in (b" ", b"\t") and last is not None:
                headers[last] += " " + hl.strip().decode("latin-1")
                continue
            hm = _HEADER_LINE.match(hl)
            if not hm:
                raise _BadRequest(506, "unable to parse request header")
            key = hm.group(1).decode("latin-1").lower()
            val = hm.group(2).decode("latin-1").rstrip()
            headers[key] = f"{headers[key]}, {val}" if key in headers else val
            last = key
        return method, target, proto, headers

    def _write(self, data: bytes) -> bool:
        if not self._alive():
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    # -- plain HTTP: redirect to https (AnyEvent.pm::ensure_tls_connection) ---------------------

    def _serve_plain(self) -> None:
        rfile = self.sock.makefile("rb")
        try:
            try:
                head = self._read_head(rfile)
            except _BadRequest as e:
                self._write(render_response(e.status, e.message, b"", keep_alive=False))
                return
            if head is None:
                return
            method, target, proto, headers = head
            host = headers.get("host")
            if not host:
                resp = error_response(501, "Header field 'Host' not found in request")
                self._write(render_response(resp.status, resp.reason, resp.body, proto=proto, keep_alive=False))
                return
            location = "https://" + re.sub(r"^https?://", "", host) + target
            status, reason = (301, "Moved Permanently") if method in ("GET", "HEAD") else (308, "Permanent Redirect")
            self.listener.server.requests.add(node=self.listener.name, method=method, path=target.split("?", 1)[0],
                                              query="", status=status, client=self.client, forwarded=False,
                                              note="plain http")
            self._write(render_response(status, reason, b"", [("Location", location)], proto=proto, keep_alive=False))
        finally:
            rfile.close()

    # -- TLS: the API -------------------------------------------------------------------------

    def _serve_tls(self) -> None:
        lst = self.listener
        srv = lst.server
        rfile = self.sock.makefile("rb", buffering=65536)
        remaining = KEEP_ALIVE_REQUESTS
        try:
            while self._alive():
                try:
                    head = self._read_head(rfile)
                except _BadRequest as e:
                    self._write(render_response(e.status, e.message, b"", keep_alive=False))
                    return
                if head is None:
                    return
                remaining -= 1
                method, target, proto, headers = head
                path, _, query = target.partition("?")
                conn_hdr = headers.get("connection", "")
                if conn_hdr:
                    keep_alive = "close" not in conn_hdr.lower()
                else:
                    keep_alive = proto != "HTTP/1.0"   # AnyEvent.pm: no Connection header + HTTP/1.0 -> close
                if remaining <= 0:
                    keep_alive = False
                accept_gzip = "gzip" in headers.get("accept-encoding", "")
                forwarded = "pvedisableproxy" in headers

                early: wire.Response | None = None
                body = b""
                if method not in KNOWN_METHODS:
                    early = wire.Response(501, f"method '{method}' not available")
                te = headers.get("transfer-encoding")
                if early is None and te:
                    early = wire.Response(501, "chunked transfer encoding not supported" if te.lower() == "chunked"
                                          else f"Unknown transfer encoding '{te}'")
                length = 0
                if early is None and "content-length" in headers:
                    try:
                        length = int(headers["content-length"])
                        if length < 0:
                            raise ValueError
                    except ValueError:
                        early = wire.Response(400, "bad request")
                if early is None and length:
                    if length > MAX_POST:
                        early = wire.Response(501, "for data too large")
                        if length <= 1 << 20:
                            # take the whole (moderate) body before answering: closing a TLS connection
                            # with unread data can reset it and lose the answer on a loaded machine
                            body = rfile.read(length)
                    elif method not in ("PUT", "POST") and not path.startswith("/_sim"):
                        early = wire.Response(501, f"Unexpected content for method '{method}'")
                    else:
                        body = rfile.read(length)
                        if len(body) != length:
                            return
                if early is not None:
                    srv.requests.add(node=lst.name, method=method, path=path, query=query, status=early.status,
                                     client=self.client, forwarded=forwarded)
                    self._write(render_response(early.status, early.reason, early.body, proto=proto, keep_alive=False))
                    if length and not body:
                        # read what the client is still sending before closing, so the kernel does not
                        # answer it with a reset that would destroy the error response in flight
                        _drain(rfile, min(length, 1 << 20))
                    return

                request = wire.Request(method=method, path=path, query=query, headers=headers, body=body,
                                       client_ip=self.client)
                if path == "/_sim" or path.startswith("/_sim/"):
                    if not self._control(request, proto):
                        return
                    continue

                result = srv.serve(lst, request, self, accept_gzip=accept_gzip)
                if result is None:   # dropped by a fault: close without answering
                    srv.requests.add(node=lst.name, method=method, path=path, query=query, status=None,
                                     client=self.client, forwarded=forwarded, note="dropped")
                    return
                resp, proxied_to = result
                if resp.delay > 0:
                    time.sleep(resp.delay)   # AnyEvent.pm::response: timer, no worker held
                keep = keep_alive and resp.status < 400   # AnyEvent.pm::response: keep_alive = 0 if code >= 400
                data = render_response(resp.status, resp.reason, resp.body, resp.headers, proto=proto,
                                       keep_alive=keep, accept_gzip=accept_gzip, compression=srv.compression)
                # logged before the write, so a client that got its answer finds the entry
                srv.requests.add(node=lst.name, method=method, path=path, query=query, status=resp.status,
                                 client=self.client, forwarded=forwarded, proxied_to=proxied_to)
                ok = self._write(data)
                if not ok or not keep:
                    return
        finally:
            rfile.close()

    def _control(self, request: wire.Request, proto: str) -> bool:
        srv = self.listener.server
        after: Callable[[], None] | None = None
        if srv.control is None:
            resp = wire.Response(404, "no control API", b'{"error":"no control API"}')
        elif not _is_loopback(request.client_ip):
            resp = wire.Response(403, "loopback clients only", b'{"error":"loopback clients only"}')
        else:
            try:
                resp, after = srv.control.handle(self.listener.name, request)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc(file=sys.stderr)
                msg = f"{type(e).__name__}: {e}"
                resp = wire.Response(500, first_line(msg), json.dumps({"error": msg}).encode())
        keep = resp.status < 400 and after is None
        ok = self._write(render_response(resp.status, resp.reason, resp.body, resp.headers, proto=proto,
                                         keep_alive=keep, compression=False))
        if after is not None:
            after()
        return ok and keep


def _drain(rfile: Any, n: int) -> None:
    try:
        while n > 0:
            chunk = rfile.read1(min(n, 65536))
            if not chunk:
                return
            n -= len(chunk)
    except (OSError, ValueError):
        pass


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.")


# ----------------------------------------------------------------------------------------------
# The server group


class SimServer:
    """All node listeners of one simulated cluster, plus proxying between them."""

    def __init__(
        self,
        api: Handler | None = None,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        ca_pem: bytes | None = None,
        faults: Faults | None = None,
        control: ControlHandler | None = None,
        workers: int = MAX_WORKERS,
        proxy_timeout: float = PROXY_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        compression: bool = True,
        proxy_holds_worker: bool = False,
        log_size: int = 10000,
    ) -> None:
        self.api = api
        self.faults = faults
        self.control = control
        self.workers = workers
        self.proxy_timeout = proxy_timeout
        self.idle_timeout = idle_timeout
        self.compression = compression
        self.proxy_holds_worker = proxy_holds_worker
        self.requests = RequestLog(log_size)
        self.listeners: dict[str, NodeListener] = {}
        if ca_pem is not None:
            self._client_ctx = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
        elif ca_file is not None:
            self._client_ctx = ssl.create_default_context(cafile=str(ca_file))
        else:
            raise ValueError("SimServer needs the cluster CA (ca_file or ca_pem) to verify node listeners")
        self._pool: dict[tuple[str, int], list[tuple[http.client.HTTPSConnection, float]]] = {}
        self._pool_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------

    def add_node(self, name: str, host: str, port: int, ssl_context: ssl.SSLContext) -> NodeListener:
        """Create and bind the listener of `name` (raises SimAddressError / PortInUseError)."""
        lst = NodeListener(self, name, host, port, ssl_context)
        lst.bind()
        self.listeners[name] = lst
        return lst

    def start(self) -> None:
        for lst in self.listeners.values():
            lst.start()

    def stop(self) -> None:
        for lst in self.listeners.values():
            lst.stop()
        with self._pool_lock:
            pools, self._pool = self._pool, {}
        for conns in pools.values():
            for c, _ in conns:
                c.close()

    def stop_listener(self, node: str) -> None:
        self._listener(node).stop()

    def start_listener(self, node: str) -> None:
        self._listener(node).start()

    def address(self, node: str) -> tuple[str, int]:
        return self._listener(node).address

    def _listener(self, node: str) -> NodeListener:
        try:
            return self.listeners[node]
        except KeyError:
            raise KeyError(f"no such node '{node}'") from None

    # -- one request ------------------------------------------------------------------------

    def serve(self, lst: NodeListener, request: wire.Request, conn: _Connection | None = None, *,
              accept_gzip: bool = False) -> tuple[wire.Response, str | None] | None:
        """Faults, a worker slot, the API, and the relay for ProxyTo. None = drop the connection."""
        faults = self.faults
        failure: wire.Response | None = None
        latency = 0.0
        if faults is not None:
            if faults.take_drop(lst.name, request.method, request.path):
                return None
            faults.wait_if_hung(lst.name, alive=(lambda: conn is None or conn._alive()))
            if conn is not None and not conn._alive():
                return None
            failure = faults.take_failure(lst.name, request.method, request.path)
            latency = faults.latency(lst.name)
        if failure is not None:
            return failure, None

        target: str | None = None
        with lst._lock:
            lst.waiting += 1
        try:
            lst.slots.acquire()
        finally:
            with lst._lock:
                lst.waiting -= 1
        try:
            with lst._lock:
                lst.active += 1
                if lst.active > lst.max_active:
                    lst.max_active = lst.active
            try:
                if latency > 0:
                    time.sleep(latency)   # a slow node: the worker is busy for longer
                result = self._handle(lst.name, request)
                if (faults is not None and not isinstance(result, wire.ProxyTo)
                        and faults.take_drop_answer(lst.name, request.method, request.path)):
                    return None   # carried out, answer lost (a connection dropped mid-response)
                if isinstance(result, wire.ProxyTo) and self.proxy_holds_worker:
                    target = result.node
                    return self.relay(target, request, accept_gzip=accept_gzip), target
            finally:
                with lst._lock:
                    lst.active -= 1
        finally:
            lst.slots.release()
        if isinstance(result, wire.ProxyTo):
            # pveproxy relays asynchronously (AnyEvent::HTTP): the worker is free meanwhile, and the
            # request takes a worker on the node that handles it.
            target = result.node
            return self.relay(target, request, accept_gzip=accept_gzip), target
        return result, None

    def _handle(self, node: str, request: wire.Request) -> wire.Response | wire.ProxyTo:
        if self.api is None:
            return error_response(501, f"Method '{request.method} {request.path}' not implemented")
        try:
            return self.api.handle(node, request)
        except Exception as e:  # noqa: BLE001 - AnyEvent.pm::handle_api2_request: error 501 $err
            traceback.print_exc(file=sys.stderr)
            return error_response(501, f"{type(e).__name__}: {e}")

    # -- proxying (AnyEvent.pm::proxy_request) ------------------------------------------------

    def relay(self, node: str, request: wire.Request, *, accept_gzip: bool = False) -> wire.Response:
        """Forward `request` to `node`'s listener; relay status, reason, headers and body unchanged.

        595 while connecting (the OS error as reason), 596 during TLS / sending / reading headers,
        597 while reading the body: AnyEvent::HTTP `$ae_error`, relayed by `proxy_request`.
        """
        try:
            host, port = self.address(node)
        except KeyError:
            return error_response(500, f"hostname lookup '{node}' failed - failed to get address info for: "
                                  f"{node}: Name or service not known")
        check_loopback(host)
        url = request.path + ("?" + request.query if request.query else "")
        h = request.headers
        headers: list[tuple[str, str]] = [
            ("Host", h.get("host", f"{host}:{port}")),
            ("PVEDisableProxy", "true"),
            ("PVEClientIP", request.client_ip),
        ]
        for key, name in (("authorization", "Authorization"), ("cookie", "Cookie"),
                          ("csrfpreventiontoken", "CSRFPreventionToken"), ("content-type", "Content-Type")):
            if key in h:
                headers.append((name, h[key]))
        if accept_gzip and self.compression:
            headers.append(("Accept-Encoding", "gzip"))
        body = request.body
        if request.method in ("POST", "PUT") or body:
            headers.append(("Content-Length", str(len(body))))

        for attempt in (0, 1):
            got = self._checkout(host, port)
            if isinstance(got, wire.Response):
                return got
            conn, reused = got
            try:
                conn.putrequest(request.method, url, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders(body if body else None)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                if reused and attempt == 0:
                    continue   # a pooled connection the peer had closed: retry once on a fresh one
                return wire.Response(596, "Unexpected end-of-file" if isinstance(e, http.client.RemoteDisconnected)
                                     else _os_reason(e))
            except (TimeoutError, socket.timeout):
                conn.close()
                return wire.Response(596, "Connection timed out")
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                return wire.Response(596, _os_reason(e))
            try:
                data = resp.read()
            except (TimeoutError, socket.timeout):
                conn.close()
                return wire.Response(597, "Connection timed out")
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                return wire.Response(597, _os_reason(e))
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _STD_HEADERS]
            if resp.will_close or conn.sock is None:
                conn.close()
            else:
                self._checkin(host, port, conn)
            return wire.Response(resp.status, resp.reason, data, out_headers)
        return wire.Response(596, "Unexpected end-of-file")   # not reached

    def _checkout(self, host: str, port: int) -> tuple[http.client.HTTPSConnection, bool] | wire.Response:
        key = (host, port)
        now = time.monotonic()
        max_idle = min(_POOL_IDLE, self.idle_timeout * 0.8)   # the peer closes idle connections
        with self._pool_lock:
            idle = self._pool.get(key)
            while idle:
                conn, since = idle.pop()
                if now - since < max_idle:
                    return conn, True
                conn.close()
        timeout = self.proxy_timeout
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except (TimeoutError, socket.timeout):
            return wire.Response(595, "Connection timed out")
        except OSError as e:
            return wire.Response(595, _os_reason(e))   # e.g. "Connection refused"
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self._client_ctx.wrap_socket(raw, server_hostname=host)
        except (TimeoutError, socket.timeout):
            raw.close()
            return wire.Response(596, "Connection timed out")
        except ssl.SSLError as e:
            raw.close()
            return wire.Response(596, first_line(str(e.reason or e)))
        except OSError as e:
            raw.close()
            return wire.Response(596, _os_reason(e))
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._client_ctx)
        conn.sock = tls
        return conn, False

    def _checkin(self, host: str, port: int, conn: http.client.HTTPSConnection) -> None:
        with self._pool_lock:
            idle = self._pool.setdefault((host, port), [])
            if len(idle) < _POOL_MAX:
                idle.append((conn, time.monotonic()))
                return
        conn.close()


def _os_reason(e: BaseException) -> str:
    errno_ = getattr(e, "errno", None)
    if errno_:
        return os.strerror(errno_)
    text = str(e) or type(e).__name__
    return first_line(text)
