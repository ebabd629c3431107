"""`Session`: what every resource API works through — the config, the transport, and the policy for
writes (dry run, audit, the default deadline, progress events, who is calling).

`Cluster` builds one and hands it to `vms`, `nodes`, `tasks` and `templates`; those modules and the
operations under them take a `Session` and never import `cluster.py`, so the library's modules
depend one way: cluster -> resource APIs -> operations -> session -> http.

A `Session` does not change once made; `replace()` makes a variant (`dry_run=True`, another
timeout) that shares the same connections.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

    from .config import Config
    from .deadline import Deadline
    from .http import Transport
    from .writes import Writer

# `via` values recorded in the audit log: who asked for the write
VIA = ("library", "cli", "mcp")


class Session:
    __slots__ = ("config", "transport", "dry_run", "audit", "timeout", "on_event", "via", "command", "out")

    config: Config
    transport: Transport
    dry_run: bool
    audit: bool | str              # False: no audit log; True: the default file; a str: that file
    timeout: float | None          # the default deadline of one operation, in seconds (None: none)
    on_event: Callable[[dict[str, Any]], None] | None
    via: str
    command: str | None            # recorded in the audit log (the CLI's command line)
    out: TextIO | None             # where dry-run curl lines are printed (None: only in the result)

    def __init__(self, config: Config, transport: Transport, *, dry_run: bool = False, audit: bool | str = True,
                 timeout: float | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
                 via: str = "library", command: str | None = None, out: TextIO | None = None) -> None:
        if via not in VIA:
            from .errors import UsageError

            raise UsageError(f"via must be one of {', '.join(VIA)}, not {via!r}")
        if timeout is not None and not timeout > 0:
            from .errors import UsageError

            raise UsageError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
        for name, value in (("config", config), ("transport", transport), ("dry_run", dry_run),
                            ("audit", audit), ("timeout", timeout), ("on_event", on_event), ("via", via),
                            ("command", command), ("out", out)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Session does not change; use session.replace(...)")

    def replace(self, **changes: Any) -> Session:
        """A copy with some settings changed, sharing the config and the connections."""
        values = {name: getattr(self, name) for name in self.__slots__}
        unknown = set(changes) - set(values) - {"config", "transport"}
        if unknown:
            raise TypeError(f"unknown Session setting(s): {', '.join(sorted(unknown))}")
        values.update(changes)
        config, transport = values.pop("config"), values.pop("transport")
        return Session(config, transport, **values)

    def writer(self, command: str | None = None) -> Writer:
        """A fresh `Writer` for one operation: its planned writes (dry run) belong to that operation
        alone, so threads sharing the session do not mix them."""
        from .writes import Writer

        return Writer(self.config, self.transport, command=command or self.command or f"{self.via} call",
                      dry_run=self.dry_run, audit=self.audit, via=self.via,
                      out=self.out if self.out is not None else (sys.stdout if self.via == "cli" else None))

    def deadline(self, timeout: Deadline | float | None | object = None) -> Deadline:
        """The deadline of one operation: `timeout` if given (a number, or a `Deadline` already
        running), else the session's default."""
        from .deadline import Deadline

        if isinstance(timeout, Deadline):
            return timeout
        if timeout is None:
            return Deadline(self.timeout)
        return Deadline.of(timeout)  # type: ignore[arg-type]

    def emit(self, event: str, **data: Any) -> None:
        """Report progress to the `on_event` callback, if any (a failing callback never fails the
        operation: it is the caller's display, not the cluster's state)."""
        if self.on_event is None:
            return
        try:
            self.on_event({"event": event, **data})
        except Exception:  # noqa: BLE001
            pass
