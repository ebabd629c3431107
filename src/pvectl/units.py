"""Sizes and property strings: as users type them, as Proxmox stores them.

One size grammar for memory and disks: `[+]N[UNIT]`, N a decimal number of ASCII digits (`10`, `1.5`),
UNIT one of K, M, G, T (any case) or the same written KiB, MiB, GiB, TiB - all powers of 1024, as
Proxmox counts (`10GiB` is `10G`; `GB` is refused: it reads as 10^9). Without a unit a disk size is in
bytes and a memory size in MiB, as the API takes them. What is sent is Proxmox's own spelling
(qemu-server `size`: `\\+?\\d+(\\.\\d+)?[KMGT]?`; `memory`: an integer of MiB).
"""

from __future__ import annotations

from .errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

_UNIT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_MIB = 1024**2
MEMORY_MIN_MIB = 16              # qemu-server `memory` (current) minimum
MEMORY_MAX_MIB = 4 * 1024**3     # 4 PiB: no schema maximum; a bound against typos and overflow

DISK_FORMS = ("+N to grow by N, or N for an absolute size; N is a number (10, 1.5) with K, M, G or T "
              "(or KiB, MiB, GiB, TiB: powers of 1024), no unit = bytes")
MEMORY_FORMS = ("N with K, M, G or T (or KiB, MiB, GiB, TiB: powers of 1024), e.g. 4G, 1.5GiB, 4096M; "
                "no unit = MiB")

_compiled: dict[str, re.Pattern[str]] = {}


def _rx(name: str, pattern: str) -> re.Pattern[str]:
    """A regex compiled on first use (importing `re` costs start-up time on every run)."""
    rx = _compiled.get(name)
    if rx is None:
        import re

        rx = _compiled[name] = re.compile(pattern)
    return rx


def _parse(text: str) -> tuple[str, str, str, str] | None:
    """(sign, whole, fraction, unit letter upper-case) of `[+]N[.N][K|M|G|T[iB]]`, or None."""
    m = _rx("size", r"\A(\+?)([0-9]+)(?:\.([0-9]+))?(?:([KMGTkmgt])(?:[iI][bB])?)?\Z").match(text.strip())
    if m is None:
        return None
    return m.group(1), m.group(2), m.group(3) or "", (m.group(4) or "").upper()


def _bytes(whole: str, fraction: str, unit: int) -> tuple[int, bool]:
    """(bytes rounded down, exact?) in integer arithmetic (a float would overflow or lose digits)."""
    scale = 10 ** len(fraction)
    total = int(whole) * unit * scale + int(fraction or "0") * unit
    return total // scale, total % scale == 0


def parse_disk_size(text: str, option: str = "--size") -> tuple[bool, int]:
    """`+10G` -> (True, bytes), `50GiB` -> (False, bytes). UsageError (exit 2) showing the accepted
    forms for anything else, its hint in terms of `option` (the flag the size came from); a negative
    size is refused with the reason (disks only grow)."""
    parts = _parse(text) if isinstance(text, str) else None
    if parts is None:
        why = ("disks only grow (Proxmox cannot shrink a disk); " if isinstance(text, str)
               and text.strip().startswith("-") else "")
        raise UsageError(f"invalid disk size {text!r}: {why}expected {DISK_FORMS}",
                         hint=f"e.g. {option} +10G grows by 10 GiB, {option} 50G makes it 50 GiB")
    sign, whole, fraction, unit = parts
    return sign == "+", _bytes(whole, fraction, _UNIT[unit])[0]


def disk_size_param(text: str) -> str:
    """A disk size as Proxmox's resize and clone `size` take it: `10GiB` -> `10G`, ` +4g` -> `+4G`."""
    parse_disk_size(text)
    sign, whole, fraction, unit = _parse(text)  # type: ignore[misc]
    return f"{sign}{whole}{'.' + fraction if fraction else ''}{unit}"


def parse_memory(value: int | str) -> int:
    """MiB from `4096`, `4096M`, `4G`, `4GiB`, `1.5G` (no unit = MiB, as the API's `memory`)."""
    if type(value) is int:
        mib = value
    else:
        parts = _parse(value) if isinstance(value, str) else None
        if parts is None or parts[0]:
            why = "memory is an absolute size, not +N; " if parts is not None else ""
            raise UsageError(f"invalid memory size {value!r}: {why}expected {MEMORY_FORMS}")
        _, whole, fraction, unit = parts
        size, exact = _bytes(whole, fraction, _UNIT[unit or "M"])
        if not exact or size % _MIB:
            raise UsageError(f"memory size {value!r} is not a whole number of MiB", hint="e.g. 1536M or 1.5G")
        mib = size // _MIB
    if mib < MEMORY_MIN_MIB:
        raise UsageError(f"memory {mib} MiB is below Proxmox's minimum of {MEMORY_MIN_MIB} MiB")
    if mib > MEMORY_MAX_MIB:
        raise UsageError(f"memory {value!r} is more than 4 PiB", hint=f"expected {MEMORY_FORMS}")
    return mib


def size_bytes(text: str | None) -> int | None:
    """A drive's `size=` value as Proxmox stores it (`32G`, `512M`, bytes without unit) in bytes;
    None if absent or odd."""
    m = _rx("stored", r"\A([0-9]+)(?:\.([0-9]+))?([KMGT]?)\Z").match(text) if isinstance(text, str) else None
    return _bytes(m.group(1), m.group(2) or "", _UNIT[m.group(3)])[0] if m else None


def parse_prop(value: str) -> tuple[str | None, dict[str, str]]:
    """A property string `a,b=c,d=e` -> (`a` or None, {b: c, d: e}), keeping the key order
    (`local-lvm:vm-100-disk-0,iothread=1,size=32G`, `virtio=BC:24:11:..,bridge=vmbr0`)."""
    first: str | None = None
    opts: dict[str, str] = {}
    for i, part in enumerate(str(value).split(",")):
        if "=" in part:
            k, _, v = part.partition("=")
            opts[k] = v
        elif i == 0:
            first = part
    return first, opts
