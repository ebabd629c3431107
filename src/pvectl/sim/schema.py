"""The official Proxmox VE API schema: path matching and parameter validation exactly as PVE does it.

The schema is `data/pve-apidata-9.1.json.gz` (the data behind Proxmox's API viewer). Validation follows
pve-common `src/PVE/JSONSchema.pm` (`check_prop`, `check_object`, `check_type`, `check_format`,
`parse_property_string`, the registered formats) and reproduces its error texts byte for byte, including
trailing newlines and the nesting of property-string errors. Form bodies are decoded like pve-http-server
`src/PVE/APIServer/AnyEvent.pm::decode_urlencoded` (see `spec/seed-errata.md` §1, `pve-semantics.md` C15).

Differences from the dump, handled here:
- Indexed keys (`net0`..`net31`) are collapsed in the dump to `net[n]`; they are expanded again with the
  counts from the Perl sources (`_INDEXED_COUNT`).
- Parameter schemas with an empty `properties => {}` lost that key in the dump; a missing `properties`
  is read as `{}` so that unknown parameters are refused as PVE refuses them.
- Named hash formats appear only by name (e.g. `pve-qm-ipconfig`); the ones we need are defined here.
  Named formats we do not implement are accepted (PVE would check them; see `_FORMATS`).
- Perl hash order is random, so PVE lists nested errors in any order; we use schema order.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Endpoint",
    "ParamError",
    "RepeatedValue",
    "Schema",
    "decode_urlencoded",
    "split_list",
]

PARAM_ERROR_MESSAGE = "Parameter verification failed."


class ParamError(Exception):
    """HTTP 400 `Parameter verification failed.` with per-field messages (pve-common `Exception.pm::raise_param_exc`).

    `errors` maps a parameter name to PVE's message, exactly as it appears in the JSON body's `errors`.
    `message` is the body's `message` field (with its trailing newline); `str(exc)` is the reason phrase.
    """

    status = 400

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(PARAM_ERROR_MESSAGE)
        self.errors: dict[str, str] = dict(errors)
        self.message: str = PARAM_ERROR_MESSAGE + "\n"


class RepeatedValue(list[str]):
    """A form key given more than once. Perl joins the values with NUL (`"$old\\0$v"`); `validate` does too."""


# ----------------------------------------------------------------------------------------------
# decode_urlencoded: pve-http-server AnyEvent.pm::decode_urlencoded
# ----------------------------------------------------------------------------------------------

_PCT_RE = re.compile(rb"%([0-9a-fA-F][0-9a-fA-F])")
_PAIR_SEP_RE = re.compile(rb"[&;]")


def _pct_decode(raw: bytes) -> bytes:
    # `s/\+/ /g` then `s/%([0-9a-fA-F][0-9a-fA-F])/chr(hex($1))/eg`: one pass, so `%2541` -> `%41`.
    return _PCT_RE.sub(lambda m: bytes((int(m.group(1), 16),)), raw.replace(b"+", b" "))


def decode_urlencoded(data: str | bytes | None) -> dict[str, str | list[str] | None]:
    """Decode a query string or form body exactly as pveproxy does.

    pve-http-server `AnyEvent.pm::decode_urlencoded`:
    - `return $res if !$data`: an empty body and the body `"0"` (false in Perl) give `{}`.
    - pairs are split at `&` or `;`; Perl's split drops trailing empty fields, keeps inner/leading ones.
    - each pair is split with `my ($k, $v) = split(/=/, $kv)`: the implicit LIMIT is 3, so the value
      ends at its next raw `=` and the rest is dropped (`ipconfig0=ip=dhcp` -> `ip`). Because the LIMIT
      is positive, trailing empty fields are kept: `a=` -> `""`, `=` -> key `""`, value `""`,
      `=b` -> key `""`, value `"b"`, `a==c` -> `""`. An empty pair (`a=1&&b=2`) splits into nothing,
      which stores key `""` with no value.
    - a pair without `=` gets `None` (Perl undef); this also replaces an earlier value of that key.
    - `+` becomes a space, `%XX` is decoded once, then the value (not the key) is UTF-8 decoded
      (lax: bad sequences become U+FFFD). The key keeps its raw bytes, shown here as Latin-1.
    - a repeated key with values is joined (Perl: NUL-separated string); here a `RepeatedValue` list.

    A `str` argument is taken as the UTF-8 text of the raw bytes.
    """
    if not data:
        return {}
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    if raw == b"0":
        return {}
    pairs = _PAIR_SEP_RE.split(raw)
    while pairs and pairs[-1] == b"":  # Perl split without LIMIT strips trailing empty fields
        pairs.pop()
    res: dict[str, str | list[str] | None] = {}
    for kv in pairs:
        parts = kv.split(b"=", 2) if kv else []
        k = _pct_decode(parts[0]).decode("latin-1") if parts else ""
        if len(parts) < 2:
            res[k] = None
            continue
        v = _pct_decode(parts[1]).decode("utf-8", "replace")
        old = res.get(k)
        if old is None:
            res[k] = v
        elif isinstance(old, RepeatedValue):
            old.append(v)
        else:
            res[k] = RepeatedValue([old, v])  # type: ignore[list-item]
    return res


def split_list(text: str | None) -> list[str]:
    """pve-common `ParseUtils.pm::split_list` (was `Tools.pm`): NUL-separated, else `,`/`;`/whitespace."""
    text = text or ""
    if "\0" in text:
        parts = text.split("\0")
        while parts and parts[-1] == "":
            parts.pop()
        return parts
    text = re.sub(r"[,;]", " ", text).lstrip()
    return [p for p in re.split(r"\s+", text)] if text else []


# ----------------------------------------------------------------------------------------------
# Perl value semantics
# ----------------------------------------------------------------------------------------------

_JSON_BOOL_CLASS = "JSON::PP::Boolean"  # what decode_json gives for true/false (`ref($value)`)


def _perl_str(value: Any) -> str:
    """How Perl stringifies a scalar decoded from JSON (numbers print with `%.15g`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Inf" if value > 0 else "-Inf"
        return "%.15g" % value
    return str(value)


def _perl_ref(value: Any) -> str:
    """`ref($value)` for a decoded parameter: '' for plain scalars."""
    if isinstance(value, bool):
        return _JSON_BOOL_CLASS
    if isinstance(value, dict):
        return "HASH"
    if isinstance(value, list) and not isinstance(value, RepeatedValue):
        return "ARRAY"
    return ""


def _perl_true(text: str) -> bool:
    return text != "" and text != "0"


_PERL_FLAGS_RE = re.compile(r"\(\?\^([a-z]*):")


def _perl_regex_to_python(pattern: str) -> str:
    # A stringified qr// carries `(?^:...)`/`(?^i:...)`; Python spells these `(?:...)`/`(?i:...)`.
    return _PERL_FLAGS_RE.sub(lambda m: f"(?{m.group(1)}:" if m.group(1) else "(?:", pattern)


@functools.cache
def _anchored(pattern: str) -> re.Pattern[str]:
    # JSONSchema.pm::check_prop: `$value !~ m/^$pattern$/` -- plain interpolation, no group, so a
    # top-level alternation binds to the anchors as in Perl; `$` also matches before a final "\n".
    return re.compile("^" + _perl_regex_to_python(pattern) + "$")


_IS_INTEGER_RE = re.compile(r"^[+-]?\d+$")  # JSONSchema.pm::is_integer
_IS_NUMBER_RE = re.compile(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$")  # ::is_number


def _is_number(text: str) -> bool:
    return _IS_NUMBER_RE.match(text) is not None


def _num(text: Any) -> float:
    return float(_perl_str(text).strip())


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


class _Die(Exception):
    """A Perl `die` inside a format validator; `msg` is `$@` as a string."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


def _add_error(errors: dict[str, str], path: str, msg: str) -> None:
    # JSONSchema.pm::add_error: a second error on one path is joined with '\n' in single quotes,
    # i.e. a literal backslash and "n".
    path = path or "_root"
    if errors.get(path):
        errors[path] = errors[path] + "\\n" + msg
    else:
        errors[path] = msg


def _format_error(errors: dict[str, str]) -> _Die:
    # parse_property_string: `raise "format error\n", errors => $errors`; Exception.pm::stringify
    # appends "$e: $errors->{$e}\n" for each error.
    return _Die("format error\n" + "".join(f"{k}: {v}\n" for k, v in errors.items()))


# ----------------------------------------------------------------------------------------------
# Registered formats (pve-common JSONSchema.pm unless noted)
# ----------------------------------------------------------------------------------------------

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
            raise _Die(message(value))

    return validator


def _cidrv4_ok(value: str) -> bool:
    m = _RE_CIDRV4.match(value)
    return bool(m) and 7 < int(m.group(1)) <= 32  # type: ignore[union-attr]


def _cidrv6_ok(value: str) -> bool:
    m = _RE_CIDRV6.match(value)
    return bool(m) and 7 < int(m.group(1)) <= 128  # type: ignore[union-attr]


def _verify_cidr(value: str) -> None:  # pve_verify_cidr
    if not (_cidrv4_ok(value) or _cidrv6_ok(value)):
        raise _Die("value does not look like a valid CIDR network\n")


def _verify_cidrv4(value: str) -> None:
    if not _cidrv4_ok(value):
        raise _Die("value does not look like a valid IPv4 CIDR network\n")


def _verify_cidrv6(value: str) -> None:
    if not _cidrv6_ok(value):
        raise _Die("value does not look like a valid IPv6 CIDR network\n")


def _verify_ipv4_config(value: str) -> None:  # pve_verify_ipv4_config
    if not (re.match(r"^(?:dhcp|manual)$", value) or _cidrv4_ok(value)):
        raise _Die("value does not look like a valid ipv4 network configuration\n")


def _verify_ipv6_config(value: str) -> None:  # pve_verify_ipv6_config
    if not (re.match(r"^(?:auto|dhcp|manual)$", value) or _cidrv6_ok(value)):
        raise _Die("value does not look like a valid ipv6 network configuration\n")


def _verify_ipv4mask(value: str) -> None:
    if value not in _IPV4_MASKS:
        raise _Die("value does not look like a valid IP netmask\n")


def _verify_address(value: str) -> None:  # pve_verify_address
    if not (_RE_IP.match(value) or _RE_DNS.match(value)):
        raise _Die(f"value does not look like a valid address: {value}\n")


def _verify_disk_size(value: str) -> None:  # pve_verify_disk_size / parse_size
    if not re.match(r"^(\d+(\.\d+)?)([KMGT])?$", value):
        raise _Die(f"value does not look like a valid disk size: {value}\n")


def _verify_startup_order(value: str) -> None:  # pve_verify_startup_order / pve_parse_startup_order
    ok = _perl_true(value)
    if ok:
        for part in value.split(","):
            if re.match(r"^\s*$", part):
                continue
            if not re.match(r"^(?:(order=)?(\d+)|up=(\d+)|down=(\d+))$", part):
                ok = False
                break
    if not ok:
        raise _Die("unable to parse startup options\n")


def _verify_vlan_id_or_range(value: str) -> None:  # pve_verify_vlan_id_or_range
    m = re.match(r"^(\d+)(?:-(\d+))?$", value)
    if not m:
        raise _Die(f"invalid VLAN configuration '{value}'\n")
    start, end = m.group(1), m.group(2)
    for tag in (start, end) if end and _perl_true(end) else (start,):
        if int(tag) < 2 or int(tag) > 4094:
            raise _Die(f"invalid VLAN tag '{tag}'\n")
    if end and _perl_true(end) and int(start) >= int(end):
        raise _Die(f"VLAN range must go from lower to higher tag '{value}'\n")


def _verify_volume_id(value: str) -> None:  # pve-storage Storage.pm::parse_volume_id
    if not re.match(r"^([a-z][a-z0-9\-\_\.]*[a-z0-9]):(.+)$", value, re.I):
        raise _Die(f"unable to parse volume ID '{value}'\n")


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
            raise _Die(f"{kind} ID '{value}' contains illegal characters\n")

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
                    if m:
                        _check_format(idformat, m.group(1), "")
                        _check_format(idformat, m.group(2), "")
                    else:
                        _check_format(idformat, entry, "")
                except _Die as exc:
                    raise _Die(f"entry '{entry}' contains invalid ID - {exc.msg}\n") from None
                if m:
                    if m.group(1) in entries:
                        raise _Die(f"duplicate mapping for source '{m.group(1)}'\n")
                    entries.add(m.group(1))
                else:
                    if seen_default:
                        raise _Die("default target ID can only be provided once\n")
                    seen_default = True
            if identity and (seen_default or entries):
                raise _Die("identity mapping cannot be combined with other mappings\n")
        except _Die as exc:
            raise _Die(exc.msg + "\n") from None  # `die "$@\n"`

    return validator


# pve-storage Plugin.pm::valid_content_types('dir') plus 'import' (Storage.pm::verify_content)
_STORAGE_CONTENT = {"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"}


def _verify_storage_content(value: str) -> None:
    if value not in _STORAGE_CONTENT:
        raise _Die(f"invalid content type '{value}'\n")


def _verify_tfa_secret(value: str) -> None:
    if not (
        re.match(r"^v2-0x[0-9a-fA-F]{16,128}$", value)
        or re.match(r"^v2-[A-Z2-7=]{16,128}$", value)
        or re.match(r"^(?:[A-Z2-7=]{16}|[A-Fa-f0-9]{40})$", value)
    ):
        raise _Die("unable to decode TFA secret\n")


# Code-ref formats: name -> validator that raises _Die with the exact `die` text.
# Any other named format that appears in the schema (e.g. pve-qm-boot, pve-vm-cpu-conf, pve-cpuset,
# pve-calendar-event, the firewall and SDN formats, timezone) is accepted without a check: PVE would
# validate it, the simulator does not need to.
_FORMATS: dict[str, Callable[[str], None]] = {
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
_HASH_FORMATS: dict[str, dict[str, dict[str, Any]]] = {
    # qemu-server QemuServer/Network.pm $ipconfig_fmt
    "pve-qm-ipconfig": {
        "gw": {"type": "string", "format": "ipv4", "optional": 1, "requires": "ip"},
        "gw6": {"type": "string", "format": "ipv6", "optional": 1, "requires": "ip6"},
        "ip": {"type": "string", "format": "pve-ipv4-config", "optional": 1, "default": "dhcp"},
        "ip6": {"type": "string", "format": "pve-ipv6-config", "optional": 1, "default": "dhcp"},
    },
}

_FORMAT_NAME_RE = re.compile(r"^(.*?)(?:-(list|opt))?$")


def _check_format(fmt: Any, value: str, path: str) -> None:
    """JSONSchema.pm::check_format; raises _Die with `$@`."""
    if isinstance(fmt, dict):
        _parse_property_string(fmt, value, path)
        return
    if fmt == "regex":
        return
    m = _FORMAT_NAME_RE.match(fmt)
    name, kind = (m.group(1), m.group(2) or "none") if m else (fmt, "none")
    if name in _HASH_FORMATS:
        if kind != "none":
            raise _Die(f"'-{kind}' format must have code ref, not hash\n")
        _parse_property_string(_HASH_FORMATS[name], value, path)
        return
    validator = _FORMATS.get(name)
    if validator is None:
        return  # not implemented here: accepted (see _FORMATS)
    if kind == "list":
        for item in split_list(value):  # "Note: we allow empty lists"
            validator(item)
    elif kind == "opt":
        if _perl_true(value):
            validator(value)
    else:
        validator(value)


_PS_KV_RE = re.compile(r"^([^=]+)=(.+)$")
_BLANK_RE = re.compile(r"^\s*$")


def _parse_boolean(text: str) -> int | None:  # JSONSchema.pm::parse_boolean
    if re.match(r"^(1|on|yes|true)$", text, re.I):
        return 1
    if re.match(r"^(0|off|no|false)$", text, re.I):
        return 0
    return None


def _parse_property_string(fmt: dict[str, dict[str, Any]], data: str, path: str) -> dict[str, Any]:
    """JSONSchema.pm::parse_property_string (additional properties not allowed)."""
    res: dict[str, Any] = {}
    default_key: str | None = None
    for part in data.split(","):
        if _BLANK_RE.match(part):
            continue
        m = _PS_KV_RE.match(part)
        if m:
            k, v = m.group(1), m.group(2)
            if res.get(k) is not None:
                raise _Die(f"duplicate key in comma-separated list property: {k}\n")
            schema = fmt.get(k)
            alias = schema.get("alias") if schema else None
            if alias:
                key_alias = schema.get("keyAlias") if schema else None
                if key_alias:
                    if res.get(key_alias) is not None:
                        raise _Die(f"key alias '{key_alias}' is already defined\n")
                    res[key_alias] = k
                k = alias
                schema = fmt.get(k)
            if not schema:
                raise _Die(f"invalid key in comma-separated list property: {k}\n")
            if schema.get("type") == "boolean":
                parsed = _parse_boolean(v)
                res[k] = parsed if parsed is not None else v
            else:
                res[k] = v
        elif "=" not in part:
            if default_key:
                raise _Die(f"duplicate key in comma-separated list property: {default_key}\n")
            for key, sub in fmt.items():
                if sub.get("default_key"):
                    default_key = key
                    current = res.get(key)
                    if current is None or not _perl_true(_perl_str(current)):
                        res[key] = part
                        break
                    raise _Die(f"duplicate key in comma-separated list property: {default_key}\n")
            if not default_key:
                raise _Die("value without key, but schema does not define a default key\n")
        else:
            raise _Die("missing key in comma-separated list property\n")
    errors: dict[str, str] = {}
    _check_object(path, fmt, res, 0, errors)
    if errors:
        raise _format_error(errors)
    return res


# ----------------------------------------------------------------------------------------------
# check_prop / check_object / check_type (JSONSchema.pm)
# ----------------------------------------------------------------------------------------------


def _check_type(path: str, typ: Any, value: Any, errors: dict[str, str]) -> bool:
    if not typ:
        return True
    if isinstance(typ, list):
        for t in typ:
            tmp: dict[str, str] = {}
            _check_type(path, t, value, tmp)
            if not tmp:
                return True
        _add_error(errors, path, f"type check ('{'|'.join(typ)}') failed")
        return False
    if isinstance(typ, dict):
        tmp = {}
        _check_prop(value, typ, path, tmp)
        if not tmp:
            return True
        _add_error(errors, path, "type check failed")
        return False
    if typ == "any":
        return True
    if typ == "null":
        if value is not None:
            _add_error(errors, path, f"type check ('{typ}') failed - value is not null")
            return False
        return True
    vt = _perl_ref(value)
    if typ == "array":
        if vt != "ARRAY":
            _add_error(errors, path, f"type check ('{typ}') failed")
            return False
        return True
    if typ == "object":
        if vt != "HASH":
            _add_error(errors, path, f"type check ('{typ}') failed")
            return False
        return True
    if vt:
        if typ == "boolean" and vt == _JSON_BOOL_CLASS:
            return True
        _add_error(errors, path, f"type check ('{typ}') failed - got {vt}")
        return False
    text = _scalar(value)
    if typ == "boolean":
        # only '1' and '0': the yes/no/on/off spellings are accepted in property strings and on the
        # command line (parse_boolean), not by the API
        if text in ("1", "0"):
            return True
    elif typ == "integer":
        if _IS_INTEGER_RE.match(text):
            return True
    elif typ == "number":
        if _is_number(text):
            return True
    else:
        return True  # 'string' and unknown types
    _add_error(errors, path, f"type check ('{typ}') failed - got '{text}'")
    return False


def _scalar(value: Any) -> str:
    if isinstance(value, RepeatedValue):
        return "\0".join(value)
    return _perl_str(value)


def _check_prop(
    value: Any, schema: Any, path: str, errors: dict[str, str], instance_type: str | None = None
) -> None:
    if not isinstance(schema, dict):
        _add_error(errors, path, "Invalid schema definition.")
        return
    optional_for_type = False
    if schema.get("oneOf"):
        if schema.get("type-property"):
            optional_for_type = True
            for inner in schema["oneOf"]:
                if not instance_type:
                    break
                if inner.get("instance-types") is None:
                    _add_error(errors, path, "missing 'instance-types' in oneOf alternative")
                    return
                if instance_type not in inner["instance-types"]:
                    continue
                optional_for_type = bool(inner.get("optional"))
                _check_prop(value, inner, path, errors)
        else:
            collected: list[str] = []
            for i, inner in enumerate(schema["oneOf"]):
                inner_errors: dict[str, str] = {}
                _check_prop(value, inner, f"{path}.oneOf[{i}]", inner_errors)
                if not inner_errors:
                    break
                collected.extend(k for k in inner_errors if k not in collected)
            else:
                # JSONSchema.pm copies `$inner_errors->{$path}` (always undef) under each inner path,
                # so PVE reports these paths without text; an empty message here.
                for inner_path in collected:
                    errors.setdefault(inner_path, "")
    elif instance_type:
        if schema.get("instance-types") is None:
            _add_error(errors, path, "missing 'instance-types'")
            return
    if schema.get("extends"):
        _check_prop(value, schema["extends"], path, errors)

    if value is None:
        if schema.get("type") == "null":
            return
        if not (schema.get("optional") or schema.get("alias") or schema.get("group") or optional_for_type):
            _add_error(errors, path, "property is missing and it is not optional")
        return

    if not _check_type(path, schema.get("type"), value, errors):
        return

    vt = _perl_ref(value)
    if vt == "ARRAY":
        items = schema.get("items")
        if isinstance(items, dict):
            for ind, el in enumerate(value):
                _check_prop(el, items, f"{path}[{ind}]", errors)
        return
    if vt == "HASH":
        if schema.get("properties") is not None or schema.get("additionalProperties"):
            _check_object(path, schema.get("properties") or {}, value, schema.get("additionalProperties"), errors)
        return
    if vt:  # JSON boolean for a boolean property
        return

    text = _scalar(value)
    fmt = schema.get("format")
    if fmt:
        try:
            _check_format(fmt, text, path)
        except _Die as exc:
            _add_error(errors, path, "invalid format - " + exc.msg)
            return
    pattern = schema.get("pattern")
    if pattern:
        if _anchored(pattern).match(text) is None:
            _add_error(errors, path, "value does not match the regex pattern")
            return
    max_len = schema.get("maxLength")
    if max_len is not None and len(text) > _num(max_len):
        _add_error(errors, path, f"value may only be {_perl_str(max_len)} characters long")
        return
    min_len = schema.get("minLength")
    if min_len is not None and len(text) < _num(min_len):
        _add_error(errors, path, f"value must be at least {_perl_str(min_len)} characters long")
        return
    if _is_number(text):
        maximum = schema.get("maximum")
        if maximum is not None and float(text) > _num(maximum):
            _add_error(errors, path, f"value must have a maximum value of {_perl_str(maximum)}")
            return
        minimum = schema.get("minimum")
        if minimum is not None and float(text) < _num(minimum):
            _add_error(errors, path, f"value must have a minimum value of {_perl_str(minimum)}")
            return
    enum = schema.get("enum")
    if enum:
        if not any(_perl_str(ev) == text for ev in enum):
            _add_error(
                errors,
                path,
                f"value '{text}' does not have a value in the enumeration '{', '.join(_perl_str(e) for e in enum)}'",
            )


def _instance_type(schema: dict[str, Any], key: str, value: dict[str, Any]) -> str | None:
    sub = schema.get(key)
    prop = sub.get("type-property") if isinstance(sub, dict) else None
    if prop:
        it = value.get(prop)
        return None if it is None else _scalar(it)
    return None


def _check_object(
    path: str,
    schema: dict[str, Any],
    value: dict[str, Any],
    additional: Any,
    errors: dict[str, str],
    required: Iterable[str] | None = None,
) -> None:
    """JSONSchema.pm::check_object. `required`, when given, lists the only schema keys that can yield
    an error while absent (a precomputed shortcut for the large qemu config schemas)."""
    if not isinstance(value, dict):
        _add_error(errors, path, "an object is required")
        return
    keys: Iterable[str]
    if required is None:
        keys = schema.keys()
    else:
        keys = list(value.keys()) + [k for k in required if k not in value]
    for k in keys:
        sub = schema.get(k)
        if sub is None:
            continue
        _check_prop(value.get(k), sub, f"{path}.{k}" if path else k, errors, _instance_type(schema, k, value))
    for k in value:
        newpath = f"{path}.{k}" if path else k
        sub = schema.get(k)
        if sub is not None:
            requires = sub.get("requires")
            if requires:
                if isinstance(requires, dict):
                    _check_prop(value, requires, path, errors)
                elif value.get(requires) is None:
                    _add_error(
                        errors,
                        f"{path}.{requires}" if path else requires,
                        f"missing property - '{newpath}' requires this property",
                    )
            matched = True
            if sub.get("oneOf"):
                it = _instance_type(schema, k, value)
                matched = False
                for alt in sub["oneOf"]:
                    its = alt.get("instance-types")
                    if its and it not in its:
                        continue
                    matched = True
                    break
            if matched:
                continue
        if additional is not None and not additional:
            _add_error(
                errors, newpath, "property is not defined in schema and the schema does not allow additional properties"
            )
            continue
        if isinstance(additional, dict):
            _check_prop(value[k], additional, newpath, errors)


# ----------------------------------------------------------------------------------------------
# Schema, endpoints and path matching
# ----------------------------------------------------------------------------------------------

# How many numbered keys each `name[n]` family has (the dump keeps only `name[n]`).
_INDEXED_COUNT: dict[str, int] = {
    # qemu-server: QemuServer.pm $MAX_NETS (netN and ipconfigN), Drive.pm $MAX_*_DISKS and
    # $MAX_UNUSED_DISKS, PCI.pm $MAX_HOSTPCI_DEVICES, USB.pm $MAX_USB_DEVICES, $MAX_SERIAL_PORTS,
    # $MAX_PARALLEL_PORTS, Memory.pm $MAX_NUMA, Virtiofs.pm $MAX_VIRTIOFS
    "net": 32,
    "ipconfig": 32,
    "ide": 4,
    "sata": 6,
    "scsi": 31,
    "virtio": 16,
    "unused": 256,
    "hostpci": 16,
    "usb": 14,
    "serial": 4,
    "parallel": 3,
    "numa": 8,
    "virtiofs": 10,
    # pve-container LXC/Config.pm $MAX_MOUNT_POINTS, $MAX_DEVICES (LXC netN and unusedN share the names above)
    "mp": 256,
    "dev": 256,
    # pve-cluster corosync links link0..link7; pve-manager NodeConfig.pm $MAX_ACME_DOMAINS
    "link": 8,
    "acmedomain": 5,
}
_INDEXED_DEFAULT = 32


def _expand_properties(props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, sub in props.items():
        if key.endswith("[n]"):
            base = key[:-3]
            for i in range(_INDEXED_COUNT.get(base, _INDEXED_DEFAULT)):
                out[f"{base}{i}"] = sub
        else:
            out[key] = sub
    return out


@dataclass(frozen=True, eq=False, slots=True)
class Endpoint:
    """One path and method of the API schema."""

    path: str  # template, e.g. "/nodes/{node}/qemu/{vmid}/status/start"
    method: str
    info: dict[str, Any] = field(repr=False)  # the raw schema entry for this method
    proxyto: str | None
    properties: dict[str, Any] = field(repr=False)  # parameters with indexed keys expanded
    additional_properties: Any = field(repr=False)
    required: tuple[str, ...] = field(repr=False)  # keys that are checked even when absent


def _make_endpoint(path: str, method: str, info: dict[str, Any]) -> Endpoint:
    params = info.get("parameters") or {}
    props = _expand_properties(params.get("properties") or {})
    required = tuple(
        k
        for k, s in props.items()
        if isinstance(s, dict)
        and (not (s.get("optional") or s.get("alias") or s.get("group")) or s.get("oneOf") or s.get("extends"))
    )
    return Endpoint(
        path=path,
        method=method,
        info=info,
        proxyto=info.get("proxyto"),
        properties=props,
        additional_properties=params.get("additionalProperties"),
        required=required,
    )


class _Node:
    __slots__ = ("static", "var_name", "var_child", "methods", "template")

    def __init__(self, template: str) -> None:
        self.static: dict[str, _Node] = {}
        self.var_name: str | None = None
        self.var_child: _Node | None = None
        self.methods: dict[str, Endpoint] = {}
        self.template = template


_VAR_RE = re.compile(r"^\{([^}]+)\}$")


def _segments(path: str) -> list[str]:
    # pve-common RESTHandler.pm::find_handler: `grep { length($_) > 0 } split('\/+', $path)`
    return [s for s in path.split("/") if s]


class Schema:
    """The API schema: `match` a request to its endpoint, `validate` its parameters."""

    def __init__(self, tree: list[dict[str, Any]]) -> None:
        self._root = _Node("/")
        self.endpoints: list[Endpoint] = []
        stack = list(tree)
        while stack:
            node = stack.pop()
            self._add(node["path"], node.get("info") or {})
            stack.extend(node.get("children") or [])

    @classmethod
    def load(cls, path: str | None = None) -> Schema:
        """Load the schema (default: the packaged `pve-apidata-9.1.json.gz`); cached per path."""
        return _load(path)

    def _add(self, template: str, info: dict[str, Any]) -> None:
        cur = self._root
        for seg in _segments(template):
            m = _VAR_RE.match(seg)
            if m:
                if cur.var_child is None:
                    cur.var_name = m.group(1)
                    cur.var_child = _Node(template)
                cur = cur.var_child
            else:
                cur = cur.static.setdefault(seg, _Node(template))
        cur.template = template
        for method, minfo in info.items():
            ep = _make_endpoint(template, method, minfo)
            cur.methods[method] = ep
            self.endpoints.append(ep)

    def _find(self, path: str) -> tuple[_Node, dict[str, str]] | None:
        cur = self._root
        params: dict[str, str] = {}
        for seg in _segments(path):
            nxt = cur.static.get(seg)  # an exact name wins over a `{param}` (RESTHandler.pm::map_path_to_methods)
            if nxt is None:
                if cur.var_child is None:
                    return None
                params[cur.var_name] = seg  # type: ignore[index]
                nxt = cur.var_child
            cur = nxt
        return cur, params

    def match(self, method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        """Find the endpoint for `method` and `path` (relative to /api2/json, already percent-decoded
        as pveproxy does with `uri_unescape`); None when PVE would answer 501."""
        found = self._find(path)
        if found is None:
            return None
        node, params = found
        ep = node.methods.get(method.upper())
        return None if ep is None else (ep, params)

    def path_exists(self, path: str) -> bool:
        found = self._find(path)
        return found is not None and bool(found[0].methods)

    def endpoint(self, method: str, template: str) -> Endpoint:
        """The endpoint for a path template such as "/nodes/{node}/qemu"; KeyError if there is none."""
        cur = self._root
        for seg in _segments(template):
            m = _VAR_RE.match(seg)
            nxt = cur.var_child if m else cur.static.get(seg)
            if nxt is None:
                raise KeyError(f"{method} {template}")
            cur = nxt
        ep = cur.methods.get(method.upper())
        if ep is None:
            raise KeyError(f"{method} {template}")
        return ep

    def validate(self, endpoint: Endpoint, params: dict[str, object]) -> dict[str, object]:
        """Check `params` (path params plus query/body params) like `JSONSchema.pm::validate`.

        Returns the params coerced to their schema types: integer -> int, boolean -> 0/1,
        number -> float, string -> str (JSON numbers as Perl prints them; repeated form keys joined
        with NUL). A None value (a form key without `=`, or JSON null) counts as absent and is kept.
        Raises ParamError carrying every field's error.
        """
        errors: dict[str, str] = {}
        _check_object("", endpoint.properties, params, endpoint.additional_properties, errors, endpoint.required)
        if errors:
            raise ParamError(errors)
        out: dict[str, object] = {}
        props = endpoint.properties
        for key, value in params.items():
            sub = props.get(key)
            out[key] = _coerce(value, sub.get("type") if isinstance(sub, dict) else None)
        return out

    def check_returns(self, endpoint: Endpoint, data: object) -> list[str]:
        """Problems where `data` does not fit the endpoint's `returns` schema; [] if it fits."""
        problems: list[str] = []
        returns = endpoint.info.get("returns")
        if isinstance(returns, dict):
            _check_return_value(data, returns, "data", problems)
        return problems

    def permissions(self, endpoint: Endpoint) -> dict[str, Any]:
        return endpoint.info.get("permissions") or {}


def _coerce(value: Any, typ: Any) -> object:
    if value is None:
        return None
    if isinstance(value, RepeatedValue):
        value = "\0".join(value)
    if typ == "boolean":
        if isinstance(value, bool):
            return int(value)
        return 1 if _perl_str(value) == "1" else 0
    if typ == "integer":
        return int(_perl_str(value).strip())
    if typ == "number":
        return float(_perl_str(value).strip())
    if typ == "string" or typ is None:
        return value if isinstance(value, (dict, list)) else _perl_str(value)
    return value


def _check_return_value(data: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    typ = schema.get("type")
    if data is None:
        if typ not in (None, "null", "any"):
            problems.append(f"{path}: null where {typ} expected")
        return
    ok = True
    if typ == "object":
        ok = isinstance(data, dict)
    elif typ == "array":
        ok = isinstance(data, list)
    elif typ == "string":
        ok = isinstance(data, str)
    elif typ == "integer":
        ok = isinstance(data, int) and not isinstance(data, bool)
    elif typ == "number":
        ok = isinstance(data, (int, float)) and not isinstance(data, bool)
    elif typ == "boolean":
        ok = isinstance(data, bool) or (isinstance(data, int) and data in (0, 1))
    elif typ == "null":
        ok = data is None
    if not ok:
        problems.append(f"{path}: {type(data).__name__} where {typ} expected")
        return
    enum = schema.get("enum")
    if isinstance(enum, list) and not isinstance(data, (dict, list)) and data not in enum and str(data) not in enum:
        problems.append(f"{path}: {data!r} not one of {enum}")
    if isinstance(data, dict):
        props = schema.get("properties")
        if isinstance(props, dict) and props and schema.get("additionalProperties") in (0, False):
            extra = sorted(set(data) - set(props))
            if extra:
                problems.append(f"{path}: properties the schema does not allow: {extra}")
        if isinstance(props, dict):
            for key, sub in props.items():
                if key not in data or data[key] is None:
                    if isinstance(sub, dict) and not sub.get("optional"):
                        problems.append(f"{path}.{key}: required property missing")
                    continue
                if isinstance(sub, dict):
                    _check_return_value(data[key], sub, f"{path}.{key}", problems)
    elif isinstance(data, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, el in enumerate(data):
                _check_return_value(el, items, f"{path}[{i}]", problems)


_DEFAULT_DATA = "pve-apidata-9.1.json.gz"


@functools.cache
def _load(path: str | None) -> Schema:
    if path is None:
        raw = importlib.resources.files("pvectl.sim").joinpath("data", _DEFAULT_DATA).read_bytes()
    else:
        raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return Schema(json.loads(raw))
