"""The simulator's HTTPS listeners over real sockets: TLS, headers, keep-alive, workers, proxying.

Tests never assert wall-clock times; ordering is observed with events and counters.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pvectl.sim import wire
from pvectl.sim.cluster import Cluster
from pvectl.sim.server import SimAddressError, SimServer, check_loopback


def _wait_for(cond: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Stub:
    """A stand-in Api: records requests, can block per path, proxies `/nodes/<other>/...`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, wire.Request]] = []
        self.gates: dict[str, threading.Event] = {}
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.inside = 0
        self.responses: dict[str, wire.Response] = {}

    def handle(self, local_node: str, request: wire.Request) -> wire.Response | wire.ProxyTo:
        with self.lock:
            self.requests.append((local_node, request))
        parts = request.path.split("/")
        if len(parts) > 4 and parts[3] == "nodes" and parts[4] != local_node and "pvedisableproxy" not in request.headers:
            return wire.ProxyTo(parts[4])
        gate = self.gates.get(request.path)
        if gate is not None:
            with self.lock:
                self.inside += 1
                self.events.append(f"enter {request.query}")
            gate.wait(30)
            with self.lock:
                self.inside -= 1
                self.events.append(f"leave {request.query}")
        if request.path in self.responses:
            return self.responses[request.path]
        body = json.dumps({"data": {"node": local_node, "path": request.path, "query": request.query,
                                    "body": request.body.decode()}}).encode()
        return wire.Response(200, "OK", body)


@pytest.fixture
def stub_cluster() -> Iterator[tuple[Cluster, Stub]]:
    stub = Stub()
    with Cluster(nodes=3, vms=2, templates=1, bind="127.0.0.1", port=0, api_factory=lambda backend: stub) as c:
        yield c, stub


@pytest.fixture
def sim() -> Iterator[Cluster]:
    with Cluster(nodes=3, vms=6, templates=1, bind="127.0.0.1", port=0) as c:
        yield c


def _conn(c: Cluster, node: str = "pve1", timeout: float = 20.0) -> http.client.HTTPSConnection:
    host, port = c.nodes[node]
    ctx = ssl.create_default_context(cafile=str(c.ca_path))
    return http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)


def _auth(c: Cluster) -> dict[str, str]:
    return {"Authorization": f"PVEAPIToken={c.token_id}={c.token_secret}"}


def _get(c: Cluster, path: str, node: str = "pve1", method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn = _conn(c, node)
    try:
        conn.request(method, path, body=body, headers={**_auth(c), **(headers or {})})
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


# -- TLS and the header set -------------------------------------------------------------------


def test_tls_is_verified_with_the_written_ca_and_headers_match_pveproxy(sim: Cluster) -> None:
    resp, body = _get(sim, "/api2/json/version")
    assert resp.status == 200 and resp.reason == "OK"
    names = [k for k, _ in resp.getheaders()]
    # HTTP::Headers order as pveproxy writes it (AnyEvent.pm::response)
    assert names == ["Cache-Control", "Connection", "Date", "Pragma", "Server", "Content-Length",
                     "Content-Type", "Expires"]
    assert resp.getheader("Server") == "pve-api-daemon/3.0"
    assert resp.getheader("Cache-Control") == "max-age=0"
    assert resp.getheader("Pragma") == "no-cache"
    assert resp.getheader("Expires") == resp.getheader("Date")
    assert resp.getheader("Content-Type") == "application/json;charset=UTF-8"
    assert resp.getheader("Connection") == "Keep-Alive"
    assert int(resp.getheader("Content-Length")) == len(body)
    assert "version" in json.loads(body)["data"]


def test_certificate_names_node_and_untrusted_client_fails(sim: Cluster) -> None:
    host, port = sim.nodes["pve2"]
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    with socket.create_connection((host, port)) as raw, ctx.wrap_socket(raw, server_hostname="pve2") as tls:
        cert = tls.getpeercert()
    sans = {v for _, v in cert["subjectAltName"]}
    assert {"pve2", "localhost", host} <= sans
    issuer = dict(x[0] for x in cert["issuer"])
    assert issuer["commonName"] == "Proxmox Virtual Environment"
    assert issuer["organizationName"] == "PVE Cluster Manager CA"
    plain = ssl.create_default_context()   # system CAs only
    with socket.create_connection((host, port)) as raw, pytest.raises(ssl.SSLCertVerificationError):
        plain.wrap_socket(raw, server_hostname=host)


def test_error_reason_is_first_line_and_connection_closes(stub_cluster: tuple[Cluster, Stub]) -> None:
    c, stub = stub_cluster
    stub.responses["/api2/json/fail"] = wire.Response(
        500, "VM 100 is running - destroy failed\nsecond line", b'{"data":null,"message":"x\\n"}')
    conn = _conn(c)
    conn.request("GET", "/api2/json/fail")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 500
    assert resp.reason == "VM 100 is running - destroy failed"
    assert resp.getheader("Connection") == "close"   # AnyEvent.pm: keep_alive = 0 if code >= 400
    assert resp.will_close


def test_keep_alive_serves_many_requests_on_one_connection(stub_cluster: tuple[Cluster, Stub]) -> None:
    c, _ = stub_cluster
    conn = _conn(c)
    conn.request("GET", "/api2/json/a")
    conn.getresponse().read()
    sock = conn.sock
    for i in range(5):
        conn.request("GET", f"/api2/json/b?i={i}")
        r = conn.getresponse()
        assert json.loads(r.read())["data"]["query"] == f"i={i}"
    assert conn.sock is sock
    conn.close()


def test_gzip_when_client_accepts_it(stub_cluster: tuple[Cluster, Stub]) -> None:
    c, stub = stub_cluster
    big = json.dumps({"data": ["x" * 50] * 100}).encode()
    stub.responses["/api2/json/big"] = wire.Response(200, "OK", big)
    resp, body = _get(c, "/api2/json/big", headers={"Accept-Encoding": "gzip"})
    assert resp.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(body) == big
    resp, body = _get(c, "/api2/json/big")
    assert resp.getheader("Content-Encoding") is None and body == big


def test_wire_level_errors_like_pve_http_server(stub_cluster: tuple[Cluster, Stub]) -> None:
    c, _ = stub_cluster
    resp, _ = _get(c, "/api2/json/version", method="PATCH")
    assert (resp.status, resp.reason) == (501, "method 'PATCH' not available")
    resp, _ = _get(c, "/api2/json/version", method="GET", body=b"a=b")
    assert (resp.status, resp.reason) == (501, "Unexpected content for method 'GET'")
    resp, _ = _get(c, "/api2/json/nodes/pve1/qemu", method="POST", body=b"x" * (64 * 1024 + 1))
    assert (resp.status, resp.reason) == (501, "for data too large")
    conn = _conn(c)
    conn.putrequest("POST", "/api2/json/nodes/pve1/qemu")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    assert (r.status, r.reason) == (501, "chunked transfer encoding not supported")
    conn.close()


def test_request_reaches_api_as_wire_request(stub_cluster: tuple[Cluster, Stub]) -> None:
    c, stub = stub_cluster
    resp, body = _get(c, "/api2/json/nodes/pve1/qemu?full=1", method="POST", body=b"vmid=100&name=a",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 200
    node, req = stub.requests[-1]
    assert node == "pve1" and req.method == "POST" and req.path == "/api2/json/nodes/pve1/qemu"
    assert req.query == "full=1" and req.body == b"vmid=100&name=a"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.headers["authorization"].startswith("PVEAPIToken=")
    assert req.client_ip == "127.0.0.1"


def test_plain_http_on_the_tls_port_is_redirected(stub_cluster: tuple[Cluster, Stub]) -> None:
    c, _ = stub_cluster
    host, port = c.nodes["pve1"]
    for method, status, reason in (("GET", 301, "Moved Permanently"), ("POST", 308, "Permanent Redirect")):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request(method, "/api2/json/version?x=1", headers={"Host": f"{host}:{port}"})
        r = conn.getresponse()
        r.read()
        assert (r.status, r.reason) == (status, reason)
        assert r.getheader("Location") == f"https://{host}:{port}/api2/json/version?x=1"
        conn.close()


def test_idle_keep_alive_connection_is_closed_by_the_server() -> None:
    stub = Stub()
    with Cluster(nodes=1, vms=0, templates=0, bind="127.0.0.1", port=0, idle_timeout=0.2,
                 api_factory=lambda b: stub) as c:
        conn = _conn(c)
        conn.request("GET", "/api2/json/a")
        conn.getresponse().read()
        assert conn.sock is not None
        conn.sock.settimeout(10)
        assert conn.sock.recv(1) == b""   # EOF once the idle timeout passed
        conn.close()


# -- the worker pool --------------------------------------------------------------------------


def test_fourth_concurrent_request_waits_for_a_worker(stub_cluster: tuple[Cluster, Stub]) -> None:
    c, stub = stub_cluster
    gate = threading.Event()
    stub.gates["/api2/json/slow"] = gate
    lst = c.server.listeners["pve1"]
    results: dict[str, int] = {}

    def call(i: int) -> None:
        conn = _conn(c)
        conn.request("GET", f"/api2/json/slow?{i}")
        results[str(i)] = conn.getresponse().status
        conn.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads[:3]:
        t.start()
    _wait_for(lambda: stub.inside == 3, "three requests inside the API")
    threads[3].start()
    _wait_for(lambda: lst.waiting == 1, "the fourth request to queue for a worker")
    assert stub.inside == 3
    with stub.lock:
        entered = [e for e in stub.events if e.startswith("enter")]
    assert entered and "enter 3" not in entered
    # another node's workers are independent
    resp, _ = _get(c, "/api2/json/other", node="pve2")
    assert resp.status == 200
    gate.set()
    for t in threads:
        t.join(20)
    assert results == {"0": 200, "1": 200, "2": 200, "3": 200}
    events = stub.events
    # the fourth entered only after one of the first three left
    assert events.index("enter 3") > min(events.index(f"leave {i}") for i in range(3))
    assert lst.max_active == 3


def test_response_delay_does_not_hold_a_worker(stub_cluster: tuple[Cluster, Stub]) -> None:
    c, stub = stub_cluster
    stub.responses["/api2/json/denied"] = wire.Response(401, "No ticket", delay=2.0)
    order: list[str] = []
    lock = threading.Lock()

    def call(path: str) -> None:
        r, _ = _get(c, path)
        with lock:
            order.append(f"{r.status}")

    slow = [threading.Thread(target=call, args=("/api2/json/denied",)) for _ in range(4)]
    for t in slow:
        t.start()
    _wait_for(lambda: sum(1 for n, r in stub.requests if r.path == "/api2/json/denied") == 4,
              "four 401s handled")
    call("/api2/json/fast")   # would need a worker if the delayed 401s held them
    for t in slow:
        t.join(20)
    assert order[0] == "200" and order[1:] == ["401"] * 4


# -- proxying between nodes -------------------------------------------------------------------


def test_proxy_relays_request_and_answer_unchanged(stub_cluster: tuple[Cluster, Stub]) -> None:
    c, stub = stub_cluster
    stub.responses["/api2/json/nodes/pve2/qemu/100"] = wire.Response(
        500, "VM 100 is running - destroy failed", b'{"data":null,"message":"VM 100 is running - destroy failed\\n"}',
        [("X-Extra", "kept")])
    resp, body = _get(c, "/api2/json/nodes/pve2/qemu/100?purge=1", method="DELETE")
    assert (resp.status, resp.reason) == (500, "VM 100 is running - destroy failed")
    assert resp.getheader("X-Extra") == "kept"
    assert json.loads(body)["message"] == "VM 100 is running - destroy failed\n"
    assert resp.getheader("Server") == "pve-api-daemon/3.0"
    handled = [(n, r) for n, r in stub.requests if r.path == "/api2/json/nodes/pve2/qemu/100"]
    assert [n for n, _ in handled] == ["pve1", "pve2"]
    fwd = handled[1][1]
    assert fwd.method == "DELETE" and fwd.query == "purge=1"
    assert fwd.headers["pvedisableproxy"] == "true"
    assert fwd.headers["authorization"] == _auth(c)["Authorization"]
    # POST body and content type travel too
    resp, body = _get(c, "/api2/json/nodes/pve3/qemu/100/config", method="POST", body=b"cores=2",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    data = json.loads(body)["data"]
    assert resp.status == 200 and data["node"] == "pve3" and data["body"] == "cores=2"
    log = c.requests_log()
    entry = [e for e in log if e["node"] == "pve1" and e["path"].endswith("/pve3/qemu/100/config")][0]
    assert entry["proxied_to"] == "pve3" and entry["status"] == 200
    assert any(e["node"] == "pve3" and e["forwarded"] for e in log)


def test_proxy_595_when_target_listener_is_down_then_recovers(sim: Cluster) -> None:
    resp, _ = _get(sim, "/api2/json/nodes/pve2/status")
    assert resp.status == 200      # also leaves a pooled pve1 -> pve2 connection behind
    sim.stop_listener("pve2")
    resp, body = _get(sim, "/api2/json/nodes/pve2/status")
    assert (resp.status, resp.reason, body) == (595, "Connection refused", b"")
    sim.start_listener("pve2")
    resp, _ = _get(sim, "/api2/json/nodes/pve2/status")
    assert resp.status == 200


def test_a_relay_that_ends_after_the_server_stopped_closes_its_connection(sim: Cluster) -> None:
    """A relay still waiting for a hung node when the simulator stops gets its answer afterwards: its
    connection is closed, not kept in a pool that nobody closes any more (a leaked socket)."""
    host, port = sim.nodes["pve2"]
    got = sim.server._checkout(host, port)            # what a relay holds while it waits
    assert not isinstance(got, wire.Response)
    conn, _ = got
    assert conn.sock is not None
    sim.server.stop()
    sim.server._checkin(host, port, conn)             # its answer came in after the stop
    assert conn.sock is None
    assert sim.server._pool == {}


def test_proxy_596_when_target_does_not_answer() -> None:
    with Cluster(nodes=2, vms=2, templates=0, bind="127.0.0.1", port=0, proxy_timeout=0.3) as c:
        c.hang_node("pve2")
        resp, body = _get(c, "/api2/json/nodes/pve2/status")
        assert (resp.status, resp.reason, body) == (596, "Connection timed out", b"")
        c.unhang_node("pve2")
        resp, _ = _get(c, "/api2/json/nodes/pve2/status")
        assert resp.status == 200


def test_real_api_proxies_node_requests(sim: Cluster) -> None:
    resp, body = _get(sim, "/api2/json/nodes/pve3/qemu")
    assert resp.status == 200
    assert all(vm["vmid"] for vm in json.loads(body)["data"])
    assert any(e["node"] == "pve3" and e["forwarded"] for e in sim.requests_log())


# -- loopback only ----------------------------------------------------------------------------


@pytest.mark.parametrize("addr", ["0.0.0.0", "10.1.2.3", "::1", "example.com", "128.0.0.1"])
def test_non_loopback_addresses_are_refused(addr: str) -> None:
    with pytest.raises(SimAddressError):
        check_loopback(addr)
    with pytest.raises(SimAddressError):
        Cluster(bind=addr, port=0)


def test_server_refuses_to_bind_outside_loopback(tmp_path: Any) -> None:
    from pvectl.sim import certs

    ca = certs.ensure_ca(tmp_path)
    srv = SimServer(Stub(), ca_pem=ca.cert_pem)
    nc = certs.ensure_node_cert(tmp_path, ca, "pve1", "127.0.0.1")
    with pytest.raises(SimAddressError):
        srv.add_node("pve1", "0.0.0.0", 0, certs.server_context(nc))
    assert check_loopback("127.0.1.7") == "127.0.1.7" and check_loopback("localhost") == "127.0.0.1"


def test_default_addressing_gives_each_node_its_own_loopback_address() -> None:
    stub = Stub()
    with Cluster(nodes=3, vms=0, templates=0, port=0, api_factory=lambda b: stub) as c:
        assert [h for h, _ in c.nodes.values()] == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
        resp, body = _get(c, "/api2/json/x", node="pve3")
        assert resp.status == 200 and json.loads(body)["data"]["node"] == "pve3"
