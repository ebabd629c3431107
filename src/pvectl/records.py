"""`Record`: small immutable value classes without `dataclasses`.

`dataclasses` imports `inspect`, about 10 ms of every command's start-up; these records keep the
properties that matter here (immutable, slotted, compared and hashed by value, `to_dict`) for a few
lines of code.

A record's fields are its `__slots__`, unless the class names them in `_fields`: a record built from
an API answer may keep the answer's entry in one slot and convert each field when it is read (a
property per field), so that a list of 500 VMs costs one small object per VM, not 13 conversions
(`vms.VmSummary`).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Record"]


class Record:
    """Immutable, slotted, compared and hashed by value; built with keyword arguments."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "_fields" not in cls.__dict__ and "__slots__" in cls.__dict__:
            slots = cls.__dict__["__slots__"]
            cls._fields = (slots,) if isinstance(slots, str) else tuple(slots)

    def __init__(self, **kw: Any) -> None:
        set_ = object.__setattr__
        for name in self._fields:
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

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(tuple(tuple(sorted(v.items())) if isinstance(v, dict) else v for v in self._values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(
            f"{n}={getattr(self, n)!r}" for n in self._fields) + ")"

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed."""
        kw: dict[str, Any] = {n: getattr(self, n) for n in self._fields}
        kw.update(changes)
        return type(self)(**kw)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n in self._fields:
            v = getattr(self, n)
            if isinstance(v, Record):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = [x.to_dict() if isinstance(x, Record) else x for x in v]
            elif isinstance(v, dict):
                v = dict(v)
            out[n] = v
        return out
