"""Transport against a small threaded HTTPS server built here (CA + server cert with IP SAN 127.0.0.1)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import pvectl.http as phttp
from pvectl.config import Node, Tls
from pvectl.errors import (AuthError, Locked, NodeUnreachable, NotFound, ParameterError, TlsError,
                           register_secret)
from pvectl.http import Result, Transport, encode_params

SECRET = "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"
AUTH = f"PVEAPIToken=root@pam!pvectl={SECRET}"


# -- certificates -----------------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = _ca("pve-root-ca test")
    _, other_ca = _ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("pve1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("pve1")]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "other-ca.pem").write_bytes(other_ca.public_bytes(pem))
    (d / "cert.pem").write_bytes(cert.public_bytes(pem))
    (d / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    h = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return {"dir": d, "ca": str(d / "ca.pem"), "other_ca": str(d / "other-ca.pem"),
            "fp": ":".join(h[i:i + 2] for i in range(0, 64, 2))}


# -- server -----------------------------------------------------------------------------------------

class FakePVE:
    """A threaded HTTPS server; `script` maps (method, path) to a list of responses used in turn
    (the last one repeats). A response is (status, reason, body) or a callable(handler)."""

    def __init__(self, pki: dict[str, Any]) -> None:
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.script: dict[tuple[str, str], list[Any]] = {}
        self.close_after_response = False
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                outer.connections += 1

            def log_message(self, *a: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                outer.requests.append({"method": self.command, "path": path, "query": query, "body": body,
                                       "headers": dict(self.headers)})
                seq = outer.script.get((self.command, path)) or [(200, "OK", {"data": None})]
                resp = seq.pop(0) if len(seq) > 1 else seq[0]
                if callable(resp):
                    resp(self)
                    return
                status, reason, payload = resp
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status, reason)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if outer.close_after_response:
                    # Close without "Connection: close", like an idle keep-alive timeout.
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki["dir"] / "cert.pem"), str(pki["dir"] / "key.pem"))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(pki: dict[str, Any]) -> Any:
    s = FakePVE(pki)
    yield s
    s.stop()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_opened: list[Transport] = []


@pytest.fixture(autouse=True)
def _close_transports() -> Any:
    """Every Transport a test opens is closed after it (its pooled connections are sockets)."""
    yield
    while _opened:
        _opened.pop().close()


def opened(t: Transport) -> Transport:
    _opened.append(t)
    return t


def make(nodes: list[Node], tls: Tls, **kw: Any) -> Transport:
    kw.setdefault("backoff", 0.01)
    return opened(Transport(nodes, tls=tls, auth=lambda: AUTH, **kw))


def ca_tls(pki: dict[str, Any]) -> Tls:
    return Tls(ca_file=pki["ca"])


# -- tests ------------------------------------------------------------------------------------------

def test_encode_params_escapes_equals_plus_percent_and_booleans() -> None:
    assert encode_params({"ipconfig0": "ip=dhcp"}) == "ipconfig0=ip%3Ddhcp"
    assert encode_params({"size": "+10G", "net0": "virtio,bridge=vmbr0"}) == "size=%2B10G&net0=virtio%2Cbridge%3Dvmbr0"
    assert encode_params({"sshkeys": "ssh-ed25519%20AAAA", "full": True, "x": None, "start": False}) == \
        "sshkeys=ssh-ed25519%2520AAAA&full=1&start=0"
    assert encode_params({"a": "x&y;z"}) == "a=x%26y%3Bz"


def test_ca_verification_ok_get_json_and_headers(server: FakePVE, pki: dict[str, Any]) -> None:
    server.script[("GET", "/api2/json/version")] = [(200, "OK", {"data": {"version": "9.1.1"}})]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    assert t.get("/version") == {"version": "9.1.1"}
    h = server.requests[0]["headers"]
    assert h["Authorization"] == AUTH and h["Accept"] == "application/json"
    t.close()


def test_total_is_returned_with_raw(server: FakePVE, pki: dict[str, Any]) -> None:
    path = "/api2/json/nodes/pve1/tasks/UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:/log"
    server.script[("GET", path)] = [(200, "OK", {"data": [{"n": 1, "t": "TASK OK"}], "total": 1})]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    r = t.request("GET", "nodes/pve1/tasks/UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:/log",
                  {"start": 0, "limit": 0}, raw=True)
    assert isinstance(r, Result)
    assert (r.data, r.total, r.node, r.status) == ([{"n": 1, "t": "TASK OK"}], 1, "pve1", 200)
    assert server.requests[0]["query"] == "start=0&limit=0"


def test_wrong_ca_raises_tls_error(server: FakePVE, pki: dict[str, Any]) -> None:
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], Tls(ca_file=pki["other_ca"]))
    with pytest.raises(TlsError) as ei:
        t.get("/version")
    assert str(ei.value).startswith(f"TLS verification of pve1 (127.0.0.1:{server.port}) failed: ")
    assert "certificate" in str(ei.value)
    assert ei.value.exit_code == 5
    assert server.requests == []


def test_hostname_is_checked_against_node_host(server: FakePVE, pki: dict[str, Any]) -> None:
    # The cert carries IP 127.0.0.1 and DNS pve1, not "localhost".
    t = make([Node(name="pve1", host="localhost", port=server.port)], ca_tls(pki))
    with pytest.raises(TlsError, match="Hostname mismatch|hostname"):
        t.get("/version")


def test_pin_ok(server: FakePVE, pki: dict[str, Any]) -> None:
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], Tls(fingerprints={"pve1": pki["fp"]}))
    assert t.get("/version") is None


def test_pin_mismatch_message(server: FakePVE, pki: dict[str, Any]) -> None:
    wrong = ":".join(["AB"] * 32)
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], Tls(fingerprints={"pve1": wrong}))
    with pytest.raises(TlsError) as ei:
        t.get("/version")
    assert str(ei.value) == (f"TLS fingerprint mismatch for pve1 (127.0.0.1:{server.port}): "
                             f"pinned {wrong}, got {pki['fp']}")
    assert ei.value.exit_code == 5 and ei.value.pinned == wrong and ei.value.got == pki["fp"]
    assert server.requests == []  # nothing (no token) was sent to the impostor


def test_insecure_warns_once_per_transport(server: FakePVE) -> None:
    warnings: list[str] = []
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], Tls(insecure=True), warn=warnings.append)
    t.get("/version")
    t.get("/version")
    assert len(warnings) == 1 and "TLS verification is disabled (tls.insecure: true)" in warnings[0]


def test_insecure_warning_default_goes_to_stderr(server: FakePVE, capsys: pytest.CaptureFixture[str]) -> None:
    with Transport([Node(name="pve1", host="127.0.0.1", port=server.port)], tls=Tls(insecure=True)) as t:
        t.get("/version")
    assert capsys.readouterr().err.startswith("pvectl: warning: TLS verification is disabled")


def test_system_store_rejects_private_ca(server: FakePVE) -> None:
    t = opened(Transport([Node(name="pve1", host="127.0.0.1", port=server.port)], tls=None))
    with pytest.raises(TlsError):
        t.get("/version")


def test_failover_to_second_node_when_first_refuses(server: FakePVE, pki: dict[str, Any]) -> None:
    dead = _free_port()
    logs: list[str] = []
    t = make([Node(name="pve1", host="127.0.0.1", port=dead), Node(name="pve2", host="127.0.0.1", port=server.port)],
             ca_tls(pki), log=logs.append)
    assert t.post("/nodes/pve2/qemu/100/status/start") is None  # a write may fail over: nothing was sent
    assert t.dead_nodes == {"pve1": "connection refused"}
    t.get("/version")
    assert [r["method"] for r in server.requests] == ["POST", "GET"]
    assert sum("pve1" in line and "connect failed" in line for line in logs) == 1  # skipped afterwards
    assert all(SECRET not in line for line in logs)


def test_node_addressed_request_goes_there_first(pki: dict[str, Any]) -> None:
    a, b = FakePVE(pki), FakePVE(pki)
    try:
        t = make([Node(name="pve1", host="127.0.0.1", port=a.port), Node(name="pve2", host="127.0.0.1", port=b.port)],
                 ca_tls(pki))
        t.get("/nodes/pve2/status", node="pve2")
        t.get("/cluster/status")
        assert len(b.requests) == 1 and len(a.requests) == 1
    finally:
        a.stop()
        b.stop()


def test_all_nodes_down_message_names_every_node(pki: dict[str, Any]) -> None:
    p1, p2 = _free_port(), _free_port()
    t = make([Node(name="pve1", host="127.0.0.1", port=p1), Node(name="pve2", host="127.0.0.1", port=p2)], ca_tls(pki))
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/version")
    assert str(ei.value) == (f"no node reachable: pve1 (127.0.0.1:{p1}: connection refused), "
                             f"pve2 (127.0.0.1:{p2}: connection refused)")
    assert ei.value.exit_code == 5 and ei.value.retryable
    assert ei.value.attempts == [("pve1", f"127.0.0.1:{p1}: connection refused"),
                                 ("pve2", f"127.0.0.1:{p2}: connection refused")]
    with pytest.raises(NodeUnreachable, match="^no node reachable: pve1 .*pve2 "):  # both remembered dead
        t.get("/version")


def test_get_retries_on_595_then_succeeds(server: FakePVE, pki: dict[str, Any]) -> None:
    path = "/api2/json/nodes/pve2/status"
    server.script[("GET", path)] = [(595, "Connection refused", b""), (596, "Unexpected end-of-file", b""),
                                    (200, "OK", {"data": {"uptime": 5}})]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    assert t.get("/nodes/pve2/status") == {"uptime": 5}
    assert len(server.requests) == 3


def test_get_595_exhausted_raises_node_unreachable(server: FakePVE, pki: dict[str, Any]) -> None:
    server.script[("GET", "/api2/json/nodes/pve2/status")] = [(595, "Connection refused", b"")]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), retries=2)
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/nodes/pve2/status")
    assert str(ei.value) == "node pve2 unreachable (via pve1): 595 Connection refused"
    assert len(server.requests) == 3


def test_post_is_not_retried_on_595_or_500(server: FakePVE, pki: dict[str, Any]) -> None:
    server.script[("POST", "/api2/json/nodes/pve2/qemu/100/status/start")] = [(595, "Connection refused", b"")]
    server.script[("POST", "/api2/json/nodes/pve1/qemu/101/status/start")] = [
        (500, "VM is locked (clone)", {"data": None, "message": "VM is locked (clone)\n"})]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    with pytest.raises(NodeUnreachable):
        t.post("/nodes/pve2/qemu/100/status/start")
    with pytest.raises(Locked) as ei:
        t.post("/nodes/pve1/qemu/101/status/start")
    assert ei.value.lock == "clone"
    assert len(server.requests) == 2


def test_get_500_is_not_retried(server: FakePVE, pki: dict[str, Any]) -> None:
    server.script[("GET", "/api2/json/nodes/pve1/qemu/117/config")] = [
        (500, "Configuration file 'nodes/pve1/qemu-server/117.conf' does not exist", {"data": None})]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    with pytest.raises(NotFound) as ei:
        t.get("/nodes/pve1/qemu/117/config")
    assert str(ei.value) == "Configuration file 'nodes/pve1/qemu-server/117.conf' does not exist"
    assert ei.value.node == "pve1" and ei.value.method == "GET"
    assert len(server.requests) == 1


def test_401_is_auth_error_and_never_contains_secret(server: FakePVE, pki: dict[str, Any]) -> None:
    register_secret(SECRET)
    server.script[("GET", "/api2/json/version")] = [(401, f"Authentication failed! {SECRET}", b"")]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    with pytest.raises(AuthError) as ei:
        t.get("/version")
    assert SECRET not in str(ei.value) and SECRET not in repr(ei.value.to_dict())
    assert ei.value.exit_code == 5
    assert len(server.requests) == 1  # no failover or retry with a rejected token


def test_keep_alive_reuses_one_connection(server: FakePVE, pki: dict[str, Any]) -> None:
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    for _ in range(5):
        t.get("/version")
    t.put("/nodes/pve1/qemu/100/config", {"cores": 2})
    assert server.connections == 1 and t.connections_opened == 1
    t.close()


def test_form_body_is_encoded_correctly(server: FakePVE, pki: dict[str, Any]) -> None:
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    t.post("/nodes/pve1/qemu/101/config", {"ipconfig0": "ip=dhcp", "net0": "virtio,bridge=vmbr0"})
    req = server.requests[0]
    assert req["body"] == b"ipconfig0=ip%3Ddhcp&net0=virtio%2Cbridge%3Dvmbr0"
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert req["query"] == ""


def test_delete_params_go_in_query(server: FakePVE, pki: dict[str, Any]) -> None:
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    t.delete("/nodes/pve1/qemu/101", {"purge": True, "destroy-unreferenced-disks": 0})
    assert server.requests[0]["query"] == "purge=1&destroy-unreferenced-disks=0"
    assert server.requests[0]["body"] == b""


def test_400_parameter_error(server: FakePVE, pki: dict[str, Any]) -> None:
    server.script[("PUT", "/api2/json/nodes/pve1/qemu/101/resize")] = [
        (400, "Parameter verification failed.",
         {"data": None, "message": "Parameter verification failed.\n",
          "errors": {"size": "value does not match the regex pattern"}})]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    with pytest.raises(ParameterError) as ei:
        t.put("/nodes/pve1/qemu/101/resize", {"disk": "scsi0", "size": "+10G"})
    assert ei.value.errors == {"size": "value does not match the regex pattern"}
    assert server.requests[0]["body"] == b"disk=scsi0&size=%2B10G"


def test_idle_connection_closed_by_server_is_replaced_before_a_write(server: FakePVE, pki: dict[str, Any]) -> None:
    server.close_after_response = True
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    t.get("/version")
    import time
    time.sleep(0.1)
    t.post("/nodes/pve1/qemu/100/status/start")  # detected as dropped before sending: no error
    assert [r["method"] for r in server.requests] == ["GET", "POST"]
    assert server.connections == 2


def test_stale_keepalive_get_reconnects_but_write_is_uncertain(server: FakePVE, pki: dict[str, Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Make the dropped-connection check miss the close (the race where the server closes just as we send).
    monkeypatch.setattr(phttp.pool, "dropped", lambda sock: False)
    server.close_after_response = True
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    t.get("/version")
    import time
    time.sleep(0.1)
    assert t.get("/version") is None  # transparently reconnected
    time.sleep(0.1)
    with pytest.raises(NodeUnreachable) as ei:
        t.post("/nodes/pve1/qemu/100/status/start")
    assert ei.value.uncertain and not ei.value.retryable
    assert "may or may not have been applied" in str(ei.value)
    assert [r["method"] for r in server.requests] == ["GET", "GET"]  # the POST was never resent


def test_write_whose_connection_drops_after_sending_is_not_resent(server: FakePVE, pki: dict[str, Any]) -> None:
    def hang_up(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True  # read the request, answer nothing

    server.script[("POST", "/api2/json/nodes/pve1/qemu/9000/clone")] = [hang_up]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    with pytest.raises(NodeUnreachable) as ei:
        t.post("/nodes/pve1/qemu/9000/clone", {"newid": 101})
    assert ei.value.uncertain
    assert len(server.requests) == 1


def test_read_timeout_on_get_fails_over(pki: dict[str, Any]) -> None:
    slow, fast = FakePVE(pki), FakePVE(pki)
    gate = threading.Event()
    slow.script[("GET", "/api2/json/version")] = [lambda h: gate.wait(2)]
    try:
        t = make([Node(name="pve1", host="127.0.0.1", port=slow.port),
                  Node(name="pve2", host="127.0.0.1", port=fast.port)], ca_tls(pki), read_timeout=0.2, retries=0)
        assert t.get("/version") is None
        assert len(fast.requests) == 1
    finally:
        gate.set()
        slow.stop()
        fast.stop()


def test_auth_callable_is_called_lazily_once(server: FakePVE, pki: dict[str, Any]) -> None:
    calls: list[int] = []

    def auth() -> str:
        calls.append(1)
        return AUTH

    with Transport([Node(name="pve1", host="127.0.0.1", port=server.port)], tls=ca_tls(pki), auth=auth) as t:
        assert calls == []
        t.get("/version")
        t.get("/version")
    assert calls == [1]


def test_path_is_quoted_but_upid_chars_kept(server: FakePVE, pki: dict[str, Any]) -> None:
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    t.get("/nodes/pve1/tasks/UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam!tok:/status")
    assert server.requests[0]["path"] == \
        "/api2/json/nodes/pve1/tasks/UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam!tok:/status"


# -- which node a failure is blamed on ----------------------------------------------------------------

def test_proxy_595_marks_the_target_not_the_relay(server: FakePVE, pki: dict[str, Any]) -> None:
    """pve1 relays a request for pve2 and answers 595 (pve2's pveproxy refused): pve2 is the node that
    failed; pve1 keeps serving, and pve2's paths fail fast until its back-off ends."""
    server.script[("GET", "/api2/json/nodes/pve2/status")] = [(595, "Connection refused", b"")]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), retries=1)
    with pytest.raises(NodeUnreachable) as ei:
        t.get("/nodes/pve2/status")
    assert ei.value.attempts == [("pve2", "595 Connection refused")]
    assert t.dead_nodes == {"pve2": "595 Connection refused via pve1"}
    sent = len(server.requests)
    with pytest.raises(NodeUnreachable, match="node pve2 is not answering"):
        t.get("/nodes/pve2/qemu")
    assert len(server.requests) == sent                       # failed fast: nothing sent
    assert t.get("/version") is None and t.get("/nodes/pve1/status") is None


def test_relay_timeout_596_is_not_retried(server: FakePVE, pki: dict[str, Any]) -> None:
    # the relay already waited its 30 s (AnyEvent.pm::proxy_request `timeout => 30`): asking it again
    # would only wait another 30 s
    server.script[("GET", "/api2/json/nodes/pve3/network")] = [(596, "Connection timed out", b"")]
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki), retries=2)
    with pytest.raises(NodeUnreachable):
        t.get("/nodes/pve3/network")
    assert len(server.requests) == 1
    assert set(t.dead_nodes) == {"pve3"}


def test_a_failed_node_is_probed_again_after_its_back_off(pki: dict[str, Any]) -> None:
    port = _free_port()
    t = make([Node(name="pve1", host="127.0.0.1", port=port)], ca_tls(pki), reprobe_after=0.2)
    with pytest.raises(NodeUnreachable):
        t.get("/version")
    assert set(t.dead_nodes) == {"pve1"}
    import time
    time.sleep(0.25)
    assert t.dead_nodes == {}                                  # the back-off is over: it is tried again
    with pytest.raises(NodeUnreachable):
        t.get("/version")
    assert set(t.dead_nodes) == {"pve1"}                       # failed again: a longer back-off
    assert t.health.failures("pve1") == 2


def test_a_write_never_goes_out_on_a_connection_idle_past_the_reuse_limit(
        server: FakePVE, pki: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # the server may be closing an idle keep-alive connection just as a write is sent on it; a write is
    # never resent, so it takes a fresh connection instead (a GET may reuse it: it can be resent)
    monkeypatch.setattr(phttp.pool, "WRITE_REUSE_IDLE", 0.05)
    t = make([Node(name="pve1", host="127.0.0.1", port=server.port)], ca_tls(pki))
    t.get("/version")
    import time
    time.sleep(0.1)
    t.get("/version")
    assert server.connections == 1
    time.sleep(0.1)
    t.post("/nodes/pve1/qemu/100/status/start")
    assert server.connections == 2


def test_threads_failing_on_one_node_at_once_count_as_one_failure(pki: dict[str, Any]) -> None:
    port = _free_port()
    t = make([Node(name="pve1", host="127.0.0.1", port=port)], ca_tls(pki), reprobe_after=5)
    barrier = threading.Barrier(8)

    def read() -> None:
        barrier.wait()
        with pytest.raises(NodeUnreachable):
            t.get("/version")

    threads = [threading.Thread(target=read) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.health.failures("pve1") == 1                      # back-off 5 s, not 5 * 2**7 capped at 30
    assert 4 < t.health.backoff_left("pve1") <= 5


def answer_after(seconds: float) -> Any:
    """A script entry: answer `{"data":null}` after `seconds` (the client may have given up by then)."""
    def handler(h: Any) -> None:
        import time
        time.sleep(seconds)
        try:
            h.send_response(200)
            h.send_header("Content-Length", "13")
            h.end_headers()
            h.wfile.write(b'{"data":null}')
        except OSError:
            pass                                               # the client moved on
    return handler


def test_a_cluster_wide_read_moves_on_after_failover_after(pki: dict[str, Any]) -> None:
    """pve1 does not answer /cluster/resources: pve2 is asked after `failover_after`, not after the
    30 s read timeout; the last node that can answer gets the whole read timeout."""
    import time
    slow, fast = FakePVE(pki), FakePVE(pki)
    try:
        slow.script[("GET", "/api2/json/cluster/resources")] = [answer_after(3)]
        t = make([Node(name="pve1", host="127.0.0.1", port=slow.port), Node(name="pve2", host="127.0.0.1", port=fast.port)],
                 ca_tls(pki), read_timeout=30, failover_after=0.3)
        t0 = time.monotonic()
        assert t.request("GET", "/cluster/resources", raw=True).node == "pve2"
        assert time.monotonic() - t0 < 0.3 + 0.5
        fast.script[("GET", "/api2/json/version")] = [answer_after(0.6)]    # the last one: not cut
        assert t.request("GET", "/version", raw=True).node == "pve2"
        # a read for one node's path has no other node to answer it: not cut either
        slow.script[("GET", "/api2/json/nodes/pve1/status")] = [answer_after(0.6)]
        t2 = make([Node(name="pve1", host="127.0.0.1", port=slow.port), Node(name="pve2", host="127.0.0.1", port=fast.port)],
                  ca_tls(pki), read_timeout=30, failover_after=0.3)
        assert t2.request("GET", "/nodes/pve1/status", node="pve1", raw=True).node == "pve1"
    finally:
        slow.stop()
        fast.stop()
