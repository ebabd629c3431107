"""Helpers for the library-against-simulator tests (fixtures `sim` and `pvc` are in conftest.py)."""

from __future__ import annotations

import io
from typing import Any

from pvectl.cluster import Cluster
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.writes import Writer


class Sent:
    """Records every request pvectl makes; `writes` are the non-GET ones."""

    def __init__(self, cluster: Cluster) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        orig = cluster.transport.request

        def request(method: str, path: str, params: Any = None, **kw: Any) -> Any:
            self.calls.append((method, path, dict(params or {})))
            return orig(method, path, params, **kw)

        cluster.transport.request = request  # type: ignore[method-assign]

    @property
    def writes(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [c for c in self.calls if c[0] != "GET"]


def writer(pvc: Cluster, dry_run: bool = False) -> Writer:
    return Writer(pvc.config, pvc.transport, command="pvectl test", dry_run=dry_run, out=io.StringIO())


def vm(sim: SimCluster, vmid: int) -> Any:
    return sim.backend.state.vms[vmid]
