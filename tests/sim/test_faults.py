"""Listener-level faults and the `/_sim` control API, over real sockets against the real API."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pvectl.sim import certs
from pvectl.sim.cluster import Cluster


def _wait_for(cond: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def sim() -> Iterator[Cluster]:
    with Cluster(nodes=3, vms=6, templates=1, bind="127.0.0.1", port=0, time_scale=0.01) as c:
        yield c


def _conn(c: Cluster, node: str = "pve1") -> http.client.HTTPSConnection:
    host, port = c.nodes[node]
    ctx = ssl.create_default_context(cafile=str(c.ca_path))
    return http.client.HTTPSConnection(host, port, context=ctx, timeout=20)


def _call(c: Cluster, path: str, node: str = "pve1", method: str = "GET", body: Any = None,
          conn: http.client.HTTPSConnection | None = None) -> tuple[int, str, bytes]:
    own = conn is None
    conn = conn or _conn(c, node)
    headers = {"Authorization": f"PVEAPIToken={c.token_id}={c.token_secret}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode() if path.startswith("/_sim") else body
        if path.startswith("/_sim"):
            headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, r.reason, r.read()
    finally:
        if own:
            conn.close()


# -- stop / start ---------------------------------------------------------------------------


def test_stop_listener_refuses_new_and_closes_open_connections(sim: Cluster) -> None:
    conn = _conn(sim, "pve2")
    assert _call(sim, "/api2/json/version", conn=conn)[0] == 200
    host, port = sim.nodes["pve2"]
    sim.stop_listener("pve2")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError, OSError)):
        _call(sim, "/api2/json/version", conn=conn)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=5).close()
    # pve2 is still a cluster member: only pveproxy is down
    status = json.loads(_call(sim, "/api2/json/cluster/status")[2])["data"]
    assert {e["name"]: e.get("online") for e in status if e["type"] == "node"}["pve2"] == 1
    sim.start_listener("pve2")
    assert sim.nodes["pve2"] == (host, port)
    assert _call(sim, "/api2/json/version", node="pve2")[0] == 200


def test_stop_node_also_leaves_the_membership(sim: Cluster) -> None:
    sim.stop_node("pve3")
    status = json.loads(_call(sim, "/api2/json/cluster/status")[2])["data"]
    assert {e["name"]: e.get("online") for e in status if e["type"] == "node"}["pve3"] == 0
    code, reason, body = _call(sim, "/api2/json/nodes/pve3/status")
    assert (code, reason, body) == (595, "Connection refused", b"")
    sim.start_node("pve3")
    assert _call(sim, "/api2/json/nodes/pve3/status")[0] == 200


# -- slow / hang ----------------------------------------------------------------------------


def test_slow_node_answers_after_a_fast_one(sim: Cluster) -> None:
    sim.slow_node("pve2", 1.0)
    order: list[str] = []

    def call(node: str) -> None:
        _call(sim, "/api2/json/version", node=node)
        order.append(node)

    t = threading.Thread(target=call, args=("pve2",))
    t.start()
    _wait_for(lambda: sim.server.listeners["pve2"].active == 1, "the slow request to be handled")
    call("pve1")
    t.join(20)
    assert order == ["pve1", "pve2"]
    sim.slow_node("pve2", 0)
    assert sim.faults.latency("pve2") == 0


def test_hang_holds_requests_until_unhang(sim: Cluster) -> None:
    sim.hang_node("pve1")
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(_call(sim, "/api2/json/version")[0]))
    t.start()
    _wait_for(lambda: sim.faults.held("pve1") == 1, "the request to be held")
    assert got == [] and t.is_alive()
    # the control API is never hung
    assert _call(sim, "/_sim/state")[0] == 200
    sim.unhang_node("pve1")
    t.join(20)
    assert got == [200]


def test_hang_with_a_limit_ends_by_itself(sim: Cluster) -> None:
    sim.hang_node("pve1", 0.2)
    assert _call(sim, "/api2/json/version")[0] == 200
    assert not sim.faults.is_hung("pve1")


# -- fail / drop next -------------------------------------------------------------------------


def test_fail_next_matches_method_and_path_and_counts(sim: Cluster) -> None:
    sim.fail_next(2, status=500, message="got timeout\nmore detail", method="GET", path=r"/status/current$")
    status_path = "/api2/json/nodes/pve1/qemu/100/status/current"
    assert _call(sim, "/api2/json/version")[0] == 200                       # other path
    _call(sim, status_path, method="POST")                                   # other method: not consumed
    assert sim.faults.snapshot()["fail_next"][0]["count"] == 2
    for _ in range(2):
        code, reason, body = _call(sim, status_path)
        assert (code, reason) == (500, "got timeout")
        assert json.loads(body) == {"data": None, "message": "got timeout\nmore detail\n"}
    assert _call(sim, status_path)[0] == 200
    assert sim.faults.snapshot()["fail_next"] == []


def test_fail_next_on_one_node_hits_the_proxied_hop(sim: Cluster) -> None:
    sim.fail_next(status=403, message="Permission check failed (/vms/101, VM.Audit)", node="pve2")
    code, reason, _ = _call(sim, "/api2/json/nodes/pve2/qemu/101/status/current")
    assert (code, reason) == (403, "Permission check failed (/vms/101, VM.Audit)")
    assert _call(sim, "/api2/json/nodes/pve2/qemu/101/status/current")[0] == 200


def test_drop_next_closes_without_answer(sim: Cluster) -> None:
    sim.drop_next(1, path=r"^/api2/json/version$")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _call(sim, "/api2/json/version")
    assert _call(sim, "/api2/json/version")[0] == 200
    assert [e["note"] for e in sim.requests_log() if e["path"] == "/api2/json/version"][:1] == ["dropped"]


def test_drop_on_the_target_node_gives_596_through_the_proxy(sim: Cluster) -> None:
    assert _call(sim, "/api2/json/nodes/pve2/status")[0] == 200
    sim.drop_next(2, node="pve2")   # the pooled connection and the fresh retry
    code, reason, body = _call(sim, "/api2/json/nodes/pve2/status")
    assert (code, reason, body) == (596, "Unexpected end-of-file", b"")


# -- control API ------------------------------------------------------------------------------


def test_control_api_state_and_request_log_without_credentials(sim: Cluster) -> None:
    _call(sim, "/api2/json/nodes/pve2/status")
    code, _, body = _call(sim, "/_sim/state", node="pve3")
    state = json.loads(body)["data"]
    assert code == 200 and set(state["nodes"]) == {"pve1", "pve2", "pve3"}
    assert state["nodes"]["pve1"]["listener"] is True and state["vms"] == 6 and state["templates"] == 1
    code, _, body = _call(sim, "/_sim/requests?node=pve2")
    entries = json.loads(body)["data"]
    assert code == 200 and entries and all(e["node"] == "pve2" for e in entries)
    assert {"method", "path", "node", "status"} <= set(entries[0])
    raw = json.dumps(sim.requests_log())
    assert sim.token_secret not in raw and "PVEAPIToken" not in raw
    assert not any(e["path"].startswith("/_sim") for e in sim.requests_log())
    assert _call(sim, "/_sim/requests", method="DELETE")[0] == 200
    assert sim.requests_log() == []


def test_control_api_faults_and_listener(sim: Cluster) -> None:
    code, _, _ = _call(sim, "/_sim/fail-next", method="POST",
                       body={"count": 1, "status": 500, "message": "boom", "path": "version"})
    assert code == 200
    assert _call(sim, "/api2/json/version")[:2] == (500, "boom")
    assert _call(sim, "/_sim/drop-next", method="POST", body={"node": "pve3"})[0] == 200
    assert sim.faults.snapshot()["drop_next"][0]["node"] == "pve3"
    assert _call(sim, "/_sim/faults/clear", method="POST", body={})[0] == 200
    assert sim.faults.snapshot()["drop_next"] == []
    assert _call(sim, "/_sim/nodes/pve2/slow", method="POST", body={"seconds": 0.01})[0] == 200
    assert sim.faults.latency("pve2") == 0.01
    # a node can stop its own listener: the answer still arrives
    code, _, body = _call(sim, "/_sim/nodes/pve1/stop-listener", method="POST", body={})
    assert code == 200 and json.loads(body)["data"]["node"] == "pve1"
    _wait_for(lambda: not sim.server.listeners["pve1"].up, "pve1's listener to stop")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(sim.nodes["pve1"], timeout=5).close()
    assert _call(sim, "/_sim/nodes/pve1/start-listener", node="pve2", method="POST", body={})[0] == 200
    assert _call(sim, "/api2/json/version")[0] == 200
    assert _call(sim, "/_sim/nodes/pve9/stop", method="POST", body={})[0] == 404
    assert _call(sim, "/_sim/nope")[0] == 404
    assert _call(sim, "/_sim/fail-next", method="POST", body={"status": "x"})[0] == 400


def test_control_api_locks_tasks_resources_tokens_save(sim: Cluster) -> None:
    code, _, body = _call(sim, "/_sim/vms/101/hold-lock", method="POST", body={"kind": "backup"})
    assert code == 200
    upid = json.loads(body)["data"]["upid"]
    assert upid.startswith("UPID:") and upid.endswith(":")
    assert _call(sim, "/_sim/vms/101/release-lock", method="POST", body={})[0] == 200
    assert _call(sim, "/_sim/fail-task", method="POST",
                 body={"type": "qmclone", "message": "clone failed: boom"})[0] == 200
    assert _call(sim, "/_sim/nodes/pve2/resources", method="POST", body={"mem_total": 64 << 30})[0] == 200
    assert sim.backend.state.nodes["pve2"].mem_total == 64 << 30
    code, _, body = _call(sim, "/_sim/tokens", method="POST", body={"tokenid": "ops@pve!ro", "privs": {"/": ["PVEAuditor"]}})
    tok = json.loads(body)["data"]
    assert code == 200 and tok["tokenid"] == "ops@pve!ro" and len(tok["secret"]) == 36
    conn = _conn(sim)
    conn.request("GET", "/api2/json/version", headers={"Authorization": f"PVEAPIToken=ops@pve!ro={tok['secret']}"})
    r = conn.getresponse()
    r.read()
    assert r.status == 200
    conn.close()
    code, _, body = _call(sim, "/_sim/save", method="POST", body={})
    path = Path(json.loads(body)["data"]["path"])
    assert code == 200 and path.is_file() and "vms" in json.loads(path.read_text())


def test_control_api_flock_hold_and_users(sim: Cluster) -> None:
    # "kind": "" holds the flock itself and sets no config lock
    code, _, body = _call(sim, "/_sim/vms/103/hold-lock", method="POST", body={"kind": ""})
    assert code == 200 and "lock" not in sim.backend.state.vms[103].config
    assert sim.backend.locks.is_locked("pve1", 103)
    assert _call(sim, "/_sim/vms/103/release-lock", method="POST", body={})[0] == 200
    assert not sim.backend.locks.is_locked("pve1", 103)
    code, _, body = _call(sim, "/_sim/users", method="POST", body={"userid": "ops@pve", "privs": {"/": ["PVEAuditor"]}})
    user = json.loads(body)["data"]
    assert code == 200 and user["userid"] == "ops@pve" and len(user["password"]) >= 16
    assert _call(sim, "/_sim/users", method="POST", body={"userid": "root@pam!t"})[0] == 400
    conn = _conn(sim)
    form = f"username=ops%40pve&password={user['password']}"
    conn.request("POST", "/api2/json/access/ticket", body=form,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["data"]["username"] == "ops@pve"
    conn.close()


# -- files and persistence --------------------------------------------------------------------


def test_state_dir_files_and_reuse_across_restarts(tmp_path: Path) -> None:
    import yaml

    sd = tmp_path / "sim"
    with Cluster(nodes=2, vms=3, templates=1, bind="127.0.0.1", port=0, state_dir=sd) as c:
        cfg = yaml.safe_load(c.config_path.read_text())
        assert [n["name"] for n in cfg["cluster"]["nodes"]] == ["pve1", "pve2"]
        assert cfg["cluster"]["nodes"][0]["port"] == c.nodes["pve1"][1]
        assert cfg["credentials"] == {"token_file": str(sd / "token"), "ssh_user": "root"}
        assert cfg["tls"] == {"ca_file": str(sd / "pve-root-ca.pem")}
        assert cfg["vmid_ranges"] == {"vms": "100-899", "templates": "9000-9999"}
        assert os.stat(c.token_path).st_mode & 0o777 == 0o600
        lines = c.token_path.read_text().splitlines()
        assert lines == ["root@pam!pvectl", c.token_secret]
        ca1, secret1 = c.ca_path.read_bytes(), c.token_secret
        fp1 = certs.fingerprint((sd / "nodes" / "pve1" / "pve-ssl.pem").read_bytes())
        c.set_node("pve2", mem_total=48 << 30)
    assert (sd / "state.json").is_file()
    with Cluster(nodes=5, bind="127.0.0.1", port=0, state_dir=sd) as c:
        assert list(c.nodes) == ["pve1", "pve2"]              # loaded, not generated
        assert c.backend.state.nodes["pve2"].mem_total == 48 << 30
        assert c.ca_path.read_bytes() == ca1 and c.token_secret == secret1
        assert certs.fingerprint((sd / "nodes" / "pve1" / "pve-ssl.pem").read_bytes()) == fp1
        assert _call(c, "/api2/json/version")[0] == 200
    assert sd.is_dir()


def test_temporary_state_dir_is_removed_on_stop() -> None:
    c = Cluster(nodes=1, vms=1, templates=0, bind="127.0.0.1", port=0).start()
    sd = c.state_dir
    assert (sd / "cluster-config.yaml").is_file()
    c.stop()
    assert not sd.exists()
