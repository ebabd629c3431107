"""`Record`: small immutable value classes without `dataclasses`.

`dataclasses` imports `inspect`, about 10 ms of every command's start-up; these records keep the
properties that matter here (immutable, slotted, compared and hashed by value, `to_dict`) for a few
lines of code.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Record:
    """Immutable, slotted, compared and hashed by value; built with keyword arguments."""

    __slots__ = ()
    _defaults: dict[str, Any] = {}

    def __init__(self, **kw: Any) -> None:
        set_ = object.__setattr__
        for name in self.__slots__:
            if name in kw:
                set_(self, name, kw.pop(name))
            elif name in self._defaults:
                set_(self, name, self._defaults[name])
            else:
                raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
        if kw:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {sorted(kw)}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen (cannot delete {name!r})")

    def _values(self) -> tuple:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(tuple(sorted(v.items())) if isinstance(v, dict) else v for v in self._values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(
            f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed."""
        kw = {n: getattr(self, n) for n in self.__slots__}
        kw.update(changes)
        return type(self)(**kw)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n in self.__slots__:
            v = getattr(self, n)
            if isinstance(v, Record):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = [x.to_dict() if isinstance(x, Record) else x for x in v]
            elif isinstance(v, dict):
                v = dict(v)
            out[n] = v
        return out
