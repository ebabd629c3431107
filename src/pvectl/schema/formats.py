"""The formats pve-common registers by name (JSONSchema.pm `register_format`, and the ones
pve-storage, qemu-server and pve-access-control add), each a validator that raises `Die` with the
exact text of PVE's `die`; and the named property-string (hash) formats the schema dump only names."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .perl import Die, perl_true
from .urlencoded import split_list


_IPV4OCTET = r"(?:25[0-5]|(?:2[0-4]|1[0-9]|[1-9])?[0-9])"
_IPV4RE = rf"(?:(?:{_IPV4OCTET}\.){{3}}{_IPV4OCTET})"  # pve-common ParseUtils.pm $IPV4RE
_H16 = r"(?:[0-9a-fA-F]{1,4})"
_LS32 = rf"(?:(?:{_IPV4RE}|{_H16}:{_H16}))"
_IPV6RE = (  # pve-common ParseUtils.pm $IPV6RE
    "(?:"
    rf"(?:(?:(?:{_H16}:){{6}}){_LS32})|"
    rf"(?:(?:::(?:{_H16}:){{5}}){_LS32})|"
    rf"(?:(?:(?:{_H16})?::(?:{_H16}:){{4}}){_LS32})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}){_LS32})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}){_LS32})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,3}}{_H16})?::(?:{_H16}:){{1}}){_LS32})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,4}}{_H16})?::){_LS32})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,5}}{_H16})?::){_H16})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,6}}{_H16})?::))"
    ")"
)
_RE_IPV4 = re.compile(rf"^(?:{_IPV4RE})$")
_RE_IPV6 = re.compile(rf"^(?:{_IPV6RE})$")
_RE_IP = re.compile(rf"^(?:(?:{_IPV4RE})|(?:{_IPV6RE}))$")
_RE_CIDRV4 = re.compile(rf"^(?:{_IPV4RE})(?:/(\d+))$")
_RE_CIDRV6 = re.compile(rf"^(?:{_IPV6RE})(?:/(\d+))$")
_EMAIL_USER_RE = r"[\w\+\-\~]+(\.[\w\+\-\~]+)*"
_EMAIL_RE = _EMAIL_USER_RE + r"@[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*"
_DNS_LABEL = r"([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)"
_RE_DNS = re.compile(rf"^({_DNS_LABEL}\.)*{_DNS_LABEL}$")
_RE_ID = re.compile(r"^[a-z][a-z0-9\-\_\.]*[a-z0-9]$", re.I)  # JSONSchema.pm::parse_id
_IPV4_MASKS = {".".join(str((((1 << 32) - (1 << (32 - b))) >> s) & 255) for s in (24, 16, 8, 0)) for b in range(33)}


def _v(regex: str, message: Callable[[str], str], flags: int = 0) -> Callable[[str], None]:
    compiled = re.compile(regex, flags)

    def validator(value: str) -> None:
        if compiled.search(value) is None:
            raise Die(message(value))

    return validator


def _cidrv4_ok(value: str) -> bool:
    m = _RE_CIDRV4.match(value)
    return m is not None and 7 < int(m.group(1)) <= 32


def _cidrv6_ok(value: str) -> bool:
    m = _RE_CIDRV6.match(value)
    return m is not None and 7 < int(m.group(1)) <= 128


def _verify_cidr(value: str) -> None:  # pve_verify_cidr
    if not (_cidrv4_ok(value) or _cidrv6_ok(value)):
        raise Die("value does not look like a valid CIDR network\n")


def _verify_cidrv4(value: str) -> None:
    if not _cidrv4_ok(value):
        raise Die("value does not look like a valid IPv4 CIDR network\n")


def _verify_cidrv6(value: str) -> None:
    if not _cidrv6_ok(value):
        raise Die("value does not look like a valid IPv6 CIDR network\n")


def _verify_ipv4_config(value: str) -> None:  # pve_verify_ipv4_config
    if not (re.match(r"^(?:dhcp|manual)$", value) or _cidrv4_ok(value)):
        raise Die("value does not look like a valid ipv4 network configuration\n")


def _verify_ipv6_config(value: str) -> None:  # pve_verify_ipv6_config
    if not (re.match(r"^(?:auto|dhcp|manual)$", value) or _cidrv6_ok(value)):
        raise Die("value does not look like a valid ipv6 network configuration\n")


def _verify_ipv4mask(value: str) -> None:
    if value not in _IPV4_MASKS:
        raise Die("value does not look like a valid IP netmask\n")


def _verify_address(value: str) -> None:  # pve_verify_address
    if not (_RE_IP.match(value) or _RE_DNS.match(value)):
        raise Die(f"value does not look like a valid address: {value}\n")


def _verify_disk_size(value: str) -> None:  # pve_verify_disk_size / parse_size
    if not re.match(r"^(\d+(\.\d+)?)([KMGT])?$", value):
        raise Die(f"value does not look like a valid disk size: {value}\n")


def _verify_startup_order(value: str) -> None:  # pve_verify_startup_order / pve_parse_startup_order
    ok = perl_true(value)
    if ok:
        for part in value.split(","):
            if re.match(r"^\s*$", part):
                continue
            if not re.match(r"^(?:(order=)?(\d+)|up=(\d+)|down=(\d+))$", part):
                ok = False
                break
    if not ok:
        raise Die("unable to parse startup options\n")


def _verify_vlan_id_or_range(value: str) -> None:  # pve_verify_vlan_id_or_range
    m = re.match(r"^(\d+)(?:-(\d+))?$", value)
    if not m:
        raise Die(f"invalid VLAN configuration '{value}'\n")
    start, end = m.group(1), m.group(2)
    for tag in (start, end) if end and perl_true(end) else (start,):
        if int(tag) < 2 or int(tag) > 4094:
            raise Die(f"invalid VLAN tag '{tag}'\n")
    if end and perl_true(end) and int(start) >= int(end):
        raise Die(f"VLAN range must go from lower to higher tag '{value}'\n")


def _verify_volume_id(value: str) -> None:  # pve-storage Storage.pm::parse_volume_id
    if not re.match(r"^([a-z][a-z0-9\-\_\.]*[a-z0-9]):(.+)$", value, re.I):
        raise Die(f"unable to parse volume ID '{value}'\n")


def _verify_volume_id_or_absolute_path(value: str) -> None:  # qemu-server QemuServer.pm
    if value.startswith("/"):
        return
    _verify_volume_id(value)


def _verify_volume_id_or_qm_path(value: str) -> None:  # qemu-server QemuServer.pm
    if value in ("none", "cdrom"):
        return
    _verify_volume_id_or_absolute_path(value)


def _verify_id(kind: str) -> Callable[[str], None]:
    def validator(value: str) -> None:  # JSONSchema.pm::parse_id
        if not _RE_ID.match(value):
            raise Die(f"{kind} ID '{value}' contains illegal characters\n")

    return validator


def _idpair(idformat: str) -> Callable[[str], None]:
    """JSONSchema.pm `$verify_idpair` around `parse_idmap` (storage-pair, bridge-pair)."""

    def validator(value: str) -> None:
        try:
            seen_default = False
            entries: set[str] = set()
            identity = False
            for entry in split_list(value):
                if entry == "1":
                    identity = True
                    continue
                m = re.match(r"^([^:]+):([^:]+)$", entry)
                try:
                    if m:  # (check_format of a plain code-ref format: its validator)
                        FORMATS[idformat](m.group(1))
                        FORMATS[idformat](m.group(2))
                    else:
                        FORMATS[idformat](entry)
                except Die as exc:
                    raise Die(f"entry '{entry}' contains invalid ID - {exc.msg}\n") from None
                if m:
                    if m.group(1) in entries:
                        raise Die(f"duplicate mapping for source '{m.group(1)}'\n")
                    entries.add(m.group(1))
                else:
                    if seen_default:
                        raise Die("default target ID can only be provided once\n")
                    seen_default = True
            if identity and (seen_default or entries):
                raise Die("identity mapping cannot be combined with other mappings\n")
        except Die as exc:
            raise Die(exc.msg + "\n") from None  # `die "$@\n"`

    return validator


# pve-storage Plugin.pm::valid_content_types('dir') plus 'import' (Storage.pm::verify_content)
_STORAGE_CONTENT = {"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"}


def _verify_storage_content(value: str) -> None:
    if value not in _STORAGE_CONTENT:
        raise Die(f"invalid content type '{value}'\n")


def _verify_tfa_secret(value: str) -> None:
    if not (
        re.match(r"^v2-0x[0-9a-fA-F]{16,128}$", value)
        or re.match(r"^v2-[A-Z2-7=]{16,128}$", value)
        or re.match(r"^(?:[A-Z2-7=]{16}|[A-Fa-f0-9]{40})$", value)
    ):
        raise Die("unable to decode TFA secret\n")


# Code-ref formats: name -> validator that raises Die with the exact `die` text.
# Any other named format that appears in the schema (e.g. pve-qm-boot, pve-vm-cpu-conf, pve-cpuset,
# pve-calendar-event, the firewall and SDN formats, timezone) is accepted without a check: PVE would
# validate it, the simulator does not need to.
FORMATS: dict[str, Callable[[str], None]] = {
    "string": lambda v: None,
    "urlencoded": _v(r"^[-%a-zA-Z0-9_.!~*'()]*$", lambda v: f"invalid urlencoded string: {v}\n"),
    "pve-configid": _v(r"^[a-z][a-z0-9_-]+$", lambda v: f"invalid configuration ID '{v}'\n", re.I),
    "pve-storage-id": _verify_id("storage"),
    "acme-plugin-id": _verify_id("ACME plugin"),
    "pve-bridge-id": _v(r"^[-_.\w\d]+$", lambda v: f"invalid bridge ID '{v}'\n"),
    "pve-vmid": _v(r"^[1-9][0-9]{2,8}$", lambda v: "value does not look like a valid VM ID\n"),
    "pve-node": _v(
        r"^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$", lambda v: "value does not look like a valid node name\n"
    ),
    "mac-addr": _v(
        r"^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$",
        lambda v: "value does not look like a valid unicast MAC address\n",
        re.I,
    ),
    "ipv4": _v(_RE_IPV4.pattern, lambda v: "value does not look like a valid IPv4 address\n"),
    "ipv6": _v(_RE_IPV6.pattern, lambda v: "value does not look like a valid IPv6 address\n"),
    "ip": _v(_RE_IP.pattern, lambda v: "value does not look like a valid IP address\n"),
    "ipv4mask": _verify_ipv4mask,
    "CIDRv4": _verify_cidrv4,
    "CIDRv6": _verify_cidrv6,
    "CIDR": _verify_cidr,
    "pve-ipv4-config": _verify_ipv4_config,
    "pve-ipv6-config": _verify_ipv6_config,
    "email": _v(rf"^{_EMAIL_RE}$", lambda v: "value does not look like a valid email address\n"),
    "email-or-username": _v(
        rf"^(?:{_EMAIL_RE}|{_EMAIL_USER_RE})$",
        lambda v: "value does not look like a valid email address or user name\n",
    ),
    "dns-name": _v(_RE_DNS.pattern, lambda v: "value does not look like a valid DNS name\n"),
    "pve-iface": _v(r"^[a-z][a-z0-9_]{1,20}([:\.]\d+)?$", lambda v: f"invalid network interface name '{v}'\n", re.I),
    "pve-vlan-id-or-range": _verify_vlan_id_or_range,
    "address": _verify_address,
    "disk-size": _verify_disk_size,
    "pve-startup-order": _verify_startup_order,
    "pve-tag": _v(r"^[a-z0-9_][a-z0-9_\-\+\.]*$", lambda v: "invalid characters in tag\n", re.I),
    "pve-task-status-type": _v(r"^(ok|error|warning|unknown)$", lambda v: f"invalid status '{v}'\n", re.I),
    "ldap-simple-attr": _v(
        r"^[a-zA-Z0-9]+$", lambda v: f"value '{v}' does not look like a simple ldap attribute name\n"
    ),
    "pve-tfa-secret": _verify_tfa_secret,
    "storage-pair": _idpair("pve-storage-id"),
    "bridge-pair": _idpair("pve-bridge-id"),
    # pve-storage Storage.pm / Plugin.pm
    "pve-volume-id": _verify_volume_id,
    "pve-storage-content": _verify_storage_content,
    # qemu-server QemuServer.pm
    "pve-volume-id-or-qm-path": _verify_volume_id_or_qm_path,
    "pve-volume-id-or-absolute-path": _verify_volume_id_or_absolute_path,
    # pve-access-control AccessControl.pm
    "pve-poolid": _v(r"^[A-Za-z0-9\.\-_]+$", lambda v: f"pool name '{v}' contains invalid characters\n"),
    "pve-groupid": _v(r"^[A-Za-z0-9\.\-_]+$", lambda v: f"group name '{v}' contains invalid characters\n"),
    "pve-roleid": _v(r"^[A-Za-z0-9\.\-_]+$", lambda v: f"role name '{v}' contains invalid characters\n"),
}

# Hash (property-string) formats registered by name; the dump only names them.
HASH_FORMATS: dict[str, dict[str, dict[str, Any]]] = {
    # qemu-server QemuServer/Network.pm $ipconfig_fmt
    "pve-qm-ipconfig": {
        "gw": {"type": "string", "format": "ipv4", "optional": 1, "requires": "ip"},
        "gw6": {"type": "string", "format": "ipv6", "optional": 1, "requires": "ip6"},
        "ip": {"type": "string", "format": "pve-ipv4-config", "optional": 1, "default": "dhcp"},
        "ip6": {"type": "string", "format": "pve-ipv6-config", "optional": 1, "default": "dhcp"},
    },
}
