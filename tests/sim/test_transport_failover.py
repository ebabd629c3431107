"""The transport against misbehaving nodes of the simulator (DESIGN §4: failover, retries)."""

from __future__ import annotations

import time
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
    sent: list[str] = []
    t = _transport(sim, read_timeout=0.5, retries=2, log=sent.append)
    since = sim.server.requests.last_seq
    try:
        t0 = time.monotonic()
        res = t.request("GET", "/cluster/resources", {"type": "vm"}, raw=True)
        took = time.monotonic() - t0
        assert res.node == "pve2"
        assert 0.5 <= took < 0.5 + 1.0                  # one read timeout, then pve2 answers at once
        tried = [line.split(" -> ")[1].split(" ")[0].rstrip(":") for line in sent if " -> " in line]
        assert tried == ["pve1", "pve2"]                 # exactly one attempt at the hung node, then the next
        assert [(e["node"], e["status"]) for e in sim.requests_log(since=since) if e["node"] == "pve2"] == \
            [("pve2", 200)]
        assert "pve1" in t.dead_nodes and "no answer" in t.dead_nodes["pve1"]
        # later requests skip pve1 (until its back-off ends): nothing more is sent to it
        assert t.request("GET", "/version", raw=True).node == "pve2"
        tried = [line.split(" -> ")[1].split(" ")[0].rstrip(":") for line in sent if " -> " in line]
        assert tried == ["pve1", "pve2", "pve2"]
    finally:
        sim.unhang_node("pve1")
        t.close()
    # the hung listener got that one request and no other (logged once released or dropped)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not sim.requests_log(since=since, node="pve1"):
        time.sleep(0.05)
    assert [e["path"] for e in sim.requests_log(since=since, node="pve1")] == ["/api2/json/cluster/resources"]


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
