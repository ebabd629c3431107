"""The transport against misbehaving nodes of the simulator (DESIGN §4: failover, retries)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pvectl.config import load_config
from pvectl.credentials import load_token
from pvectl.errors import NodeUnreachable
from pvectl.http import Transport
from pvectl.sim.cluster import Cluster


@pytest.fixture
def sim() -> Iterator[Cluster]:
    with Cluster(nodes=3, vms=4, templates=1, bind="127.0.0.1", port=0, time_scale=0.02) as c:
        yield c


def _transport(sim: Cluster, **kw: object) -> Transport:
    cfg = load_config(str(sim.config_path))
    token = load_token(cfg)
    return Transport.from_config(cfg, auth=token.header, **kw)  # type: ignore[arg-type]


def test_a_hung_node_costs_one_read_timeout_then_the_next_node_answers(sim: Cluster) -> None:
    # pveproxy accepts the connection but never answers: one read timeout, not one per retry
    sim.hang_node("pve1")
    t = _transport(sim, read_timeout=0.5, retries=2)
    try:
        res = t.request("GET", "/cluster/resources", {"type": "vm"}, raw=True)
        assert res.node == "pve2"
        assert "pve1" in t.dead_nodes and "no answer" in t.dead_nodes["pve1"]
        # later requests skip pve1 for the rest of the process
        assert t.request("GET", "/version", raw=True).node == "pve2"
    finally:
        sim.unhang_node("pve1")
        t.close()


def test_a_write_to_a_hung_node_is_not_resent(sim: Cluster) -> None:
    # the POST may have been applied: uncertain, never retried on another node
    vmid = next(v.vmid for v in sim.backend.state.vms.values() if v.node == "pve1" and v.status == "stopped"
                and not v.is_template)
    before = len([r for r in sim.requests_log() if r["method"] == "POST"])
    sim.hang_node("pve1")
    t = _transport(sim, read_timeout=0.5)
    try:
        with pytest.raises(NodeUnreachable) as info:
            t.request("POST", f"/nodes/pve1/qemu/{vmid}/status/start", node="pve1")
        assert info.value.uncertain
        assert "may or may not have been applied" in info.value.message
    finally:
        sim.unhang_node("pve1")
        t.close()
    posts = [r for r in sim.requests_log() if r["method"] == "POST"]
    assert len(posts) - before <= 1
