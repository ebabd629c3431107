"""`Cluster`: the library's entry point. It owns the connections and the write policy, and hands
out the resource APIs.

    with pvectl.Cluster.from_config(dry_run=False, audit=True, timeout=600) as pve:
        print(pve.status().quorate)
        for vm in pve.vms.list(status="running"):
            print(vm.vmid, vm.name, vm.node)
        pve.vms.start("web-1")

A `Cluster` holds one `Session` (config, `Transport` — a kept-alive connection per node and
thread, TLS, failover — and the settings every write follows: dry run, audit, default timeout,
progress callback, `via`). The resource APIs (`nodes`, `vms`, `templates`, `tasks`) take that
session; only `cluster.py` imports them, so nothing below imports back up.
"""

from __future__ import annotations

from .membership import ClusterStatus, NodeMembership, cluster_status
from .session import Session

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .config import Config
    from .credentials import TokenSource
    from .deadline import Deadline
    from .http import Transport
    from .nodes import NodesApi
    from .tasks import TasksApi
    from .templates import TemplatesApi
    from .vms import VmsApi

__all__ = ["Cluster", "ClusterStatus", "NodeMembership"]


class Cluster:
    """A Proxmox VE cluster, reached through any of its nodes."""

    def __init__(self, config: Config | Session, transport: Transport | None = None, **settings: Any) -> None:
        """`Cluster(session)`, or `Cluster(config, transport, dry_run=..., audit=..., timeout=...,
        on_event=..., via=...)`. Most code calls `Cluster.from_config()` instead."""
        if isinstance(config, Session):
            self.session = config if not settings else config.replace(**settings)
        else:
            if transport is None:
                raise TypeError("Cluster(config, transport, ...) needs a transport")
            self.session = Session(config, transport, **settings)
        self._apis: dict[str, Any] = {}
        self._owner = True          # closes the transport (a with_options() copy does not)

    @classmethod
    def from_config(cls, path: str | None = None, *, cluster: str | None = None, dry_run: bool = False,
                    audit: bool | str = True, timeout: float | None = None,
                    on_event: Callable[[dict[str, Any]], None] | None = None, via: str = "library",
                    command: str | None = None, **transport_options: Any) -> Cluster:
        """Load `cluster-config.yaml` (DESIGN §2 lookup order) and connect lazily; the token is read
        once, at the first request (and again after `refresh_credentials()`).

        `dry_run`: every read and guard runs, writes are returned as planned (method, path, params,
        curl line) and nothing is sent. `audit`: True (the default log), False, or a file path.
        `timeout`: the default deadline of each operation, in seconds. `on_event`: a callback for
        progress events. `via`: who calls (library, cli, mcp), recorded in the audit log."""
        from .config import load_config

        return cls.connect(load_config(path, cluster=cluster), dry_run=dry_run, audit=audit, timeout=timeout,
                           on_event=on_event, via=via, command=command, **transport_options)

    @classmethod
    def connect(cls, config: Config, *, dry_run: bool = False, audit: bool | str = True,
                timeout: float | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
                via: str = "library", command: str | None = None, credentials: TokenSource | None = None,
                **transport_options: Any) -> Cluster:
        """`from_config` for a `Config` already loaded (`pvectl.load_config`). `credentials`: the
        cluster's token source, if the caller has already read the token from it (`pvectl doctor`)."""
        from .credentials import TokenSource

        # this Cluster's own token: its refresh_credentials() re-reads no other Cluster's
        source = credentials if credentials is not None else TokenSource(config)
        # `pass show` decrypts in the background while the HTTP and TLS modules are imported
        source.start()
        from .http import Transport

        # the transport asks it at the first request and after refresh_credentials(), and keeps the header
        transport = Transport.from_config(config, auth=source, **transport_options)
        return cls(Session(config, transport, dry_run=dry_run, audit=audit, timeout=timeout, on_event=on_event,
                           via=via, command=command))

    def with_options(self, **settings: Any) -> Cluster:
        """The same cluster and connections with other settings, e.g. `pve.with_options(dry_run=True)`
        to see what a call would send. Closing the copy leaves the connections open."""
        copy = Cluster(self.session.replace(**settings))
        copy._owner = False
        return copy

    @property
    def config(self) -> Config:
        return self.session.config

    @property
    def transport(self) -> Transport:
        return self.session.transport

    @property
    def dry_run(self) -> bool:
        return self.session.dry_run

    def refresh_credentials(self) -> None:
        """Read the API token again (after a rotation); requests from now on send the new one. Only
        this Cluster's token is read again, never another Cluster's in the process."""
        from .credentials import TokenSource, reset

        source = self.transport.auth
        if isinstance(source, TokenSource):
            source.reload()          # raises if it cannot be read: the token in use stays
        else:
            reset()      # a transport made by the caller: its auth may read through load_token's cache
        self.transport.refresh_auth()

    def deadline(self, seconds: Deadline | float | None) -> Any:
        """`with pve.deadline(30): ...` — every request this thread makes inside the block ends within
        30 s: a read or write still unanswered then raises DeadlineExceeded (exit 4)."""
        from .deadline import Deadline

        return self.transport.bounded(Deadline.of(seconds))

    def close(self) -> None:
        if self._owner:
            from .credentials import TokenSource

            self.transport.close()
            source = self.transport.auth
            if isinstance(source, TokenSource):
                source.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # resource APIs, created on first use
    @property
    def nodes(self) -> NodesApi:
        api = self._apis.get("nodes")
        if api is None:
            from .nodes import NodesApi

            api = self._apis["nodes"] = NodesApi(self.session)
        return api

    @property
    def vms(self) -> VmsApi:
        api = self._apis.get("vms")
        if api is None:
            from .vms import VmsApi

            api = self._apis["vms"] = VmsApi(self.session)
        return api

    @property
    def templates(self) -> TemplatesApi:
        api = self._apis.get("templates")
        if api is None:
            from .templates import TemplatesApi

            api = self._apis["templates"] = TemplatesApi(self.session)
        return api

    @property
    def tasks(self) -> TasksApi:
        api = self._apis.get("tasks")
        if api is None:
            from .tasks import TasksApi

            api = self._apis["tasks"] = TasksApi(self.session)
        return api

    # cluster-wide reads
    def status(self) -> ClusterStatus:
        """GET /cluster/status: name, quorum, and each member's online state."""
        return cluster_status(self.session)

    def resources(self, type: str | None = None) -> list[dict[str, Any]]:  # noqa: A002 - PVE's name
        """GET /cluster/resources, raw entries (`type`: vm | node | storage | sdn)."""
        return self.transport.get("/cluster/resources", {"type": type} if type else None)  # type: ignore[no-any-return]

    def permissions(self, path: str | None = None) -> dict[str, dict[str, int]]:
        """GET /access/permissions: the token's effective privileges per ACL path."""
        return self.transport.get("/access/permissions", {"path": path} if path else None)  # type: ignore[no-any-return]

    def version(self) -> dict[str, Any]:
        return self.transport.get("/version")  # type: ignore[no-any-return]
