"""Per-thread deadline scopes of a `Transport`: `bounded(d)` and `reporting()`."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from ..deadline import Deadline

__all__ = ["Scope", "Report"]


class Scope:
    """`with transport.bounded(deadline):` — the deadline bounds every request of this thread."""

    __slots__ = ("_stack", "_deadline")

    def __init__(self, stack: list[Deadline], deadline: Deadline) -> None:
        self._stack = stack
        self._deadline = deadline

    def __enter__(self) -> Deadline:
        self._stack.append(self._deadline)
        return self._deadline

    def __exit__(self, *exc: object) -> None:
        self._stack.remove(self._deadline)


class Report:
    """`with transport.reporting():` — see Transport.reporting."""

    __slots__ = ("_local", "_grace", "_saved")

    def __init__(self, local: threading.local, grace: float) -> None:
        self._local = local
        self._grace = grace
        self._saved: Deadline | None = None

    def __enter__(self) -> None:
        from ..deadline import Deadline

        self._saved = getattr(self._local, "grace", None)
        self._local.grace = Deadline(self._grace)

    def __exit__(self, *exc: object) -> None:
        self._local.grace = self._saved
