"""Opening a verified HTTPS connection to a node (DESIGN §3b, §4).

TLS per node: pinned SHA-256 fingerprint (`tls.fingerprints`; ssl-level verification off, then the
peer certificate's digest is compared), else `tls.ca_file` with host name checking against the node's
`host`, else `tls.insecure: true` (warned about once per transport), else the system CA store.
TLS failures raise TlsError at once: they are never failed over to another node. A connection the
peer closes during the handshake is not one: it fails like a refused connect (another node is tried).
"""

from __future__ import annotations

import ssl
import threading

from ..errors import TlsError
from . import conn as httpconn
from .failures import ConnectFailed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from ..config import Node, Tls

__all__ = ["Connector", "fingerprint"]


def fingerprint(der: bytes) -> str:
    """`AA:BB:...`, the SHA-256 of a DER certificate as `pvenode cert info` shows it."""
    import hashlib

    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, 64, 2))


class Connector:
    """Makes new connections: one SSL context per TLS mode, the pin check, the insecure warning."""

    def __init__(self, tls: Tls | None, connect_timeout: float, *, warn: Callable[[str], None],
                 debug: Callable[[str], None]) -> None:
        self.tls = tls
        self.connect_timeout = connect_timeout
        self._warn = warn
        self._debug = debug
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._warned = False
        self.opened = 0

    def mode(self, node: str) -> str:
        return self.tls.mode(node) if self.tls is not None else "system"

    def context(self, n: Node) -> ssl.SSLContext:
        tls = self.tls
        mode = self.mode(n.name)
        ca_file = tls.ca_file if tls is not None else None
        key = mode if mode != "ca_file" else f"ca_file:{ca_file}"
        ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx
        if mode in ("pin", "insecure"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif mode == "ca_file":
            try:
                ctx = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as e:
                raise TlsError(f"cannot load tls.ca_file {ca_file}: {e}",
                               hint="tls.ca_file must be the cluster CA in PEM (/etc/pve/pve-root-ca.pem)") from None
        else:
            ctx = ssl.create_default_context()
        with self._lock:
            ctx = self._contexts.setdefault(key, ctx)
        return ctx

    def open(self, n: Node, timeout: float) -> httpconn.Connection:
        """A connected, verified connection to `n`. Raises ConnectFailed (nothing sent) or TlsError."""
        ctx = self.context(n)
        if self.mode(n.name) == "insecure" and not self._warned:
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
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError) as e:
            # the peer closed the connection during the handshake (pveproxy stopping or restarting):
            # a connection failure like a refused connect, nothing was sent; not a certificate problem
            conn.close()
            raise ConnectFailed(e) from None
        except ssl.SSLError as e:
            conn.close()
            raise TlsError(f"TLS handshake with {n.name} ({n.address}) failed: {e.reason or e}",
                           node=n.name) from None
        except (OSError, httpconn.HTTPException) as e:
            conn.close()
            raise ConnectFailed(e) from None
        pin = self.tls.fingerprint(n.name) if self.tls is not None else None
        if pin is not None:
            der = conn.sock.getpeercert(binary_form=True) if conn.sock is not None else None
            got = fingerprint(der) if der else "no certificate"
            if got != pin:
                conn.close()
                raise TlsError(f"TLS fingerprint mismatch for {n.name} ({n.address}): pinned {pin}, got {got}",
                               node=n.name, pinned=pin, got=got,
                               hint=f"if {n.name}'s certificate was renewed on purpose, update "
                                    f"tls.fingerprints.{n.name} (pvenode cert info on the node)")
        with self._lock:
            self.opened += 1
        self._debug(f"connected to {n.name} ({n.address}), TLS {self.mode(n.name)}")
        return conn
