"""Proxmox task ids (UPIDs): parse and format.

Format (pve-common `src/PVE/UPID.pm::encode`, `spec/pve-semantics.md` §1.1)::

    UPID:<node>:<pid %08X>:<pstart %08X>:<starttime %08X>:<type>:<id>:<user>:

The trailing colon is part of the UPID (9 `:`-separated segments, the last one empty). `pstart` has 8–9
hex digits (9 after ~497 days of uptime). `id` may be empty. `user` is the token id
`user@realm!token` for tasks started with an API token.
"""

from __future__ import annotations

from .lazyre import LazyPattern

TYPE_CHECKING = False  # `typing` costs start-up time; annotations are strings (PEP 563)
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Upid", "parse_upid", "is_upid"]

# The decoder regex of UPID.pm::decode, anchored at the very end (`$` would also take a trailing
# newline) and without control characters.
_UPID_RE = LazyPattern(
    r"^UPID:(?P<node>[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?):(?P<pid>[0-9A-Fa-f]{8}):"
    r"(?P<pstart>[0-9A-Fa-f]{8,9}):(?P<starttime>[0-9A-Fa-f]{8}):(?P<type>[^:\s/\x00-\x1f\x7f]+):"
    r"(?P<id>[^:\s/\x00-\x1f\x7f]*):(?P<user>[^:\s/\x00-\x1f\x7f]+):\Z"
)
_NODE_RE = LazyPattern(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\Z")
_TYPE_RE = LazyPattern(r"^[^:\s/\x00-\x1f\x7f]+\Z")
_ID_RE = LazyPattern(r"^[^:\s/\x00-\x1f\x7f]*\Z")


class Upid:
    """One task id, immutable and hashable. `str(upid)` gives the UPID text back."""

    __slots__ = ("node", "pid", "pstart", "starttime", "type", "id", "user", "_text")
    _FIELDS = ("node", "pid", "pstart", "starttime", "type", "id", "user")

    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str
    _text: str | None

    def __init__(self, node: str, pid: int, pstart: int, starttime: int, type: str, id: str,
                 user: str, _text: str | None = None) -> None:
        # `_text` is the exact text it was parsed from: Proxmox finds the task log by the literal UPID
        # string, so a parsed UPID is sent back exactly as received (e.g. lower-case hex). Not part of
        # equality.
        if _text is None:
            _check_fields(node, pid, pstart, starttime, type, id, user)
        set_ = object.__setattr__
        for k, v in zip(self.__slots__, (node, pid, pstart, starttime, type, id, user, _text)):
            set_(self, k, v)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Upid is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Upid is immutable (cannot delete {name!r})")

    def _key(self) -> tuple[str, int, int, int, str, str, str]:
        return (self.node, self.pid, self.pstart, self.starttime, self.type, self.id, self.user)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Upid) or other.__class__ is not Upid:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "Upid(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self._FIELDS) + ")"

    def __reduce__(self) -> tuple[Callable[..., Upid], tuple[str | int | None, ...]]:
        return (Upid, self._key() + (self._text,))

    @classmethod
    def parse(cls, text: str) -> Upid:
        """Parse a UPID string; ValueError with the reason when it is not one."""
        if not isinstance(text, str):
            raise ValueError(f"not a UPID: expected a string, got {type(text).__name__}")
        m = _UPID_RE.match(text)
        if m is None:
            raise ValueError(_why_not(text))
        g = m.groupdict()
        return cls(node=g["node"], pid=int(g["pid"], 16), pstart=int(g["pstart"], 16),
                   starttime=int(g["starttime"], 16), type=g["type"], id=g["id"], user=g["user"],
                   _text=text)

    def format(self) -> str:
        """The canonical encoding, as `UPID.pm::encode` writes it."""
        return (f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:{self.starttime:08X}:"
                f"{self.type}:{self.id}:{self.user}:")

    def __str__(self) -> str:
        return self._text if self._text is not None else self.format()

    @property
    def vmid(self) -> int | None:
        """`id` as a VMID when it is one (for `qmclone` it is the SOURCE vmid, §1.1)."""
        return int(self.id) if self.id.isascii() and self.id.isdigit() else None

    @property
    def userid(self) -> str:
        """`user@realm`, without a token name (the status endpoint splits it the same way, §1.2)."""
        return self.user.split("!", 1)[0]

    @property
    def tokenid(self) -> str | None:
        """The token name for token tasks, else None."""
        return self.user.split("!", 1)[1] if "!" in self.user else None


def _check_fields(node: str, pid: int, pstart: int, starttime: int, type: str, id: str,
                  user: str) -> None:
    problems = []
    if not isinstance(node, str) or not _NODE_RE.match(node):
        problems.append(f"node {node!r}")
    if not isinstance(pid, int) or not 0 <= pid <= 0xFFFFFFFF:
        problems.append(f"pid {pid!r}")
    if not isinstance(pstart, int) or not 0 <= pstart <= 0xFFFFFFFFF:
        problems.append(f"pstart {pstart!r}")
    if not isinstance(starttime, int) or not 0 <= starttime <= 0xFFFFFFFF:
        problems.append(f"starttime {starttime!r}")
    if not isinstance(type, str) or not _TYPE_RE.match(type):
        problems.append(f"type {type!r}")
    if not isinstance(id, str) or not _ID_RE.match(id):
        problems.append(f"id {id!r}")
    if not isinstance(user, str) or not _TYPE_RE.match(user):
        problems.append(f"user {user!r}")
    if problems:
        raise ValueError("invalid UPID fields: " + ", ".join(problems))


def _why_not(text: str) -> str:
    shown = text if len(text) <= 120 else text[:117] + "..."
    if not text.startswith("UPID:"):
        return f"not a UPID: {shown!r} does not start with 'UPID:'"
    parts = text.split(":")
    if not text.endswith(":") or len(parts) != 9:
        return (f"not a UPID: {shown!r} has {len(parts)} ':'-separated segments, expected 9 "
                f"(UPID:node:pid:pstart:starttime:type:id:user: with a trailing colon)")
    names = ["", "node", "pid", "pstart", "starttime", "type", "id", "user"]
    checks = [None, _NODE_RE, LazyPattern(r"^[0-9A-Fa-f]{8}\Z"), LazyPattern(r"^[0-9A-Fa-f]{8,9}\Z"),
              LazyPattern(r"^[0-9A-Fa-f]{8}\Z"), _TYPE_RE, _ID_RE, _TYPE_RE]
    expect = ["", "a node name", "8 hex digits", "8-9 hex digits", "8 hex digits",
              "a task type without ':', '/' or spaces", "no ':', '/' or spaces", "a user id"]
    for i in range(1, 8):
        rx = checks[i]
        if rx is not None and not rx.match(parts[i]):
            return f"not a UPID: {shown!r}: {names[i]} {parts[i]!r} is not {expect[i]}"
    return f"not a UPID: {shown!r}"


def parse_upid(text: str) -> Upid:
    return Upid.parse(text)


def is_upid(text: object) -> bool:
    return isinstance(text, str) and _UPID_RE.match(text) is not None
