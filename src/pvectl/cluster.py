"""`Cluster`: the library's entry point, and the cluster-wide reads (membership, quorum, resources).

    with pvectl.Cluster.from_config() as pve:
        print(pve.status().quorate)
        for vm in pve.vms.list(status="running"):
            print(vm.vmid, vm.name, vm.node)

A `Cluster` owns one `Transport` (keep-alive connection per node, TLS, failover) and hands it to the
resource APIs (`nodes`, `vms`, `templates`, `tasks`); only those modules talk HTTP.
"""

from __future__ import annotations

from .records import Record

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from .config import Config
    from .deadline import Deadline
    from .http import Transport
    from .nodes import NodesApi
    from .tasks import TasksApi
    from .templates import TemplatesApi
    from .vms import VmsApi


class NodeMembership(Record):
    __slots__ = ("name", "online", "nodeid", "ip", "local")

    name: str
    online: bool
    nodeid: int
    ip: str | None
    local: bool


class ClusterStatus(Record):
    __slots__ = ("name", "quorate", "nodes", "version")
    _defaults = {"version": None}

    name: str | None          # None for a standalone node (no `cluster` entry: pve-semantics §10.1)
    quorate: bool
    nodes: tuple[NodeMembership, ...]
    version: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.name, "quorate": self.quorate, "version": self.version,
                "nodes": [{"name": n.name, "online": n.online, "nodeid": n.nodeid, "ip": n.ip}
                          for n in self.nodes]}


class Cluster:
    """A Proxmox VE cluster, reached through any of its nodes."""

    def __init__(self, config: Config, transport: Transport) -> None:
        self.config = config
        self.transport = transport
        self._apis: dict[str, Any] = {}

    @classmethod
    def from_config(cls, path: str | None = None, *, cluster: str | None = None, **transport_options: Any) -> Cluster:
        """Load `cluster-config.yaml` (DESIGN §2 lookup order), read the token once, connect lazily."""
        from .config import load_config
        from .credentials import load_token
        from .http import Transport

        config = load_config(path, cluster=cluster)

        def auth() -> str:
            # called at the first request and after refresh_credentials(); the transport keeps it
            return load_token(config).header()

        return cls(config, Transport.from_config(config, auth=auth, **transport_options))

    def refresh_credentials(self) -> None:
        """Read the API token again (after a rotation); requests from now on send the new one."""
        from .credentials import reset

        reset()                      # the per-process token cache (pass, token_file)
        self.transport.refresh_auth()

    def deadline(self, seconds: Deadline | float | None) -> Any:
        """`with pve.deadline(30): ...` — every request this thread makes inside the block ends within
        30 s: a read or write still unanswered then raises DeadlineExceeded (exit 4)."""
        from .deadline import Deadline

        return self.transport.bounded(Deadline.of(seconds))

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # resource APIs, created on first use
    def _api(self, name: str) -> Any:
        api = self._apis.get(name)
        if api is None:
            if name == "nodes":
                from .nodes import NodesApi as cls_
            elif name == "vms":
                from .vms import VmsApi as cls_  # type: ignore[assignment]
            elif name == "templates":
                from .templates import TemplatesApi as cls_  # type: ignore[assignment]
            else:
                from .tasks import TasksApi as cls_  # type: ignore[assignment]
            api = self._apis[name] = cls_(self)
        return api

    @property
    def nodes(self) -> NodesApi:
        return self._api("nodes")

    @property
    def vms(self) -> VmsApi:
        return self._api("vms")

    @property
    def templates(self) -> TemplatesApi:
        return self._api("templates")

    @property
    def tasks(self) -> TasksApi:
        return self._api("tasks")

    # cluster-wide reads
    def status(self) -> ClusterStatus:
        """GET /cluster/status: name, quorum, and each member's online state."""
        entries = self.transport.get("/cluster/status")
        name: str | None = None
        quorate = True
        version = None
        nodes = []
        for e in entries:
            if e.get("type") == "cluster":
                name = e.get("name")
                quorate = bool(e.get("quorate"))
                version = e.get("version")
            elif e.get("type") == "node":
                nodes.append(NodeMembership(name=e["name"], online=bool(e.get("online")),
                                            nodeid=int(e.get("nodeid", 0)), ip=e.get("ip"),
                                            local=bool(e.get("local"))))
        nodes.sort(key=lambda n: (n.nodeid or 0, n.name))   # the server sends hash order
        return ClusterStatus(name=name, quorate=quorate, nodes=tuple(nodes), version=version)

    def resources(self, type: str | None = None) -> list[dict[str, Any]]:  # noqa: A002 - PVE's name
        """GET /cluster/resources, raw entries (`type`: vm | node | storage | sdn)."""
        return self.transport.get("/cluster/resources", {"type": type} if type else None)

    def permissions(self, path: str | None = None) -> dict[str, dict[str, int]]:
        """GET /access/permissions: the token's effective privileges per ACL path."""
        return self.transport.get("/access/permissions", {"path": path} if path else None)

    def version(self) -> dict[str, Any]:
        return self.transport.get("/version")
