"""`pve.vms.list()` against the simulator's own state: every VM, typed, sorted, filtered locally."""

from __future__ import annotations

from pvectl.cluster import Cluster
from pvectl.sim.cluster import Cluster as SimCluster


def test_list_matches_the_cluster_state_sorted_by_vmid(sim: SimCluster, pvc: Cluster) -> None:
    vms = pvc.vms.list()
    state = sim.backend.state.vms
    assert [v.vmid for v in vms] == sorted(state)
    for v in vms:
        s = state[v.vmid]
        assert (v.node, v.name, v.template) == (s.node, s.config.get("name", f"VM {v.vmid}"), s.is_template)
        assert v.maxmem == int(s.config.get("memory", 512)) * 1024 * 1024
        assert v.tags == tuple(t for t in str(s.config.get("tags", "")).split(";") if t)
        assert v.to_dict()["vmid"] == v.vmid and isinstance(v.to_dict()["tags"], list)


def test_filters(sim: SimCluster, pvc: Cluster) -> None:
    state = sim.backend.state.vms
    templates = pvc.vms.list(templates=True)
    assert [v.vmid for v in templates] == sorted(k for k, s in state.items() if s.is_template)
    assert {v.vmid for v in pvc.vms.list(templates=False)} == set(state) - {v.vmid for v in templates}
    on_pve2 = pvc.vms.list(node="pve2")
    assert on_pve2 and [v.vmid for v in on_pve2] == sorted(k for k, s in state.items() if s.node == "pve2")
    tagged = next(s for s in state.values() if s.config.get("tags"))
    tag = str(tagged.config["tags"]).split(";")[0]
    assert tagged.vmid in {v.vmid for v in pvc.vms.list(tag=tag)}
    assert all(tag in v.tags for v in pvc.vms.list(tag=tag))
    assert all(v.status == "running" for v in pvc.vms.list(status="running"))
