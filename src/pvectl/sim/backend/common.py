"""Rules shared by every part of the backend: errors, callers, config keys and value helpers, versions."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..models import GIB, MIB, ROLES, Token


PVE_VERSION = {"version": "9.1.6", "release": "9.1", "repoid": "71482d1833ded40a"}


PVE_MANAGER = "pve-manager/9.1.6/71482d1833ded40a"


KVERSION = ("Linux", "6.17.2-1-pve", "#1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1 (2025-10-21T11:55Z)", "x86_64")


class ApiFail(Exception):
    """An immediate error: HTTP status + PVE's message (+ per-field errors for 400)."""

    def __init__(self, message: str, status: int = 500, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = errors


def param_fail(errors: dict[str, str]) -> ApiFail:
    # pve-common Exception.pm::raise_param_exc
    return ApiFail("Parameter verification failed.", 400, errors)


def perm_fail(path: str, privs: Iterable[str]) -> ApiFail:
    # pve-access-control RPCEnvironment.pm::check / check_any -> raise_perm_exc("$path, $priv")
    return ApiFail(f"Permission check failed ({path}, {'|'.join(privs)})", 403)


@dataclass
class Caller:
    """Who is asking. API tokens are never `root@pam`, so root-only options are refused for them
    (qemu-server API2/Qemu.pm compares `$authuser eq 'root@pam'`; the token id is the auth user)."""

    token: Token

    @property
    def userid(self) -> str:
        return self.token.tokenid

    @property
    def is_root(self) -> bool:
        return self.token.tokenid == "root@pam"


# qemu-server QemuServer.pm `$fast_plug_option` plus every cloud-init key (pve-semantics §7.4, row 6)
FAST_PLUG = {"description", "hookscript", "lock", "migrate_downtime", "migrate_speed", "name", "onboot",
             "protection", "shares", "startup", "tags", "vmstatestorage",
             "citype", "ciuser", "cipassword", "ciupgrade", "cicustom", "searchdomain", "nameserver", "sshkeys"}


GUEST_SHUTDOWN_SECS = 6.0     # how long a guest takes to power off after ACPI shutdown


LIVE_OPTIONS = {"cpuunits", "cpulimit", "agent"}      # applied live by vmconfig_hotplug_pending


DRIVE_PREFIXES = ("ide", "scsi", "virtio", "sata", "efidisk", "tpmstate")


NET_MODELS = ("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
              "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")


# Keys a clone never copies (qemu-server API2/Qemu.pm::clone_vm; pve-semantics §4.3)
CLONE_SKIP = {"snapshots", "parent", "snaptime", "vmstate", "snapstate", "runningcpu", "runningmachine",
              "running-nets-host-mtu", "pending", "template", "lock"}


# Not config options: parameters of the config endpoints themselves
CONFIG_META = {"node", "vmid", "digest", "delete", "revert", "skiplock", "background_delay", "force",
               "import-working-storage"}


def is_drive_key(key: str) -> bool:
    return key.startswith(DRIVE_PREFIXES) and key.rstrip("0123456789") in DRIVE_PREFIXES + ("unused",)


def is_cloudinit_key(key: str) -> bool:
    return key in {"citype", "ciuser", "cipassword", "ciupgrade", "cicustom", "searchdomain", "nameserver",
                   "sshkeys"} or (key.startswith("ipconfig") and key[8:].isdigit())


def config_privilege(key: str) -> str:
    """The privilege PUT/POST config needs for a key (qemu-server Qemu.pm
    `$check_vm_modify_config_perm`: cpuoptions, memoryoptions, cloudinitoptions, generaloptions, ...)."""
    base = key.rstrip("0123456789")
    if key in {"cpu", "cores", "sockets", "vcpus", "cpulimit", "cpuunits", "numa", "affinity"} or base == "numa":
        return "VM.Config.CPU"
    if key in {"memory", "balloon", "shares"}:
        return "VM.Config.Memory"
    if base == "net":
        return "VM.Config.Network"
    if is_cloudinit_key(key):
        return "VM.Config.Cloudinit"
    if is_drive_key(key) or base == "unused":
        return "VM.Config.Disk"
    if key in {"name", "tags", "description", "onboot", "protection", "startup", "agent", "boot", "ostype",
               "hookscript", "keyboard", "localtime", "migrate_downtime", "migrate_speed", "reboot", "tablet",
               "template", "vmstatestorage", "lock"}:
        return "VM.Config.Options"
    return "VM.Config.HWType"


# qemu-server QemuServer.pm `$confdesc`: the options of type `number`. parse_vm_config's check_type
# returns their text unchanged (integers and booleans become numbers), so they read back as strings.
NUMBER_OPTIONS = frozenset({"cpulimit", "migrate_downtime"})


def config_value(key: str, value: Any) -> Any:
    """A validated parameter as the config file reads it back (QemuServer.pm::check_type)."""
    if key in NUMBER_OPTIONS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return value


def parse_prop(value: str) -> tuple[str | None, dict[str, str]]:
    """Split a property string `a,b=c`: the first bare item is returned apart (default key)."""
    first: str | None = None
    out: dict[str, str] = {}
    for i, part in enumerate(str(value).split(",")):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
        elif i == 0:
            first = part
        else:
            out[part] = "1"
    return first, out


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}
    text = text.strip()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


def render_bytes(value: float) -> str:
    """pve-common Format.pm::render_bytes with precision 1 (clone progress; pve-semantics §2.1): the unit
    is int(log1024(value)) once value > 1023, so 1048575 B is `1024.0 KiB`."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    unit = 0
    if value > 1023:
        unit = min(int(math.log(value) / math.log(1024)), len(units) - 1)
        value /= 1024**unit
    return f"{value:.1f} {units[unit]}"


def render_duration(seconds: float) -> str:
    """pve-common Format.pm::render_duration: rounded, `1w 2d 3h 4m 5s` with zero parts left out."""
    rest = round(seconds)
    if not rest:
        return "0s"
    parts = []
    for unit, length in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        v, rest = divmod(rest, length)
        if v:
            parts.append(f"{v}{unit}")
    return " ".join(parts)


def memory_mib(conf: dict[str, Any]) -> int:
    # In PVE 9 `memory` is a property string `[current=]<MiB>` (qemu-server QemuServer/Memory.pm)
    value = conf.get("memory", "512")
    first, kv = parse_prop(str(value))
    return int(kv.get("current", first or 512))


def vm_cpus(conf: dict[str, Any]) -> int:
    return int(conf.get("vcpus") or int(conf.get("sockets", 1)) * int(conf.get("cores", 1)))


def fair_shares(throughput: float, caps: list[float]) -> list[float]:
    """Max-min fair split of `throughput` among copies with per-copy caps (`bwlimit`, a link, a minimum
    duration): a copy capped below an equal share keeps its cap, the rest is shared equally by the others."""
    out = [0.0] * len(caps)
    left = float(throughput)
    order = sorted(range(len(caps)), key=caps.__getitem__)
    for i, idx in enumerate(order):
        out[idx] = min(caps[idx], left / (len(caps) - i))
        left -= out[idx]
    return out


def unknown_guest(kind: str, vmid: int, node: str, config: dict[str, Any]) -> dict[str, Any]:
    """A guest's entry without RRD data (API2Tools.pm::extract_vm_stats: status `unknown`, no name, no
    stats); Cluster.pm::resources adds `lock` and `tags` read from the config."""
    entry: dict[str, Any] = {"id": f"{kind}/{vmid}", "type": kind, "vmid": vmid, "node": node, "status": "unknown"}
    for key in ("lock", "tags"):
        if config.get(key):
            entry[key] = config[key]
    return entry


def _uuid4(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"


_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


def _valid_ssh_keys(text: str) -> bool:
    """pve-common Tools.pm::validate_ssh_public_keys runs `ssh-keygen -l` on each line; here: the key
    type is known and the blob is base64 that starts with the same type (what ssh-keygen checks first)."""
    import base64
    import binascii
    import struct

    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        idx = next((i for i, p in enumerate(parts) if p in _KEY_TYPES), None)
        if idx is None or idx + 1 >= len(parts):
            return False
        try:
            blob = base64.b64decode(parts[idx + 1], validate=True)
            (n,) = struct.unpack(">I", blob[:4])
            if blob[4:4 + n].decode() != parts[idx]:
                return False
        except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
            return False
    return True

def expand_acl(privs: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """ACL path -> privileges or role names, roles expanded; None: Administrator on `/`."""
    acl: dict[str, list[str]] = {}
    for path, names in (privs if privs is not None else {"/": ["Administrator"]}).items():
        expanded: list[str] = []
        for name in names:
            expanded.extend(ROLES.get(name, (name,)))
        acl[path.rstrip("/") or "/"] = sorted(set(expanded))
    return acl
