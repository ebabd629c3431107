"""The one place the server opens a library `Cluster`: every write it makes is audited `via: mcp`."""

from __future__ import annotations

from ..cluster import Cluster


def open_cluster(config: str | None, cluster: str | None) -> Cluster:
    return Cluster.from_config(config, cluster=cluster, via="mcp", command="pvectl mcp")
