"""What a command gets: its arguments, the output format, and the library `Cluster` on first use.

The command modules import this, never `main.py`; the cluster comes from `Cluster.from_config`
with the command's settings (dry run, the deadline, `via: cli`, the command line for the audit log),
so a command is parse -> one library call -> render.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

    from ..cluster import Cluster
    from ..config import Config
    from ..credentials import TokenSource
    from ..deadline import Deadline


class Context:
    def __init__(self, args: argparse.Namespace, argv: Sequence[str] = ()) -> None:
        self.args = args
        self.argv = list(argv)      # as given, for the audit log (never holds a secret)
        self.output: str = args.output or ("table" if sys.stdout.isatty() else "json")
        self._config: Config | None = None
        self._cluster: Cluster | None = None
        self._credentials: TokenSource | None = None
        self._deadline: Deadline | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from ..config import load_config

            self._config = load_config(self.args.config, cluster=self.args.cluster)
        return self._config

    @property
    def command(self) -> str:
        import shlex

        return "pvectl " + shlex.join(self.argv)

    @property
    def credentials(self) -> TokenSource:
        """The command's API token source, shared with its cluster (the token is read once)."""
        if self._credentials is None:
            from ..credentials import TokenSource

            self._credentials = TokenSource(self.config)
        return self._credentials

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            from ..cluster import Cluster

            log = (lambda line: sys.stderr.write(f"pvectl: {line}\n")) if self.args.verbose else None
            # from_config starts `pass show` before it imports the HTTP and TLS modules (they overlap)
            self._cluster = Cluster.connect(self.config, dry_run=bool(getattr(self.args, "dry_run", False)),
                                            via="cli", command=self.command, log=log, deadline=self.deadline(),
                                            credentials=self.credentials)
        return self._cluster

    def deadline(self) -> Deadline:
        """The command's one deadline: --timeout bounds every request, not only the waits (http.py)."""
        if self._deadline is None:
            from ..deadline import Deadline

            timeout = self.args.timeout
            if timeout is not None and getattr(self.args, "cmd", None) == "shutdown":
                # `vm shutdown --timeout S` is the guest's time to power off: the library's rule
                from ..vms.power import wait_seconds

                timeout = wait_seconds("shutdown", timeout)
            self._deadline = Deadline(timeout)
        return self._deadline

    def emit(self, data: Any, **kw: Any) -> None:
        from ..render import emit

        emit(data, self.output, **kw)

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
