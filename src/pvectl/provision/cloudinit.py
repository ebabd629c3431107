"""Cloud-init and hardware values: ipconfig, SSH keys, bridges, disks, guest-agent addresses."""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from typing import Any

from ..errors import UsageError
from ..units import parse_prop

# pve-common JSONSchema.pm `dns-name` (the clone's `name` format: pve-semantics §4.1)
_DNS_NAME_RE = re.compile(r"^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$")
# pve-common JSONSchema.pm::pve_verify_urlencoded (pve-semantics §7.5)
_URLENCODED_RE = re.compile(r"^[-%a-zA-Z0-9_.!~*'()]*$")
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
_NET_MODELS = ("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
               "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")
_DISK_RE = re.compile(r"^(scsi|virtio|sata|ide|efidisk|tpmstate)\d+$")
_BOOT_DISKS = ("scsi0", "virtio0", "sata0", "ide0")


def ipconfig_value(ip: str) -> str:
    """`dhcp` -> `ip=dhcp`; `10.0.0.5/24,gw=10.0.0.1` -> `ip=10.0.0.5/24,gw=10.0.0.1`; an IPv6 CIDR goes
    to `ip6`/`gw6` (format `pve-qm-ipconfig`: pve-semantics §7.5). Already-formed values pass through."""
    text = ip.strip()
    if text.lower() == "dhcp":
        return "ip=dhcp"
    if text.startswith(("ip=", "ip6=")):
        return text
    cidr, _, rest = text.partition(",")
    gw = None
    if rest:
        k, _, v = rest.partition("=")
        if k.strip() not in ("gw", "gw6") or not v:
            raise UsageError(f"invalid --ip '{ip}'", hint="use dhcp or CIDR[,gw=IP], e.g. 10.0.0.5/24,gw=10.0.0.1")
        gw = v.strip()
    try:
        iface = ipaddress.ip_interface(cidr.strip())
        if "/" not in cidr:
            raise ValueError("no prefix length")
        if gw is not None and ipaddress.ip_address(gw).version != iface.version:
            raise ValueError("gateway of another address family")
    except ValueError as exc:
        raise UsageError(f"invalid --ip '{ip}': {exc}",
                         hint="use dhcp or CIDR[,gw=IP], e.g. 10.0.0.5/24,gw=10.0.0.1") from None
    if iface.version == 6:
        return f"ip6={iface.with_prefixlen}" + (f",gw6={gw}" if gw else "")
    return f"ip={iface.with_prefixlen}" + (f",gw={gw}" if gw else "")


def encode_sshkeys(text: str) -> str:
    """The `sshkeys` value as Proxmox stores it: the keys (one per line) percent-encoded with nothing
    left unescaped, so it passes `^[-%a-zA-Z0-9_.!~*'()]*$` (pve-semantics §7.5; `quote_plus` output is
    refused: proxmoxer #153). Input that is already encoded that way is decoded first, so it is never
    encoded twice. Blank lines and comments are dropped; lines are joined with a newline."""
    raw = text.strip()
    if raw and "%" in raw and _URLENCODED_RE.match(raw):
        raw = urllib.parse.unquote(raw)
    lines = [ln.strip() for ln in raw.splitlines()]
    return urllib.parse.quote("\n".join(ln for ln in lines if ln and not ln.startswith("#")), safe="")


def read_ssh_keys(path: str) -> str:
    """The public keys in `path`, checked locally (a private key or garbage is refused before any write)."""
    p = os.path.expanduser(path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read the SSH keys file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the SSH keys file {path} is not text") from None
    if "PRIVATE KEY" in text:
        raise UsageError(f"{path} holds a PRIVATE key", hint="give the public key file (e.g. ~/.ssh/id_ed25519.pub)")
    numbered = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1)
                if ln.strip() and not ln.strip().startswith("#")]
    if not numbered:
        raise UsageError(f"the SSH keys file {path} contains no key")
    for n, ln in numbered:
        # pve-common Tools.pm::validate_ssh_public_keys runs `ssh-keygen -l` on every line. The line itself
        # is never echoed: a file given by mistake may hold a secret.
        if not any(part in _KEY_TYPES for part in ln.split()):
            raise UsageError(f"{path}: line {n} is not an SSH public key",
                             hint="each line must look like: ssh-ed25519 AAAA... comment")
    keys = [ln for _, ln in numbered]
    return "\n".join(keys)


def net_with_bridge(current: str | None, bridge: str) -> str:
    """`net0` with only the bridge replaced: the model, the MAC Proxmox generated for the clone (§4.3)
    and every other option (firewall, tag, ...) are kept. Without a NIC: `virtio,bridge=B`."""
    if not current:
        return f"virtio,bridge={bridge}"
    first, opts = parse_prop(current)
    parts = [first] if first else []
    parts += [f"{k}={bridge if k == 'bridge' else v}" for k, v in opts.items()]
    if "bridge" not in opts:
        parts.append(f"bridge={bridge}")
    return ",".join(parts)


def net_bridge(value: str | None) -> str | None:
    return parse_prop(value)[1].get("bridge") if value else None


def _volume_storages(config: dict[str, Any]) -> dict[str, str]:
    """drive key -> storage id of every volume (CD-ROM ISOs included; `none` and host paths skipped):
    a clone to another node needs every one of them on shared storage (§4.2)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if not _DISK_RE.match(key):
            continue
        volid, _ = parse_prop(str(value))
        if volid and ":" in volid and not volid.startswith("/"):
            out[key] = volid.split(":", 1)[0]
    return out


def boot_disk(config: dict[str, Any]) -> str | None:
    for key in _BOOT_DISKS:
        value = config.get(key)
        if value and parse_prop(str(value))[1].get("media") != "cdrom" and "cloudinit" not in str(value):
            return key
    return None


def pick_ip(interfaces: object) -> tuple[str | None, str | None]:
    """(first non-loopback, non-link-local IPv4, first global IPv6) from a guest agent
    `network-get-interfaces` answer. Interfaces without `ip-addresses` (DHCP still running) are skipped
    (pain point #8)."""
    v4 = v6 = None
    for iface in interfaces if isinstance(interfaces, list) else []:
        if not isinstance(iface, dict) or iface.get("name") == "lo":
            continue
        for a in iface.get("ip-addresses") or []:
            try:
                addr = ipaddress.ip_address(str(a.get("ip-address", "")).split("%")[0])
            except ValueError:
                continue
            if addr.is_loopback or addr.is_link_local or addr.is_unspecified:
                continue
            if addr.version == 4 and v4 is None:
                v4 = str(addr)
            elif addr.version == 6 and v6 is None:
                v6 = str(addr)
    return v4, v6


