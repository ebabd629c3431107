"""The read scenarios of tests/cli, run against fakepve (an independent fake Proxmox VE API).

Each CLI answer is compared with the seed's own curl + jq pipeline run against the same fake in the
same test. Where fakepve differs from real Proxmox VE (`research/peers.md` §3 "Gaps"), the test is
written for real-PVE semantics and the difference is named:

- `/nodes/{node}/status` is a generic schema sample on fakepve (memory total 0, cpu model and
  loadavg entries `"fake"`). Real PVE sends loadavg as numeric strings; pvectl must not fail on an
  entry it cannot parse. Only the facts the seed extracts are compared; node capacity comes from
  `/cluster/resources?type=node`, which fakepve does fill (4 CPUs, 8 GiB, 2 GiB used per node).
- fakepve answers `/cluster/status` for any token (real PVE requires Sys.Audit on `/`), and its
  cluster entry carries a count in `online`; pvectl reads only the node entries' `online`.
- fakepve is one listening address for all nodes; failover is shown by putting a closed port first.

fakepve (AGPL-3.0) is a test-only dependency, never imported by `src/`. Its pytest plugin (registered
by the package) provides `fakepve` (a started fake on 127.0.0.1 with an OS-chosen port, tasks
finishing at once) and `fakepve_cafile` (its self-signed certificate, used as the CA). The fixtures
below live in this module rather than in a tests/peer/conftest.py: test modules elsewhere import
helpers with `from conftest import ...`, and a second conftest module collected in the same run
would take that name.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit import Run, load_json_stream

pytestmark = pytest.mark.peer

GIB = 1024**3
RESOURCES = "/cluster/resources?type=vm"
# the seed's jq filters, verbatim
JQ_CLUSTER = ".data[] | {name, type, online}"
JQ_NODE = ("{cpu: .data.cpu, memory_used: .data.memory.used, memory_total: .data.memory.total, "
           "uptime: .data.uptime}")
JQ_VMS = ('.data[] | {vmid, name, status, node, maxcpu: .maxcpu, maxmem: (.maxmem / 1073741824 | floor | '
          'tostring + "G"), template}')
JQ_VM = ".data | {status, pid, cpu, mem, maxmem, uptime, qmpstatus}"
JQ_RUNNING = '[.data[] | select(.status == "running") | {vmid, name, node}]'
JQ_TEMPLATES = "[.data[] | select(.template == 1) | {vmid, name, node}]"


PVECTL = Path(sys.executable).with_name("pvectl")
TOKEN_ID = "ci@pve!pvectl"
TOKEN_SECRET = "5d2c41f0-7a52-4c1e-9d0b-2f4b8e6a9c11"


class Peer:
    """A populated fakepve, a config for it, and the seed's curl + jq pipelines against it."""

    def __init__(self, pve: Any, cafile: str, workdir: Path) -> None:
        self.pve = pve
        self.cafile = cafile
        self.dir = workdir
        self.token_file = self._secret_file("token", f"{TOKEN_ID}\n{TOKEN_SECRET}\n")
        self.header_file = self._secret_file("auth-header", f"Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\n")
        self.config_path = self.write_config("cluster-config.yaml")

    def _secret_file(self, name: str, text: str) -> Path:
        path = self.dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    @property
    def port(self) -> int:
        return int(self.pve.port)

    def doc(self) -> dict[str, Any]:
        return {
            "cluster": {"name": "fakecluster",
                        "nodes": [{"name": n, "host": "127.0.0.1", "port": self.port}
                                  for n in ("pve1", "pve2", "pve3")]},
            "credentials": {"token_file": str(self.token_file), "ssh_user": "root"},
            "tls": {"ca_file": self.cafile},
            "defaults": {"storage": "local-lvm", "network_bridge": "vmbr0"},
            "tags": {"templates": "template"},
            "vmid_ranges": {"vms": "100-899", "templates": "9000-9999"},
        }

    def write_config(self, name: str, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        doc = self.doc()
        if edit is not None:
            edit(doc)
        path = self.dir / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return path

    def token_config(self, tokenid: str, secret: str, name: str) -> Path:
        """A config that authenticates with another token (registered by the caller)."""
        tf = self._secret_file(f"token-{name}", f"{tokenid}\n{secret}\n")
        return self.write_config(f"config-{name}.yaml", lambda d: d["credentials"].update(token_file=str(tf)))

    def curl_jq(self, path: str, jq_filter: str) -> list[Any]:
        """The seed's `curl -H "Authorization: ..." URL | jq FILTER`, verifying with the fake's certificate;
        the header comes from a mode-0600 file, never from argv."""
        argv = ["curl", "-s", "--fail-with-body", "--cacert", self.cafile, "-H", f"@{self.header_file}",
                f"{self.pve.url}/api2/json{path}"]
        body = subprocess.run(argv, capture_output=True, check=True, timeout=30).stdout
        jq = subprocess.run(["jq", "-c", jq_filter], input=body, capture_output=True, check=True, timeout=30)
        return load_json_stream(jq.stdout.decode())


@pytest.fixture
def peer_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No user config, config cache or token from the environment."""
    home = tmp_path_factory.mktemp("peer-home")
    for var in ("PVECTL_CONFIG", "PVECTL_CLUSTER", "PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "PVECTL_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.chdir(home)
    from pvectl import credentials

    credentials.reset()
    yield
    credentials.reset()


@pytest.fixture
def peer(fakepve: Any, fakepve_cafile: str, tmp_path: Path, peer_env: None) -> Peer:
    """fakepve with three nodes (pve3 without guests), four VMs and a template, and an API token.

    Guests: 100 web1 (running, pve1), 101 db1 (stopped, pve2), 102 cache1 (running, pve2),
    103 batch1 (stopped, pve1), 9000 tmpl-debian12 (template, pve1, tags template;debian).
    """
    pve = fakepve
    pve.add_vm(100, "web1", node="pve1", status="running",
               config={"cores": 2, "memory": 2048, "tags": "prod;web", "scsi0": "local-lvm:vm-100-disk-0,size=32G"})
    pve.add_vm(101, "db1", node="pve2", status="stopped",
               config={"cores": 4, "memory": 8192, "tags": "prod;db", "scsi0": "local-lvm:vm-101-disk-0,size=64G"})
    pve.add_vm(102, "cache1", node="pve2", status="running", config={"cores": 1, "memory": 1536, "tags": "prod"})
    pve.add_vm(103, "batch1", node="pve1", status="stopped", config={"cores": 8, "memory": 16384})
    pve.add_vm(9000, "tmpl-debian12", node="pve1", template=True,
               config={"cores": 2, "memory": 2048, "tags": "template;debian",
                       "scsi0": "local-lvm:base-9000-disk-0,size=8G"})
    pve.add_node("pve3")
    pve.apitokens[TOKEN_ID] = TOKEN_SECRET
    return Peer(pve, fakepve_cafile, tmp_path)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """`pvectl.cli.main.main()` in this process."""
    from pvectl.cli.main import main

    def run(*argv: str) -> Run:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def run_pvectl() -> Callable[..., Run]:
    """The installed console script as a child process."""

    def run(*argv: str) -> Run:
        p = subprocess.run([str(PVECTL), *argv], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        return Run(p.returncode, p.stdout, p.stderr)

    return run


# ------------------------------------------------------------------------------------------------
# Scenarios


def ok(r: Run) -> Any:
    assert r.code == 0, (r.code, r.out, r.err)
    assert r.err == ""
    return r.json


def test_vm_list_matches_seed(peer: Peer, cli: Callable[..., Run], run_pvectl: Callable[..., Run]) -> None:
    seed = {v["vmid"]: v for v in peer.curl_jq(RESOURCES, JQ_VMS)}
    assert sorted(seed) == [100, 101, 102, 103, 9000]
    for ours in (ok(cli("--config", str(peer.config_path), "-o", "json", "vm", "list")),
                 ok(run_pvectl("--config", str(peer.config_path), "vm", "list"))):   # not a TTY: JSON
        assert [v["vmid"] for v in ours] == sorted(seed)
        for v in ours:
            s = seed[v["vmid"]]
            assert (v["name"], v["status"], v["node"], v["maxcpu"]) == (s["name"], s["status"], s["node"], s["maxcpu"])
            assert f"{v['maxmem'] // GIB}G" == s["maxmem"]
            assert v["template"] is (s["template"] == 1)
    table = cli("--config", str(peer.config_path), "-o", "table", "vm", "list")
    rows = {ln.split()[0]: ln.split() for ln in table.out.splitlines()[1:]}
    assert rows["101"][5] == seed[101]["maxmem"] == "8G" and rows["102"][5] == "1G"
    assert rows["9000"][6] == "yes" and rows["100"][6] == "-"


def test_vm_list_status_filter_matches_seed(peer: Peer, cli: Callable[..., Run]) -> None:
    [seed] = peer.curl_jq(RESOURCES, JQ_RUNNING)
    ours = ok(cli("--config", str(peer.config_path), "-o", "json", "vm", "list", "--status", "running"))
    assert [{k: v[k] for k in ("vmid", "name", "node")} for v in ours] == sorted(seed, key=lambda v: v["vmid"])
    assert [v["vmid"] for v in ours] == [100, 102]
    stopped = ok(cli("--config", str(peer.config_path), "-o", "json", "vm", "list", "--status", "stopped",
                     "--no-templates"))
    assert [v["vmid"] for v in stopped] == [101, 103]
    assert [v["vmid"] for v in ok(cli("--config", str(peer.config_path), "-o", "json", "vm", "list",
                                      "--node", "pve2"))] == [101, 102]
    assert [v["vmid"] for v in ok(cli("--config", str(peer.config_path), "-o", "json", "vm", "list",
                                      "--tag", "prod"))] == [100, 101, 102]


def test_template_list_matches_seed(peer: Peer, cli: Callable[..., Run]) -> None:
    [seed] = peer.curl_jq(RESOURCES, JQ_TEMPLATES)
    ours = ok(cli("--config", str(peer.config_path), "-o", "json", "template", "list"))
    assert [{k: t[k] for k in ("vmid", "name", "node")} for t in ours] == seed == \
        [{"vmid": 9000, "name": "tmpl-debian12", "node": "pve1"}]
    assert ours[0]["matched_by"] == ["flag", "tag", "range"]
    # a VM tagged `template` that was never converted is found by tag only; --by flag is the seed's rule
    peer.pve.add_vm(104, "not-a-template", node="pve2", config={"tags": "template", "memory": 1024})
    ours = ok(cli("--config", str(peer.config_path), "-o", "json", "template", "list"))
    assert [(t["vmid"], t["matched_by"]) for t in ours] == [(104, ["tag"]), (9000, ["flag", "tag", "range"])]
    by_flag = ok(cli("--config", str(peer.config_path), "-o", "json", "template", "list", "--by", "flag"))
    assert [{k: t[k] for k in ("vmid", "name", "node")} for t in by_flag] == peer.curl_jq(RESOURCES, JQ_TEMPLATES)[0]


def test_cluster_status_matches_seed(peer: Peer, cli: Callable[..., Run]) -> None:
    seed = peer.curl_jq("/cluster/status", JQ_CLUSTER)
    ours = ok(cli("--config", str(peer.config_path), "-o", "json", "cluster", "status"))
    [entry] = [e for e in seed if e["type"] == "cluster"]
    assert ours["cluster"] == entry["name"] == "fakecluster" and ours["quorate"] is True
    assert {n["name"]: n["online"] for n in ours["nodes"]} == \
        {e["name"]: e["online"] == 1 for e in seed if e["type"] == "node"} == \
        {"pve1": True, "pve2": True, "pve3": True}
    # a node goes offline: membership says so, the read still works
    peer.pve.set_node_offline("pve3")
    ours = ok(cli("--config", str(peer.config_path), "-o", "json", "cluster", "status"))
    assert {n["name"]: n["online"] for n in ours["nodes"]} == {"pve1": True, "pve2": True, "pve3": False}
    table = cli("--config", str(peer.config_path), "-o", "table", "cluster", "status").out.splitlines()
    assert table[0] == "cluster fakecluster  quorate: yes"
    assert table[4].split()[:2] == ["pve3", "OFFLINE"]


def test_vm_status_matches_seed(peer: Peer, cli: Callable[..., Run]) -> None:
    for ref, vmid, node in (("100", 100, "pve1"), ("db1", 101, "pve2")):
        [s] = peer.curl_jq(f"/nodes/{node}/qemu/{vmid}/status/current", JQ_VM)
        o = ok(cli("--config", str(peer.config_path), "-o", "json", "vm", "status", ref))
        assert (o["vmid"], o["node"]) == (vmid, node)
        assert (o["status"], o["pid"], o["mem"], o["maxmem"], o["qmpstatus"]) == \
            (s["status"], s["pid"], s["mem"], s["maxmem"], s["qmpstatus"])
        assert abs(o["uptime"] - s["uptime"]) <= 60 and o["cpu"] == s["cpu"]
    kv = dict(ln.split(None, 1) for ln in
              cli("--config", str(peer.config_path), "-o", "table", "vm", "status", "web1").out.splitlines())
    assert (kv["vmid"], kv["status"], kv["maxmem"], kv["disk"]) == ("100", "running", "2G", "32G")


def test_vm_status_unknown_and_ambiguous(peer: Peer, cli: Callable[..., Run]) -> None:
    cfg = str(peer.config_path)
    r = cli("--config", cfg, "-o", "table", "vm", "status", "4242")
    assert (r.code, r.err_lines) == (1, ["pvectl: error: VM 4242 does not exist (or the token may not see it) "
                                         "(hint: list the VMs with: pvectl vm list)"])
    peer.pve.add_vm(105, "web1", node="pve2")
    r = cli("--config", cfg, "-o", "table", "vm", "status", "web1")
    assert (r.code, r.err_lines) == (2, ["pvectl: error: the name 'web1' matches 2 VMs (100 on pve1, 105 on pve2): "
                                         "give the VMID instead"])


def test_node_list_matches_cluster_resources(peer: Peer, cli: Callable[..., Run]) -> None:
    seed = {e["node"]: e for e in peer.curl_jq("/cluster/resources?type=node",
                                               ".data[] | {node, status, maxmem, mem, maxcpu}")}
    ours = ok(cli("--config", str(peer.config_path), "-o", "json", "node", "list"))
    assert [n["name"] for n in ours] == sorted(seed) == ["pve1", "pve2", "pve3"]
    for n in ours:
        s = seed[n["name"]]
        assert (n["status"], n["maxmem"], n["mem"], n["maxcpu"]) == (s["status"], s["maxmem"], s["mem"], s["maxcpu"])
        assert n["mem_free"] == s["maxmem"] - s["mem"]
    peer.pve.set_node_offline("pve2")
    ours = ok(cli("--config", str(peer.config_path), "-o", "json", "node", "list"))
    assert [(n["name"], n["status"], n["maxmem"]) for n in ours] == \
        [("pve1", "online", 8 * GIB), ("pve2", "offline", None), ("pve3", "online", 8 * GIB)]


def test_node_status_matches_seed(peer: Peer, cli: Callable[..., Run]) -> None:
    """fakepve's /nodes/{node}/status is a schema sample (see the module docstring); pvectl shows the
    same facts the seed's jq extracts and does not fail on the sample's non-numeric loadavg."""
    [s] = peer.curl_jq("/nodes/pve1/status", JQ_NODE)
    o = ok(cli("--config", str(peer.config_path), "-o", "json", "node", "status", "pve1"))
    assert o["name"] == "pve1"
    assert (o["cpu"], o["memory_used"], o["memory_total"], o["uptime"]) == \
        (s["cpu"], s["memory_used"], s["memory_total"], s["uptime"])
    assert all(isinstance(x, float) for x in o["loadavg"])
    r = cli("--config", str(peer.config_path), "-o", "table", "node", "status")
    assert r.code == 0 and [ln.split()[0] for ln in r.out.splitlines()] == ["NODE", "pve1", "pve2", "pve3"]
    r = cli("--config", str(peer.config_path), "-o", "table", "node", "status", "pve7")
    assert (r.code, r.err_lines) == (2, ["pvectl: error: no node 'pve7' in the cluster (nodes: pve1, pve2, pve3)"])


def test_token_privileges(peer: Peer, cli: Callable[..., Run]) -> None:
    """fakepve filters /cluster/resources by VM.Audit like real PVE once ACLs are in use."""
    pve = peer.pve
    pve.apitokens["ops@pve!one"] = "secret-one-0001"
    pve.apitokens["ops@pve!none"] = "secret-none-0002"
    pve.grant("ops@pve!one", "/vms/100", "VM.Audit")
    one = peer.token_config("ops@pve!one", "secret-one-0001", "one")
    none = peer.token_config("ops@pve!none", "secret-none-0002", "none")
    assert [v["vmid"] for v in ok(cli("--config", str(one), "-o", "json", "vm", "list"))] == [100]
    r = cli("--config", str(none), "-o", "table", "vm", "list")
    assert (r.code, r.out) == (1, "")
    assert r.err_lines == ["pvectl: error: the API token may not see any VM: it has no VM.Audit privilege (checked "
                           "on /vms) (hint: grant it, e.g.: pveum acl modify /vms --tokens 'USER@REALM!TOKEN' "
                           "--roles PVEAuditor)"]
    r = cli("--config", str(none), "-o", "table", "vm", "status", "101")
    assert r.code == 1 and "VM.Audit" in r.err
    # a wrong secret is an authentication failure: exit 5
    bad = peer.token_config("ops@pve!one", "wrong-secret-0003", "bad")
    r = cli("--config", str(bad), "-o", "table", "vm", "list")
    assert r.code == 5 and r.err_lines[0].startswith("pvectl: error: authentication failure (hint: check the API token")


def test_failover_to_the_next_configured_address(peer: Peer, cli: Callable[..., Run]) -> None:
    """The first configured node's address refuses connections; the fake answers as the second."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()

    def edit(doc: dict[str, Any]) -> None:
        doc["cluster"]["nodes"][0]["port"] = closed

    cfg = peer.write_config("failover.yaml", edit)
    r = cli("--config", str(cfg), "-o", "json", "-v", "vm", "list")
    assert r.code == 0 and [v["vmid"] for v in r.json] == [100, 101, 102, 103, 9000]
    failures = [ln for ln in r.err_lines if "connect failed" in ln]
    assert failures == [f"pvectl: GET /cluster/resources -> pve1 (127.0.0.1:{closed}): connect failed: "
                        "connection refused"]


def test_tls_pin_and_insecure(peer: Peer, cli: Callable[..., Run]) -> None:
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", peer.port)))
    digest = hashlib.sha256(der).hexdigest().upper()
    fp = ":".join(digest[i:i + 2] for i in range(0, 64, 2))
    pinned = peer.write_config("pinned.yaml", lambda d: d.update(tls={"fingerprints": {
        "pve1": fp, "pve2": fp, "pve3": fp}}))
    assert cli("--config", str(pinned), "-o", "json", "cluster", "status").code == 0
    wrong = "AB:" * 31 + "AB"
    bad = peer.write_config("badpin.yaml", lambda d: d.update(tls={"fingerprints": {
        "pve1": wrong, "pve2": fp, "pve3": fp}}))
    r = cli("--config", str(bad), "-o", "table", "cluster", "status")
    assert r.code == 5 and f"pinned {wrong}, got {fp}" in r.err and len(r.err_lines) == 1
    insecure = peer.write_config("insecure.yaml", lambda d: d.update(tls={"insecure": True}))
    r = cli("--config", str(insecure), "-o", "json", "vm", "list")
    assert r.code == 0 and len(r.json) == 5
    assert r.err_lines == ["pvectl: warning: TLS verification is disabled (tls.insecure: true): anyone on the "
                           "network path can read the API token; set tls.ca_file or tls.fingerprints"]
