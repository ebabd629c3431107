"""TLS material for the simulated cluster: a cluster CA and one certificate per node.

Real Proxmox VE creates `/etc/pve/pve-root-ca.pem` (CN "Proxmox Virtual Environment", O "PVE Cluster
Manager CA", 10 years; key in `/etc/pve/priv/pve-root-ca.key`) and, per node,
`/etc/pve/nodes/<node>/pve-ssl.pem` signed by it with the node's IP addresses and names as SANs
(pve-cluster `PVE/Cluster/Setup.pm::gen_pve_ssl_cert`, `gen_pveca_cert`). The simulator mirrors that
layout inside its state directory:

    <state_dir>/pve-root-ca.pem           the CA certificate clients trust (tls.ca_file)
    <state_dir>/priv/pve-root-ca.key      the CA key (0600)
    <state_dir>/nodes/<node>/pve-ssl.pem  the node certificate
    <state_dir>/nodes/<node>/pve-ssl.key  the node key (0600)

The CA found in a state directory is reused, so client configurations stay valid across restarts; a
node certificate is reused while it still matches the node's address and the CA, so SHA-256
fingerprint pins stay valid too.

Keys are EC P-256 by default: generating one takes ~2 ms against ~170 ms for RSA 2048 (PVE's node key
type) and ~650 ms for RSA 4096 (PVE's CA key type), measured on the build machine; ECDSA handshakes are
also cheaper for the server. `key_type="rsa"` produces PVE's exact key types when that matters.

`cryptography` is imported only inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

KeyType = Literal["ec", "rsa"]

CA_CERT_NAME = "pve-root-ca.pem"
CA_KEY_NAME = "priv/pve-root-ca.key"
_CA_DAYS = 3650        # pve-cluster gen_pveca_cert: -days 3650
_NODE_DAYS = 730       # pve-cluster gen_pve_ssl_cert: -days 730 (since PVE 7 the default is 2 years)
_RENEW_BEFORE = _dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class CertPair:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class NodeCert:
    cert_path: Path
    key_path: Path
    cert_pem: bytes
    fingerprint: str    # SHA-256, "AB:CD:..." like `pvenode cert info`


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _new_key(key_type: KeyType, *, ca: bool) -> Any:
    if key_type == "rsa":
        from cryptography.hazmat.primitives.asymmetric import rsa

        # pve-cluster: CA 4096 bit, node certificates 2048 bit
        return rsa.generate_private_key(public_exponent=65537, key_size=4096 if ca else 2048)
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def generate_ca(*, key_type: KeyType = "ec") -> CertPair:
    """A new cluster CA like pve-root-ca (pve-cluster `Setup.pm::gen_pveca_cert`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _new_key(key_type, ca=True)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "Proxmox Virtual Environment"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, str(uuid.uuid4())),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PVE Cluster Manager CA"),
    ])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives import serialization

    return CertPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def ensure_ca(state_dir: str | os.PathLike[str], *, key_type: KeyType = "ec") -> CertPair:
    """Load the CA from `state_dir`, or create and write it there. Returns its PEM pair."""
    d = Path(state_dir)
    cert_path, key_path = d / CA_CERT_NAME, d / CA_KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        pair = CertPair(cert_path.read_bytes(), key_path.read_bytes())
        if _ca_usable(pair):
            return pair
    pair = generate_ca(key_type=key_type)
    _write_private(key_path, pair.key_pem)
    _write_public(cert_path, pair.cert_pem)
    return pair


def _ca_usable(pair: CertPair) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(pair.cert_pem)
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
    except ValueError:
        return False
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return False
    return cert.not_valid_after_utc - _RENEW_BEFORE > _now()


def _san_entries(node: str, ip: str) -> list[Any]:
    from cryptography import x509

    # pve-cluster gen_pve_ssl_cert: subjectAltName = IP:<ips>, DNS:localhost, DNS:<node>, DNS:<fqdn>
    names: list[Any] = [x509.IPAddress(ipaddress.ip_address(ip))]
    if ip != "127.0.0.1":
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    names += [x509.DNSName("localhost"), x509.DNSName(node)]
    return names


def issue_node_cert(ca: CertPair, node: str, ip: str, *, key_type: KeyType = "ec") -> CertPair:
    """A node certificate signed by `ca`, like `pve-ssl.pem` (SAN: the node's IP, name, localhost)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = _new_key(key_type, ca=False)
    now = _now()
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "PVE Cluster Node"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Proxmox Virtual Environment"),
        x509.NameAttribute(NameOID.COMMON_NAME, node),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(min(now + _dt.timedelta(days=_NODE_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_san_entries(node, ip)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return CertPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _node_cert_usable(ca: CertPair, node: str, ip: str, cert_pem: bytes) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # noqa: BLE001 - any parse or signature problem means "issue a new one"
        return False
    want = {str(v) for v in _san_entries(node, ip)}
    have = {str(v) for v in san}
    return want == have and cert.not_valid_after_utc - _RENEW_BEFORE > _now()


def ensure_node_cert(
    state_dir: str | os.PathLike[str], ca: CertPair, node: str, ip: str, *, key_type: KeyType = "ec"
) -> NodeCert:
    """Reuse `nodes/<node>/pve-ssl.pem` when it still fits `ip` and `ca`, else issue and write one."""
    d = Path(state_dir) / "nodes" / node
    cert_path, key_path = d / "pve-ssl.pem", d / "pve-ssl.key"
    cert_pem: bytes | None = None
    if cert_path.is_file() and key_path.is_file():
        existing = cert_path.read_bytes()
        if _node_cert_usable(ca, node, ip, existing):
            cert_pem = existing
    if cert_pem is None:
        pair = issue_node_cert(ca, node, ip, key_type=key_type)
        _write_private(key_path, pair.key_pem)
        _write_public(cert_path, pair.cert_pem)
        cert_pem = pair.cert_pem
    return NodeCert(cert_path, key_path, cert_pem, fingerprint(cert_pem))


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint as colon-separated upper-case hex (the format `pvenode cert info` shows)."""
    der = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
    import hashlib

    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def server_context(node_cert: NodeCert) -> ssl.SSLContext:
    """The listener's TLS context: TLS 1.2+, no compression, server cipher preference
    (pve-http-server `AnyEvent.pm::new`: OP_NO_COMPRESSION, OP_CIPHER_SERVER_PREFERENCE)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(node_cert.cert_path), str(node_cert.key_path))
    return ctx


def client_context(ca_file: str | os.PathLike[str] | None = None, *, cadata: str | None = None) -> ssl.SSLContext:
    """A verifying client context that trusts only the cluster CA (used for node-to-node proxying)."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None, cadata=cadata)
    return ctx
