"""An answer cut off mid-body (head and full Content-Length written, part of the body, then the
connection closes), as a connection broken mid-response looks to pvectl's client: a read is sent
again; a write is never sent again, and its outcome is found by reading the state again."""

from __future__ import annotations

import pytest
from libharness import vm

from pvectl.cluster import Cluster
from pvectl.errors import NodeUnreachable
from pvectl.sim.cluster import Cluster as SimCluster

WAIT = 30.0


def test_a_read_whose_answer_is_cut_off_is_read_again(sim: SimCluster, pvc: Cluster) -> None:
    sim.faults.truncate_answer_next(1, method="GET", path="/qemu/103/config$")
    conf = pvc.vms.config(103)
    assert conf["name"] == vm(sim, 103).config["name"]
    gets = [e for e in sim.requests_log() if e["method"] == "GET" and e["path"].endswith("/qemu/103/config")]
    assert [e["note"] for e in gets] == ["truncated", None]


def test_a_start_whose_answer_is_cut_off_is_not_sent_again_and_finds_its_task(sim: SimCluster,
                                                                               pvc: Cluster) -> None:
    sim.faults.truncate_answer_next(1, method="POST", path="/status/start$")
    r = pvc.vms.start(103, timeout=WAIT)
    assert vm(sim, 103).status == "running"
    assert (r.outcome, r.exitstatus) == ("done", "OK") and ":qmstart:103:" in (r.upid or ""), r.to_dict()
    starts = [e for e in sim.requests_log() if e["method"] == "POST" and e["path"].endswith("/status/start")]
    assert [e["note"] for e in starts] == ["truncated"]


def test_a_config_put_whose_answer_is_cut_off_is_not_sent_again_and_is_read_again(sim: SimCluster,
                                                                                   pvc: Cluster) -> None:
    sim.faults.truncate_answer_next(1, method="PUT", path="/config$")
    r = pvc.vms.set(103, {"description": "cut short"})
    assert r.outcome == "done" and vm(sim, 103).config["description"] == "cut short"
    puts = [e for e in sim.requests_log() if e["method"] == "PUT"]
    assert [e["note"] for e in puts] == ["truncated"]


def test_answers_cut_off_on_every_node_say_so(sim: SimCluster, pvc: Cluster) -> None:
    sim.faults.truncate_answer_next(30, method="GET")
    with pytest.raises(NodeUnreachable) as ei:
        pvc.vms.config(103)
    assert ei.value.exit_code == 5
    # one reason per node that names what happened, not a bare "2193 of 4386 bytes"
    assert ei.value.message.count("answer cut off after ") == 3, ei.value.message
