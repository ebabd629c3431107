"""The simulator hooks the campaign relies on: a write carried out whose answer is lost, and the
record of every request the API carried out (with the token that sent it, never its secret)."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator

import pytest

from pvectl.sim.cluster import Cluster

from .history import RecordingApi, recording_sim


@pytest.fixture
def sim() -> Iterator[tuple[Cluster, list[RecordingApi]]]:
    with recording_sim(nodes=2, vms=4, templates=1, time_scale=0.01) as (c, recorder):
        yield c, [recorder]


def _call(c: Cluster, method: str, path: str, body: bytes | None = None, node: str = "pve1") -> tuple[int, bytes]:
    host, port = c.nodes[node]
    conn = http.client.HTTPSConnection(host, port, context=ssl.create_default_context(cafile=str(c.ca_path)),
                                       timeout=20)
    headers = {"Authorization": f"PVEAPIToken={c.token_id}={c.token_secret}"}
    if body is not None:
        headers["Content-Type"] = "application/json" if path.startswith("/_sim") else \
            "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_drop_answer_carries_out_the_write_and_closes_without_an_answer(sim: tuple[Cluster, list[RecordingApi]]) -> None:
    c, _ = sim
    vm = next(v for v in c.backend.state.vms.values() if not v.is_template and v.node == "pve1")
    c.faults.drop_answer_next(1, method="PUT")
    path = f"/api2/json/nodes/pve1/qemu/{vm.vmid}/config"
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _call(c, "PUT", path, b"description=made-it")
    assert c.backend.state.vms[vm.vmid].config["description"] == "made-it"
    assert c.faults.snapshot()["drop_answer_next"] == []
    assert _call(c, "PUT", path, b"description=again")[0] == 200   # one answer lost, not the next


def test_drop_answer_through_the_control_api(sim: tuple[Cluster, list[RecordingApi]]) -> None:
    c, _ = sim
    code, body = _call(c, "POST", "/_sim/drop-answer-next", json.dumps({"method": "post", "node": "pve2"}).encode())
    assert code == 200 and json.loads(body)["data"][0] == {"count": 1, "node": "pve2", "method": "POST",
                                                           "path": None}
    assert _call(c, "POST", "/_sim/faults/clear", b"{}")[0] == 200
    assert c.faults.snapshot()["drop_answer_next"] == []


def test_truncate_answer_carries_out_the_write_and_cuts_the_body_short(
        sim: tuple[Cluster, list[RecordingApi]]) -> None:
    c, _ = sim
    vm = next(v for v in c.backend.state.vms.values() if not v.is_template and v.node == "pve1")
    c.faults.truncate_answer_next(1, method="PUT")
    path = f"/api2/json/nodes/pve1/qemu/{vm.vmid}/config"
    with pytest.raises(http.client.IncompleteRead) as cut:
        _call(c, "PUT", path, b"description=made-it")
    assert cut.value.partial and cut.value.expected > 0   # half the body came, the rest never will
    assert c.backend.state.vms[vm.vmid].config["description"] == "made-it"
    assert c.faults.snapshot()["truncate_answer_next"] == []
    assert [e["note"] for e in c.requests_log() if e["method"] == "PUT"] == ["truncated"]
    assert _call(c, "PUT", path, b"description=again")[0] == 200   # one answer cut, not the next


def test_truncate_answer_of_a_relayed_request_is_a_597_from_the_relaying_node(
        sim: tuple[Cluster, list[RecordingApi]]) -> None:
    c, _ = sim
    # AnyEvent::HTTP reports a body cut short as 597 to pveproxy's `proxy_request`, which relays it
    vm = next(v for v in c.backend.state.vms.values() if not v.is_template and v.node == "pve2")
    c.faults.truncate_answer_next(1, method="GET", node="pve2", path="/config$")
    code, _ = _call(c, "GET", f"/api2/json/nodes/pve2/qemu/{vm.vmid}/config", node="pve1")
    assert code == 597


def test_truncate_answer_through_the_control_api(sim: tuple[Cluster, list[RecordingApi]]) -> None:
    c, _ = sim
    code, body = _call(c, "POST", "/_sim/truncate-answer-next",
                       json.dumps({"method": "get", "path": "/status$", "count": 2}).encode())
    assert code == 200 and json.loads(body)["data"][0] == {"count": 2, "node": None, "method": "GET",
                                                           "path": "/status$"}
    assert _call(c, "POST", "/_sim/faults/clear", b"{}")[0] == 200
    assert c.faults.snapshot()["truncate_answer_next"] == []


def test_the_recorder_logs_what_was_carried_out_once_with_its_token(sim: tuple[Cluster, list[RecordingApi]]) -> None:
    c, (rec,) = sim
    vm = next(v for v in c.backend.state.vms.values() if not v.is_template and v.node == "pve2")
    c.fail_next(1, status=500, message="refused before the API", path="/config$")
    assert _call(c, "PUT", f"/api2/json/nodes/pve2/qemu/{vm.vmid}/config", b"description=x")[0] == 500
    assert _call(c, "PUT", f"/api2/json/nodes/pve2/qemu/{vm.vmid}/config", b"description=y%3Dz")[0] == 200
    writes = [r for r in rec.received if r.is_write]
    assert len(writes) == 1     # the refused one never reached the API; the relayed one is logged once
    w = writes[0]
    assert (w.node, w.method, w.path, w.params, w.token, w.ok) == (
        "pve2", "PUT", f"/nodes/pve2/qemu/{vm.vmid}/config", {"description": "y=z"}, c.token_id, True)
    assert c.token_secret not in repr(rec.received)
