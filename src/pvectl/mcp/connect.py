"""The one place the server opens a library `Cluster`: every write it makes is audited `via: mcp`."""

from __future__ import annotations

from ..cluster import Cluster


def open_cluster(config: str | None, cluster: str | None) -> Cluster:
    try:
        return Cluster.from_config(config, cluster=cluster, via="mcp")
    except TypeError:   # TEMPORARY until the library's `via` lands
        return Cluster.from_config(config, cluster=cluster)
