"""One node's HTTPS listener and its connections: TLS, HTTP/1.1 keep-alive, request heads parsed and
limited as pve-http-server `AnyEvent.pm` does (header lines and size, POST size, known methods), and
the per-node worker pool (C14). What a request then gets is `server.SimServer.serve`'s business."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import ssl
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from . import wire
from .wire import first_line, render_response
from .wire import plain_error as error_response

KEEP_ALIVE_REQUESTS = 100   # pveproxy `keep_alive => 100`: requests per connection
MAX_HEADER_LINES = 64       # AnyEvent.pm: $limit_max_headers
MAX_HEADER_SIZE = 8 * 1024  # AnyEvent.pm: $limit_max_header_size
MAX_POST = 64 * 1024        # AnyEvent.pm: $limit_max_post -> 501 "for data too large"
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})  # AnyEvent.pm: $known_methods
_REQUEST_LINE = re.compile(rb"(\S+) (\S+) HTTP/(\d+)\.(\d+)")   # AnyEvent.pm::push_request_header
_PASSWORD_IN_QUERY = re.compile(r"(?i)((?:^|[&;])(?:password|new-password)=)[^&;]*")
_HEADER_LINE = re.compile(rb"([^:\s]+)\s*:\s*(.*)")              # AnyEvent.pm::unshift_read_header


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

class SimAddressError(ValueError):
    """A bind or proxy address outside 127.0.0.0/8."""


class PortInUseError(OSError):
    """The address a listener should bind is taken (`str()` is the one-line message)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class ControlHandler(Protocol):
    def handle(self, local_node: str, request: wire.Request) -> tuple[wire.Response, Callable[[], None] | None]: ...


class Serving(Protocol):
    """What a listener needs of the server behind it (`server.SimServer`)."""

    workers: int
    compression: bool
    idle_timeout: float
    requests: RequestLog
    control: ControlHandler | None

    def serve(self, lst: NodeListener, request: wire.Request, conn: _Connection | None = None, *,
              accept_gzip: bool = False) -> tuple[wire.Response, str | None] | None: ...


class NodeListener:
    """pveproxy of one node: a loopback TLS listener plus its worker slots."""

    def __init__(self, server: Serving, name: str, host: str, port: int, ssl_context: ssl.SSLContext) -> None:
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

    def _next_head(self, rfile: Any) -> tuple[str, str, str, dict[str, str]] | None:
        """The next request head; None when the connection is done (closed, or a bad head answered)."""
        try:
            return self._read_head(rfile)
        except _BadRequest as e:
            self._write(render_response(e.status, e.message, b"", keep_alive=False))
            return None

    # -- plain HTTP: redirect to https (AnyEvent.pm::ensure_tls_connection) ---------------------

    def _serve_plain(self) -> None:
        rfile = self.sock.makefile("rb")
        try:
            head = self._next_head(rfile)
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
                head = self._next_head(rfile)
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
                                 client=self.client, forwarded=forwarded, proxied_to=proxied_to,
                                 note="truncated" if resp.truncate else None)
                if resp.truncate:   # a fault: the head and part of the body, then the connection closes
                    self._write(_truncated(data))
                    return
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


def _truncated(data: bytes) -> bytes:
    """The head of a rendered answer and half its body (at least one byte short of the whole);
    an answer without a body loses the second half of its head instead."""
    head_end = data.find(b"\r\n\r\n") + 4
    body_len = len(data) - head_end
    if head_end < 4 or body_len == 0:
        return data[: len(data) // 2]
    return data[: head_end + body_len // 2]


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
