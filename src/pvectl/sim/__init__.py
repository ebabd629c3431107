"""A Proxmox VE cluster on loopback: `Cluster(...)` starts one, `pvectl sim serve` runs one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import Cluster

__all__ = ["Cluster"]


def __getattr__(name: str) -> Any:
    if name == "Cluster":
        from .cluster import Cluster

        return Cluster
    raise AttributeError(name)
