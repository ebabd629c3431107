"""Failover across nodes and TLS verification (CA file, SHA-256 pins, insecure), through the CLI.

Failover is proven by counting: connection attempts to the dead node (the `-v` log, or accepted
TCP connections on a silent listener) and which node the simulator's request log says answered.
Nothing here measures time.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cliharness import Run

READS = [
    ("cluster", "status"),
    ("node", "list"),
    ("node", "status", "pve2"),
    ("vm", "list"),
    ("vm", "list", "--status", "running"),
    ("vm", "list", "--node", "pve1"),
    ("template", "list"),
    ("vm", "status", "101"),       # lives on pve2
    ("vm", "status", "db-01"),
]


def connect_failures(r: Run) -> list[str]:
    return [ln for ln in r.err_lines if "connect failed" in ln]


# ------------------------------------------------------------------------------------------------
# One node down


def test_first_node_listener_down_every_read_succeeds(cli: Callable[..., Run], fresh_sim: Any) -> None:
    fresh_sim.stop_listener("pve1")
    pve1 = "127.0.0.1:%d" % fresh_sim.nodes["pve1"][1]
    cfg = str(fresh_sim.config_path)
    for args in READS:
        fresh_sim.clear_requests()
        r = cli("--config", cfg, "-o", "json", "-v", *args)
        assert r.code == 0, (args, r.err)
        assert r.json
        # at most one attempt at the dead node per process, then it is skipped; a request for
        # pve2 itself goes straight to pve2 and never tries pve1
        expected = [] if args == ("node", "status", "pve2") else \
            [f"pvectl: GET {r_first_path(r)} -> pve1 ({pve1}): connect failed: connection refused"]
        assert connect_failures(r) == expected, (args, r.err)
        answered = {e["node"] for e in fresh_sim.requests_log()}
        assert answered == {"pve2"}, (args, answered)


def r_first_path(r: Run) -> str:
    """The API path of the first request in a `-v` log."""
    first = next(ln for ln in r.err_lines if ln.startswith("pvectl: GET "))
    return first.split()[2]


def test_first_node_listener_down_subprocess(fresh_sim: Any, run_pvectl: Callable[..., Run]) -> None:
    fresh_sim.stop_listener("pve1")
    fresh_sim.clear_requests()
    r = run_pvectl("--config", str(fresh_sim.config_path), "-v", "vm", "list")
    assert r.code == 0 and len(r.json) == 14
    assert len(connect_failures(r)) == 1 and "-> pve1 " in connect_failures(r)[0]
    assert {e["node"] for e in fresh_sim.requests_log()} == {"pve2"}


def test_reads_that_need_the_down_node_itself_fail_with_exit_5(cli: Callable[..., Run], fresh_sim: Any) -> None:
    """pveproxy on pve1 is down but pve1 is still a cluster member: pve2 relays requests for
    /nodes/pve1/... to pve1's pveproxy and answers 595, as real Proxmox VE does."""
    fresh_sim.stop_listener("pve1")
    cfg = str(fresh_sim.config_path)
    for args in (("node", "status", "pve1"), ("vm", "status", "100")):
        r = cli("--config", cfg, "-o", "table", *args)
        assert r.code == 5, (args, r.err)
        assert r.out == ""
        assert r.err_lines == ["pvectl: error: node pve1 unreachable (via pve2): 595 Connection refused (hint: check "
                               "that the nodes are up and pveproxy runs (systemctl status pveproxy); pvectl doctor)"]


def test_first_node_down_completely(cli: Callable[..., Run], fresh_sim: Any) -> None:
    """The node is down and out of the membership: every read works; pve1 shows as offline."""
    fresh_sim.stop_node("pve1")
    cfg = str(fresh_sim.config_path)
    st = cli("--config", cfg, "-o", "json", "cluster", "status")
    assert st.code == 0
    assert {n["name"]: n["online"] for n in st.json["nodes"]} == {"pve1": False, "pve2": True, "pve3": True}
    nodes = cli("--config", cfg, "-o", "json", "node", "list")
    assert nodes.code == 0
    assert [(n["name"], n["status"], n["maxmem"] is None) for n in nodes.json] == \
        [("pve1", "offline", True), ("pve2", "online", False), ("pve3", "online", False)]
    all_status = cli("--config", cfg, "-o", "json", "node", "status")   # all online nodes
    assert all_status.code == 0 and [n["name"] for n in all_status.json] == ["pve2", "pve3"]
    for args in READS:
        r = cli("--config", cfg, "-o", "json", *args)
        assert r.code == 0, (args, r.err)


class SilentListener:
    """Accepts TCP connections on 127.0.0.1 and never says a word (a pveproxy that hangs before
    the TLS handshake). Counts the connections it accepted."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop = True
        # close() alone does not wake a thread blocked in accept(); shutdown() does (EINVAL on Linux)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(10)
        for c in self.accepted:
            c.close()


@pytest.fixture
def silent() -> Iterator[SilentListener]:
    s = SilentListener()
    try:
        yield s
    finally:
        s.close()


def test_hanging_first_node_costs_one_connect_timeout_per_process(
        cli: Callable[..., Run], fresh_sim: Any, silent: SilentListener, variant_config: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pve1's address accepts TCP but never answers the TLS handshake: each process makes ONE attempt
    there (bounded by the connect timeout), then uses pve2 for every later request."""
    from pvectl.http import Transport

    def edit(doc: dict[str, Any]) -> None:
        doc["cluster"]["nodes"][0]["port"] = silent.port

    cfg = str(variant_config(fresh_sim.config_path, "hang.yaml", edit))
    # a short connect timeout keeps the test quick; the count is what is asserted
    orig = Transport.from_config.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(Transport, "from_config",
                        classmethod(lambda cls, c, auth=None, **kw: orig(cls, c, auth=auth,
                                                                         **{**kw, "connect_timeout": 0.3})))
    commands = [("vm", "list"), ("vm", "status", "101"), ("template", "list"), ("cluster", "status")]
    for i, args in enumerate(commands, start=1):
        r = cli("--config", cfg, "-o", "json", "-v", *args)
        assert r.code == 0, (args, r.err)
        assert [ln.split(": connect failed: ")[1] for ln in connect_failures(r)] == ["timed out"]
        assert len(silent.accepted) == i, "one connection attempt to the hanging node per process"


def test_hanging_first_node_subprocess_default_timeout(fresh_sim: Any, silent: SilentListener,
                                                        variant_config: Callable[..., Path],
                                                        run_pvectl: Callable[..., Run]) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["cluster"]["nodes"][0]["port"] = silent.port

    cfg = str(variant_config(fresh_sim.config_path, "hang.yaml", edit))
    fresh_sim.clear_requests()
    r = run_pvectl("--config", cfg, "-o", "json", "vm", "status", "db-01")
    assert r.code == 0, r.err
    assert r.json["vmid"] == 101
    assert len(silent.accepted) == 1
    assert {e["node"] for e in fresh_sim.requests_log()} == {"pve2"}


# ------------------------------------------------------------------------------------------------
# All nodes down


def test_all_nodes_down_exit_5_one_line_naming_every_node(cli: Callable[..., Run], fresh_sim: Any,
                                                           run_pvectl: Callable[..., Run]) -> None:
    ports = {n: p for n, (_, p) in fresh_sim.nodes.items()}
    for n in ("pve1", "pve2", "pve3"):
        fresh_sim.stop_listener(n)
    expected = ("pvectl: error: no node reachable: "
                f"pve1 (127.0.0.1:{ports['pve1']}: connection refused), "
                f"pve2 (127.0.0.1:{ports['pve2']}: connection refused), "
                f"pve3 (127.0.0.1:{ports['pve3']}: connection refused) "
                "(hint: check that the nodes are up and pveproxy runs (systemctl status pveproxy); pvectl doctor)")
    cfg = str(fresh_sim.config_path)
    for args in (("vm", "list"), ("cluster", "status"), ("vm", "status", "100"), ("node", "list")):
        r = cli("--config", cfg, "-o", "table", *args)
        assert (r.code, r.out, r.err_lines) == (5, "", [expected]), args
    r = cli("--config", cfg, "-o", "json", "vm", "list")
    assert r.code == 5 and r.err == ""
    err = r.json["error"]
    assert err["type"] == "NodeUnreachable"
    assert all(f"{n} (127.0.0.1:{p}: connection refused)" in err["message"] for n, p in ports.items())
    r = run_pvectl("--config", cfg, "vm", "list", "-o", "yaml")
    assert (r.code, r.out, r.err_lines) == (5, "", [expected])


# ------------------------------------------------------------------------------------------------
# TLS


def make_other_ca(path: Path) -> Path:
    """A CA that did not sign the simulator's node certificates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Proxmox Virtual Environment"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PVE Cluster Manager CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def served_fingerprint(host: str, port: int) -> str:
    """SHA-256 of the DER certificate the node serves, as `AB:CD:...` (pvenode cert info)."""
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, port)))
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, 64, 2))


def test_right_ca_passes(cli: Callable[..., Run], sim: Any) -> None:
    r = cli("--config", str(sim.config_path), "-o", "json", "cluster", "status")
    assert r.code == 0 and r.err == "" and r.json["cluster"] == "simcluster"


def test_wrong_ca_fails_exit_5_without_failover(cli: Callable[..., Run], fresh_sim: Any, tmp_path: Path,
                                                variant_config: Callable[..., Path]) -> None:
    other = make_other_ca(tmp_path / "other-ca.pem")
    cfg = str(variant_config(fresh_sim.config_path, "wrong-ca.yaml",
                             lambda d: d["tls"].update(ca_file=str(other))))
    fresh_sim.clear_requests()
    port = fresh_sim.nodes["pve1"][1]
    for args in (("cluster", "status"), ("vm", "list")):
        r = cli("--config", cfg, "-o", "table", *args)
        assert r.code == 5 and r.out == ""
        assert r.err_lines == [
            f"pvectl: error: TLS verification of pve1 (127.0.0.1:{port}) failed: unable to get local issuer "
            "certificate (hint: set tls.ca_file to the cluster CA (/etc/pve/pve-root-ca.pem) or pin the node in "
            "tls.fingerprints)"]
    # a certificate problem is never "failed over" to another node, and no request was sent
    assert fresh_sim.requests_log() == []
    r = cli("--config", cfg, "-o", "json", "vm", "list")
    assert r.code == 5 and r.json["error"]["type"] == "TlsError" and r.json["error"]["node"] == "pve1"


def test_pinned_fingerprints_pass(cli: Callable[..., Run], sim: Any, variant_config: Callable[..., Path]) -> None:
    pins = {n: served_fingerprint(h, p) for n, (h, p) in sim.nodes.items()}
    assert len(set(pins.values())) == 3                 # each node has its own certificate

    def edit(doc: dict[str, Any]) -> None:
        doc["tls"] = {"fingerprints": pins}

    cfg = str(variant_config(sim.config_path, "pinned.yaml", edit))
    for args in (("cluster", "status"), ("vm", "list"), ("vm", "status", "101"), ("node", "status", "pve3")):
        r = cli("--config", cfg, "-o", "json", *args)
        assert r.code == 0 and r.err == "", (args, r.err)

    # `openssl x509 -fingerprint -sha256` style and bare lower-case hex are the same pin
    def edit2(doc: dict[str, Any]) -> None:
        doc["tls"] = {"fingerprints": {n: (fp.replace(":", "").lower() if n != "pve1" else fp)
                                       for n, fp in pins.items()}}

    cfg2 = str(variant_config(sim.config_path, "pinned2.yaml", edit2))
    assert cli("--config", cfg2, "-o", "json", "vm", "list").code == 0


def test_wrong_pin_fails_exit_5_pinned_x_got_y(cli: Callable[..., Run], sim: Any, variant_config: Callable[..., Path],
                                               run_pvectl: Callable[..., Run]) -> None:
    pins = {n: served_fingerprint(h, p) for n, (h, p) in sim.nodes.items()}
    wrong = pins["pve2"]                                 # a real fingerprint, of another node

    def edit(doc: dict[str, Any]) -> None:
        doc["tls"] = {"fingerprints": {**pins, "pve1": wrong}}

    cfg = str(variant_config(sim.config_path, "wrong-pin.yaml", edit))
    port = sim.nodes["pve1"][1]
    r = cli("--config", cfg, "-o", "table", "cluster", "status")
    assert r.code == 5 and r.out == ""
    assert r.err_lines == [
        f"pvectl: error: TLS fingerprint mismatch for pve1 (127.0.0.1:{port}): pinned {wrong}, got {pins['pve1']} "
        "(hint: if pve1's certificate was renewed on purpose, update tls.fingerprints.pve1 (pvenode cert info on "
        "the node))"]
    r = run_pvectl("--config", cfg, "-o", "json", "vm", "list")
    assert r.code == 5
    assert f"pinned {wrong}, got {pins['pve1']}" in r.json["error"]["message"]


def test_insecure_warns_on_every_run_and_works(cli: Callable[..., Run], sim: Any,
                                               variant_config: Callable[..., Path],
                                               run_pvectl: Callable[..., Run]) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["tls"] = {"insecure": True}

    cfg = str(variant_config(sim.config_path, "insecure.yaml", edit))
    warning = ("pvectl: warning: TLS verification is disabled (tls.insecure: true): anyone on the network path "
               "can read the API token; set tls.ca_file or tls.fingerprints")
    runs = [cli("--config", cfg, "-o", "json", "vm", "list"),
            cli("--config", cfg, "-o", "json", "vm", "status", "101"),     # two requests, one warning
            run_pvectl("--config", cfg, "-o", "json", "cluster", "status"),
            run_pvectl("--config", cfg, "-o", "json", "cluster", "status")]
    for r in runs:
        assert r.code == 0
        assert r.err_lines == [warning]
    assert len(runs[0].json) == 14 and runs[1].json["vmid"] == 101 and runs[2].json["cluster"] == "simcluster"


def test_node_status_of_every_node_reports_an_unreachable_member_in_its_row(
        cli: Callable[..., Run], fresh_sim: Any) -> None:
    # pveproxy on pve2 is down while pve2 stays a cluster member: the others are still shown
    fresh_sim.stop_listener("pve2")
    r = cli("--config", str(fresh_sim.config_path), "-o", "json", "node", "status")
    assert r.code == 0, r.err
    rows = {row["name"]: row for row in r.json}
    assert set(rows) == {"pve1", "pve2", "pve3"}
    assert rows["pve2"] == {"name": "pve2", "error": "node pve2 unreachable (via pve1): 595 Connection refused"}
    assert rows["pve1"]["memory_total"] > 0 and rows["pve3"]["memory_total"] > 0
