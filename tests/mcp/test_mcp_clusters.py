"""One long-lived library Cluster per configured cluster: `--cluster` picks the default, the `cluster`
argument another one from the config's `clusters:`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import yaml
from mcpharness import connect, error, ok

from pvectl.mcp.runtime import Runtime
from pvectl.mcp.server import Options, build
from pvectl.sim.cluster import Cluster as SimCluster


def test_cluster_argument_chooses_among_the_configs_clusters(tmp_path: Path) -> None:
    with SimCluster(nodes=1, vms=3, bind="127.0.0.1", port=0) as east, \
            SimCluster(nodes=1, vms=5, bind="127.0.0.1", port=0) as west:
        blocks = {name: yaml.safe_load(sim.config_path.read_text()) for name, sim in (("east", east), ("west", west))}
        cfg = tmp_path / "clusters.yaml"
        cfg.write_text(yaml.safe_dump({"clusters": blocks, "default_cluster": "east"}))
        rt = Runtime(str(cfg))
        built = build(Options(config=str(cfg), tier="read"), rt)

        async def go() -> list[Any]:
            async with connect(built) as c:
                out = [await c.call_tool("vm_list", {}), await c.call_tool("vm_list", {"cluster": "west"}),
                       await c.call_tool("vm_list", {"cluster": "east"}),
                       await c.call_tool("vm_list", {"cluster": "north"})]
                first_west = rt.cluster("west")
                await c.call_tool("vm_status", {"vm": "100", "cluster": "west"})
                out.append((set(rt._clusters), first_west is rt.cluster("west")))
                return out

        default, w, e, unknown, (opened, reused) = anyio.run(go)
        assert ok(default)["total"] == ok(e)["total"] == 3 and ok(w)["total"] == 5
        err = error(unknown)
        assert err["type"] == "ConfigError" and "north" in err["message"]
        # one library Cluster per name asked for, reused by every later call; none for the unknown one
        assert opened == {None, "west", "east"} and reused
