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

import http.client
import os
import socket
import ssl
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Protocol

from . import wire
from .listener import (
    ControlHandler,
    NodeListener,
    PortInUseError,
    RequestLog,
    SimAddressError,
    _Connection,
    check_loopback,
)
from .wire import _STD_HEADERS, first_line
from .wire import plain_error as error_response

__all__ = ["ControlHandler", "Handler", "NodeListener", "PortInUseError", "RequestLog", "SimAddressError", "SimServer",
           "check_loopback", "error_response"]

if TYPE_CHECKING:
    from .faults import Faults

MAX_WORKERS = 3             # pveproxy/pvedaemon `max_workers => 3` (C14)
IDLE_TIMEOUT = 5.0          # AnyEvent.pm::new: `$self->{timeout} = 5` (handle inactivity timeout)
PROXY_TIMEOUT = 30.0        # AnyEvent.pm::proxy_request: `timeout => 30`
                            # for a 147 KB body and is 3 % larger - clients cannot tell the difference
_POOL_IDLE = 4.0            # drop pooled proxy connections before the peer's 5 s idle timeout
_POOL_MAX = 8



class Handler(Protocol):
    def handle(self, local_node: str, request: wire.Request) -> wire.Response | wire.ProxyTo: ...


# ----------------------------------------------------------------------------------------------
# Rendering responses


# ----------------------------------------------------------------------------------------------
# Listeners


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
        self._stopped = False

    # -- lifecycle --------------------------------------------------------------------------

    def add_node(self, name: str, host: str, port: int, ssl_context: ssl.SSLContext) -> NodeListener:
        """Create and bind the listener of `name` (raises SimAddressError / PortInUseError)."""
        lst = NodeListener(self, name, host, port, ssl_context)
        lst.bind()
        self.listeners[name] = lst
        return lst

    def start(self) -> None:
        self._stopped = False
        for lst in self.listeners.values():
            lst.start()

    def stop(self) -> None:
        for lst in self.listeners.values():
            lst.stop()
        with self._pool_lock:
            # a relay still waiting for a hung node when the server stops closes its connection when
            # it gets an answer (_checkin), instead of keeping it in a pool nobody closes any more
            self._stopped = True
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
            idle = self._pool.setdefault((host, port), []) if not self._stopped else None
            if idle is not None and len(idle) < _POOL_MAX:
                idle.append((conn, time.monotonic()))
                return
        conn.close()


def _os_reason(e: BaseException) -> str:
    errno_ = getattr(e, "errno", None)
    if errno_:
        return os.strerror(errno_)
    text = str(e) or type(e).__name__
    return first_line(text)
