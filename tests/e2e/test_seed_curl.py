"""The seed reference's own curl + jq commands, run unchanged against `python -m pvectl.sim`.

The commands are taken from the seed text itself (its ```bash blocks), so this proves the text works
as written. Only the placeholders are filled in:

- `<NODE_HOST>:8006` -> `127.0.0.1:<port>` of a node (the simulator gives each node its own port);
- `<PASS_PATH>` -> the throwaway pass store's `proxmox/api-token` (a real `pass show` decrypts it);
- `$node.<CLUSTER_DOMAIN>:8006` in `poll_task`: `<CLUSTER_DOMAIN>` -> "" (the node's name as an
  absolute DNS name, `pve1.`), and a `.curlrc` in `CURL_HOME` maps `pveN.:8006` to that node's port
  with `connect-to`, standing in for DNS; each node's certificate names the node, so even the
  verifying variant accepts it, and the task polls reach the task's own node as on a real cluster;
- `<NODE_NAME>`, `<VMID>`, `<UPID>`, ... -> values read from the cluster.

Each command runs twice: with `-k` as written, and with `-sk` replaced by `-s --cacert <the cluster
CA>` (seed erratum 3). The seed's form bodies with `=` or `+` inside a value (post-clone config, disk
resize) must be refused exactly as Proxmox refuses them (400 `Parameter verification failed.` with
per-field errors; `docs/seed-errata.md`), and must succeed once rewritten with `--data-urlencode`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import ssl
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from testkit import load_json_stream

if TYPE_CHECKING:  # the fixtures' types (tests/e2e/conftest.py)
    from conftest import PassStore, SimProcess

pytestmark = pytest.mark.e2e

SEED_NAME = "000_49646ca62762354e.txt"
GIB = 1024**3
UPID_RE = re.compile(r"^UPID:(?P<node>[A-Za-z0-9.-]+):[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:"
                     r"(?P<type>[a-z]+):(?P<id>[^:]*):root@pam!pvectl:$")

# Two real-format public keys; `+` and `/` in the blobs exercise the encoding rules.
SSH_KEYS = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxjZ8a++Tfx3jLg48CXksqky0yqsWrUhUnTezatRKy1 e2e@pvectl\n"
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAWlPlNrcsOKVfZarkZ6VIy+D0oi3eNTn/rkTMsZc+DT ops@pvectl\n"
)

# Every titled ```bash block of the seed, by the bold line (or ## heading) just above it.
EXPECTED_TITLES = (
    "Cluster health and node membership", "Per-node resource usage", "List all VMs across the cluster",
    "Individual VM status", "Filter VMs by status", "List templates", "Full clone from an existing template",
    "Post-clone configuration (CPU, memory, network, cloud-init)", "Start", "Shutdown (graceful via ACPI)",
    "Stop (immediate -- use with caution)", "Reboot", "VM Deletion", "CPU and memory (config change)",
    "Disk resize (grow only)", "Single-shot status check", "Polling loop with timeout",
    "Read task logs for debugging", "Live migrate a running VM", "Offline migrate a stopped VM",
    "Pre-migration resource check",
)


def require_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.fail(f"`{name}` is not installed: the e2e tests need it (apt-get install {name}); "
                    "they are never skipped.", pytrace=False)


def find_seed() -> Path:
    candidates = []
    if os.environ.get("PVECTL_SEED"):
        candidates.append(Path(os.environ["PVECTL_SEED"]))
    repo = Path(__file__).resolve().parents[2]
    candidates += [repo / "spec" / SEED_NAME, repo.parent / "shared" / "spec" / SEED_NAME]
    for c in candidates:
        if c.is_file():
            return c
    pytest.fail(f"the seed reference {SEED_NAME} was not found (looked in: "
                f"{', '.join(map(str, candidates))}); set PVECTL_SEED to its path", pytrace=False)


def parse_seed_blocks(text: str) -> dict[str, str]:
    blocks: dict[str, str] = {}
    title: str | None = None
    lines = iter(text.splitlines())
    for line in lines:
        m = re.match(r"^\*\*(.+?)\*\*", line) or re.match(r"^##+\s+(.+)$", line)
        if m:
            title = m.group(1).strip().rstrip(":").strip()
            continue
        if line.strip() == "```bash":
            body = []
            for inner in lines:
                if inner.strip() == "```":
                    break
                body.append(inner)
            assert title is not None, "a bash block without a title"
            assert title not in blocks, f"two bash blocks titled {title!r}"
            blocks[title] = "\n".join(body) + "\n"
    return blocks


SEED_BLOCKS = parse_seed_blocks(find_seed().read_text(encoding="utf-8"))


# -- running the seed's commands ---------------------------------------------------------------


class SeedShell:
    """Fills in the seed's placeholders and runs its commands with bash, pass and curl."""

    def __init__(self, sim: SimProcess, store: PassStore, curl_home: Path, tls: str, keys_file: Path) -> None:
        self.sim = sim
        self.store = store
        self.tls = tls
        self.keys_file = keys_file
        self.env = dict(store.env, CURL_HOME=str(curl_home), LC_ALL="C.UTF-8")

    def command(self, title: str, *, via: str | None = None, **values: Any) -> str:
        text = SEED_BLOCKS[title]
        via = via or next(iter(self.sim.nodes))
        text = text.replace("<NODE_HOST>:8006", self.sim.host_port(via))
        text = text.replace("<CLUSTER_DOMAIN>", "")
        values.setdefault("PASS_PATH", self.store.pass_path)
        values.setdefault("URL_ENCODED_KEYS", f"$(jq -sRr @uri < {shlex.quote(str(self.keys_file))})")
        for key, value in values.items():
            text = text.replace(f"<{key}>", str(value))
        left = re.findall(r"<[A-Z_]+>", text)
        assert not left, f"unfilled placeholders in {title!r}: {left}"
        return self.apply_tls(text)

    def apply_tls(self, text: str) -> str:
        if self.tls == "k":
            assert "curl -sk" in text
            return text
        out = text.replace("curl -sk", f"curl -s --cacert {shlex.quote(str(self.sim.ca_path))}")
        assert not re.search(r"curl\s+-\w*k", out), "the verifying variant still has -k"
        return out

    def run(self, script: str, *, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        # pipefail so that a curl failure (TLS, connection) is not hidden behind jq's exit status
        return subprocess.run(["bash", "-c", "set -o pipefail\n" + script], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def ok(self, title: str, **values: Any) -> str:
        proc = self.run(self.command(title, **values))
        assert proc.returncode == 0, f"{title}: exit {proc.returncode}\n{proc.stderr}"
        return proc.stdout

    def json(self, title: str, **values: Any) -> list[Any]:
        return load_json_stream(self.ok(title, **values))

    def upid(self, title: str, **values: Any) -> str:
        (doc,) = self.json(title, **values)
        upid = doc["data"]
        assert isinstance(upid, str) and UPID_RE.match(upid), f"{title}: not a UPID: {doc}"
        return upid

    def poll_task(self, node: str, upid: str, timeout: int = 90) -> subprocess.CompletedProcess[str]:
        """The seed's own `poll_task`, with interval 1 instead of its default 5."""
        script = self.command("Polling loop with timeout") + f"\npoll_task {node} {shlex.quote(upid)} {timeout} 1\n"
        return self.run(script, timeout=timeout + 30)

    def wait_ok(self, upid: str) -> None:
        node = UPID_RE.match(upid).group("node")  # type: ignore[union-attr]
        proc = self.poll_task(node, upid)
        assert proc.returncode == 0 and proc.stdout.strip() == "Task completed successfully", (
            f"poll_task {upid}: exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")

    @staticmethod
    def variant(command: str, extra: str) -> str:
        """The same command with extra curl options (status code, headers); the seed command stays as is."""
        return re.sub(r"\bcurl -s(k?)\b", lambda m: m.group(0) + " " + extra, command, count=1)

    @staticmethod
    def errata_fix(command: str) -> str:
        """Rewrite a seed `-d "k=v&..."` body per docs/seed-errata.md: every value with `=`, `+` or a
        pre-encoded value goes through `--data-urlencode`, the rest stays in `-d`."""
        m = re.search(r'-d "([^"]*)"', command)
        assert m, command
        plain: list[str] = []
        encoded: list[str] = []
        for pair in m.group(1).split("&"):
            key, _, value = pair.partition("=")
            if "=" in value or "+" in value or value.startswith("$(jq"):
                encoded.append(f'--data-urlencode "{key}={value}"')
            else:
                plain.append(pair)
        parts = ([f'-d "{"&".join(plain)}"'] if plain else []) + encoded
        return command[:m.start()] + " ".join(parts) + command[m.end():]


@pytest.fixture(scope="module")
def tools() -> None:
    for tool in ("bash", "curl", "jq"):
        require_tool(tool)


@pytest.fixture(scope="module")
def curl_home(sim_process: SimProcess) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pvectl-curlhome-") as d:
        lines = [f"connect-to = {name}.:8006:{host}:{port}" for name, (host, port) in sim_process.nodes.items()]
        (Path(d) / ".curlrc").write_text("\n".join(lines) + "\n", encoding="utf-8")
        yield Path(d)


@pytest.fixture(scope="module")
def keys_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pvectl-keys-") as d:
        p = Path(d) / "authorized_keys"
        p.write_text(SSH_KEYS, encoding="utf-8")
        yield p


@pytest.fixture(params=["k", "cacert"])
def seed(request: pytest.FixtureRequest, tools: None, sim_process: SimProcess, pass_store: PassStore,
         curl_home: Path, keys_file: Path) -> SeedShell:
    return SeedShell(sim_process, pass_store, curl_home, request.param, keys_file)


def other_node(sim: SimProcess, node: str) -> str:
    return next(n for n in sim.nodes if n != node)


def template_vm(sim: SimProcess) -> dict[str, Any]:
    return next(v for v in sorted(sim.vms(), key=lambda v: v["vmid"]) if v.get("template") == 1)


def clone(seed: SeedShell, *, storage: str = "local-lvm", target: str | None = None) -> tuple[int, str]:
    """The seed's clone command; returns (vmid, node) once its task ended OK."""
    sim = seed.sim
    tpl = template_vm(sim)
    newid = int(sim.api("GET", "/cluster/nextid"))
    target = target or tpl["node"]
    upid = seed.upid("Full clone from an existing template", via=other_node(sim, tpl["node"]),
                     NEW_VMID=newid, VM_NAME=f"e2e-{seed.tls}-{newid}", TARGET_NODE=target, STORAGE=storage,
                     TEMPLATE_NODE=tpl["node"], TEMPLATE_VMID=tpl["vmid"])
    assert UPID_RE.match(upid).group("type") == "qmclone"  # type: ignore[union-attr]
    seed.wait_ok(upid)
    return newid, target


def vm_node(sim: SimProcess, vmid: int) -> str | None:
    return next((v["node"] for v in sim.vms() if v["vmid"] == vmid), None)


# -- the seed's text -------------------------------------------------------------------------------


def test_seed_blocks_are_all_found() -> None:
    assert set(EXPECTED_TITLES) <= set(SEED_BLOCKS), set(EXPECTED_TITLES) - set(SEED_BLOCKS)
    for title in EXPECTED_TITLES:
        assert "curl -sk" in SEED_BLOCKS[title]
        assert "$(pass show <PASS_PATH> | head -1)=$(pass show <PASS_PATH> | tail -1)" in SEED_BLOCKS[title]


def test_verifying_variant_really_verifies(tools: None, sim_process: SimProcess, pass_store: PassStore,
                                          curl_home: Path, keys_file: Path) -> None:
    seed = SeedShell(sim_process, pass_store, curl_home, "cacert", keys_file)
    cmd = seed.command("Cluster health and node membership")
    assert seed.json("Cluster health and node membership")
    other_cas = "/etc/ssl/certs/ca-certificates.crt"   # any CA bundle that is not the cluster's
    if not Path(other_cas).is_file():
        other_cas = ssl.get_default_verify_paths().openssl_cafile
    wrong_ca = cmd.replace(shlex.quote(str(sim_process.ca_path)), shlex.quote(other_cas))
    assert wrong_ca != cmd
    proc = seed.run(wrong_ca)
    assert proc.returncode == 60 and proc.stdout == ""   # CURLE_PEER_FAILED_VERIFICATION


# -- status and listing ----------------------------------------------------------------------------


def test_cluster_status(seed: SeedShell) -> None:
    out = seed.json("Cluster health and node membership")
    clusters = [o for o in out if o["type"] == "cluster"]
    nodes = {o["name"]: o for o in out if o["type"] == "node"}
    assert len(clusters) == 1 and clusters[0]["name"] == seed.sim.config["cluster"]["name"]
    assert set(nodes) == set(seed.sim.nodes)
    assert all(o["online"] == 1 for o in nodes.values())
    assert all(set(o) == {"name", "type", "online"} for o in out)


def test_node_status(seed: SeedShell) -> None:
    for node in seed.sim.nodes:
        (out,) = seed.json("Per-node resource usage", via=other_node(seed.sim, node), NODE_NAME=node)
        assert set(out) == {"cpu", "memory_used", "memory_total", "uptime"}
        assert 0 <= out["cpu"] <= 1
        assert 0 < out["memory_used"] < out["memory_total"]
        assert isinstance(out["uptime"], int) and out["uptime"] > 0


def test_list_all_vms(seed: SeedShell) -> None:
    out = seed.json("List all VMs across the cluster")
    truth = {v["vmid"]: v for v in seed.sim.vms()}
    assert {o["vmid"] for o in out} == set(truth)
    for o in out:
        assert set(o) == {"vmid", "name", "status", "node", "maxcpu", "maxmem", "template"}
        t = truth[o["vmid"]]
        assert (o["name"], o["status"], o["node"], o["maxcpu"]) == (t["name"], t["status"], t["node"], t["maxcpu"])
        assert re.fullmatch(r"\d+G", o["maxmem"]) and o["maxmem"] == f"{t['maxmem'] // GIB}G"
        assert o["template"] in (0, 1)
    assert any(o["maxmem"] == "4G" for o in out)
    assert any(o["template"] == 1 for o in out) and any(o["template"] == 0 for o in out)


def test_filter_running(seed: SeedShell) -> None:
    (out,) = seed.json("Filter VMs by status")
    running = {v["vmid"] for v in seed.sim.vms() if v["status"] == "running"}
    assert running and {o["vmid"] for o in out} == running
    assert all(set(o) == {"vmid", "name", "node"} for o in out)


def test_list_templates(seed: SeedShell) -> None:
    (out,) = seed.json("List templates")
    templates = [v for v in seed.sim.vms() if v.get("template") == 1]
    assert {o["vmid"] for o in out} == {v["vmid"] for v in templates}
    assert all(o["vmid"] >= 9000 for o in out)
    assert all("template" in v.get("tags", "").split(";") for v in templates)


def test_individual_status(seed: SeedShell) -> None:
    vms = [v for v in seed.sim.vms() if v.get("template") == 0]
    running = next(v for v in vms if v["status"] == "running")
    stopped = next(v for v in vms if v["status"] == "stopped")
    (r,) = seed.json("Individual VM status", NODE_NAME=running["node"], VMID=running["vmid"])
    assert set(r) == {"status", "pid", "cpu", "mem", "maxmem", "uptime", "qmpstatus"}
    assert r["status"] == "running" and r["qmpstatus"] == "running"
    assert isinstance(r["pid"], int) and r["uptime"] > 0 and r["maxmem"] == running["maxmem"]
    (s,) = seed.json("Individual VM status", NODE_NAME=stopped["node"], VMID=stopped["vmid"])
    assert s["status"] == "stopped" and s["pid"] is None and s["uptime"] == 0


# -- the whole life of a VM --------------------------------------------------------------------------


def test_vm_lifecycle(seed: SeedShell) -> None:
    sim = seed.sim
    tpl = template_vm(sim)
    tpl_cfg = sim.api("GET", f"/nodes/{tpl['node']}/qemu/{tpl['vmid']}/config")
    sim.control("DELETE", "requests")
    vmid, node = clone(seed)
    assert vm_node(sim, vmid) == node

    # poll_task's status requests went to the task's own node (`pveN.:8006`)
    polls = [e for e in sim.control("GET", "requests")
             if e["path"].endswith("/status") and "/tasks/UPID:" in e["path"]]
    assert polls and all(e["node"] == node for e in polls), polls

    # task status and task log, single shot, for the clone task
    upid = next(e["path"].split("/tasks/")[1].rsplit("/", 1)[0] for e in polls)
    upid = urllib.parse.unquote(upid)
    (st,) = seed.json("Single-shot status check", NODE_NAME=node, UPID=upid)
    assert st == {"status": "stopped", "exitstatus": "OK"}
    log = seed.json("Read task logs for debugging", NODE_NAME=node, UPID=upid)
    assert all(isinstance(t, str) for t in log) and 0 < len(log) <= 50
    assert log[0] == f"creating a clone of VM {tpl['vmid']} with ID {vmid}"

    # post-clone configuration as the seed writes it: refused like Proxmox refuses it
    post_clone = dict(NODE_NAME=node, NEW_VMID=vmid, CORES=2, MEM_MB=2048, BRIDGE="vmbr0", CI_USER="ops")
    cmd = seed.command("Post-clone configuration (CPU, memory, network, cloud-init)", **post_clone)
    proc = seed.run(cmd)
    assert proc.returncode == 0
    (body,) = load_json_stream(proc.stdout)
    assert body["data"] is None and body["message"] == "Parameter verification failed.\n"
    assert body["errors"] == {
        "net0": "invalid format - duplicate key in comma-separated list property: model\n",
        "ipconfig0": "invalid format - value without key, but schema does not define a default key\n",
        "sshkeys": f"invalid format - invalid urlencoded string: {SSH_KEYS}\n",
    }
    assert seed.run(seed.variant(cmd, "-o /dev/null -w '%{http_code}'")).stdout == "400"
    verbose = seed.run(seed.variant(cmd, "-v"))
    assert "< HTTP/1.1 400 Parameter verification failed." in verbose.stderr
    cfg = sim.api("GET", f"/nodes/{node}/qemu/{vmid}/config")
    assert cfg["cores"] == tpl_cfg["cores"] and "sshkeys" not in cfg and "ciuser" not in cfg  # nothing applied

    # the same command with --data-urlencode (docs/seed-errata.md): accepted
    fixed = seed.errata_fix(cmd)
    assert fixed.count("--data-urlencode") == 3 and '-d "cores=2&memory=2048&ciuser=ops"' in fixed
    (body,) = load_json_stream(seed.run(fixed).stdout)
    assert body == {"data": None}, body
    cfg = sim.api("GET", f"/nodes/{node}/qemu/{vmid}/config")
    assert cfg["cores"] == 2 and int(cfg["memory"]) == 2048 and cfg["ciuser"] == "ops"
    assert re.fullmatch(r"virtio=([0-9A-F]{2}:){5}[0-9A-F]{2},bridge=vmbr0", cfg["net0"]), cfg["net0"]
    assert cfg["ipconfig0"] == "ip=dhcp"
    assert urllib.parse.unquote(cfg["sshkeys"]) == SSH_KEYS

    # CPU and memory, as written (no `=` or `+` inside a value: fine)
    (body,) = seed.json("CPU and memory (config change)", NODE_NAME=node, VMID=vmid, CORES=4, MEM_MB=4096)
    assert body == {"data": None}
    cfg = sim.api("GET", f"/nodes/{node}/qemu/{vmid}/config")
    assert cfg["cores"] == 4 and int(cfg["memory"]) == 4096

    # disk resize as written: `+` becomes a space
    size_before = int(re.search(r"size=(\d+)G", cfg["scsi0"]).group(1))  # type: ignore[union-attr]
    cmd = seed.command("Disk resize (grow only)", NODE_NAME=node, VMID=vmid)
    (body,) = load_json_stream(seed.run(cmd).stdout)
    assert body["message"] == "Parameter verification failed.\n"
    assert body["errors"] == {"size": "value does not match the regex pattern"}
    assert seed.run(seed.variant(cmd, "-o /dev/null -w '%{http_code}'")).stdout == "400"
    fixed = seed.errata_fix(cmd)
    assert '-d "disk=scsi0" --data-urlencode "size=+10G"' in fixed
    (body,) = load_json_stream(seed.run(fixed).stdout)
    assert UPID_RE.match(body["data"]).group("type") == "resize"  # type: ignore[union-attr]
    seed.wait_ok(body["data"])
    cfg = sim.api("GET", f"/nodes/{node}/qemu/{vmid}/config")
    assert f"size={size_before + 10}G" in cfg["scsi0"], cfg["scsi0"]

    def status() -> dict[str, Any]:
        (s,) = seed.json("Individual VM status", NODE_NAME=node, VMID=vmid)
        return s

    # power: start, reboot, shutdown, start, stop
    for title, after in (("Start", "running"), ("Reboot", "running"), ("Shutdown (graceful via ACPI)", "stopped"),
                         ("Start", "running"), ("Stop (immediate -- use with caution)", "stopped")):
        upid = seed.upid(title, via=other_node(sim, node), NODE_NAME=node, VMID=vmid)
        kind = UPID_RE.match(upid).group("type")  # type: ignore[union-attr]
        assert kind == {"Start": "qmstart", "Reboot": "qmreboot", "Shutdown (graceful via ACPI)": "qmshutdown",
                        "Stop (immediate -- use with caution)": "qmstop"}[title]
        seed.wait_ok(upid)
        s = status()
        assert s["status"] == after, (title, s)
        if after == "running":
            assert isinstance(s["pid"], int) and s["qmpstatus"] == "running"

    # offline migration of the stopped VM: it ends on the target node
    target = other_node(sim, node)
    upid = seed.upid("Offline migrate a stopped VM", TARGET_NODE=target, SOURCE_NODE=node, VMID=vmid)
    seed.wait_ok(upid)
    assert vm_node(sim, vmid) == target
    node = target

    # delete (stopped, unprotected): gone, disks too
    upid = seed.upid("VM Deletion", NODE_NAME=node, VMID=vmid)
    assert UPID_RE.match(upid).group("type") == "qmdestroy"  # type: ignore[union-attr]
    seed.wait_ok(upid)
    assert vm_node(sim, vmid) is None
    (gone,) = seed.json("Individual VM status", NODE_NAME=node, VMID=vmid)
    assert gone == {k: None for k in ("status", "pid", "cpu", "mem", "maxmem", "uptime", "qmpstatus")}
    assert not [v for v in sim.saved_state()["volumes"].values() if v["vmid"] == vmid]


def test_delete_refused(seed: SeedShell) -> None:
    sim = seed.sim
    vms = [v for v in sim.vms() if v.get("template") == 0]
    protected = next(v for v in vms
                     if str(sim.api("GET", f"/nodes/{v['node']}/qemu/{v['vmid']}/config").get("protection")) == "1")
    running = next(v for v in vms if v["status"] == "running" and v["vmid"] != protected["vmid"]
                   and not sim.api("GET", f"/nodes/{v['node']}/qemu/{v['vmid']}/config").get("protection"))
    for vm, message in ((protected, f"can't remove VM {protected['vmid']} - protection mode enabled"),
                        (running, f"VM {running['vmid']} is running - destroy failed")):
        cmd = seed.command("VM Deletion", NODE_NAME=vm["node"], VMID=vm["vmid"])
        proc = seed.run(cmd)
        assert proc.returncode == 0
        assert load_json_stream(proc.stdout) == [{"data": None, "message": message + "\n"}]
        assert seed.run(seed.variant(cmd, "-o /dev/null -w '%{http_code}'")).stdout == "500"
        # the reason phrase carries the message (text mode turns the header's CRLF into \n)
        assert f"< HTTP/1.1 500 {message}\n" in seed.run(seed.variant(cmd, "-v")).stderr
        assert vm_node(sim, vm["vmid"]) == vm["node"]   # still there


def test_live_migration(seed: SeedShell) -> None:
    """A running VM on shared storage (clone with storage=ceph-vm) migrates online and keeps running."""
    sim = seed.sim
    tpl = template_vm(sim)
    # Proxmox clones to another node only from a template on shared storage ("can't clone VM to
    # node 'X' (VM uses local storage)"), so the clone stays on the template's node.
    proc = seed.run(seed.command("Full clone from an existing template", NEW_VMID=999, VM_NAME="x",
                                 TARGET_NODE=other_node(sim, tpl["node"]), STORAGE="ceph-vm",
                                 TEMPLATE_NODE=tpl["node"], TEMPLATE_VMID=tpl["vmid"]))
    assert load_json_stream(proc.stdout) == [{
        "data": None, "message": f"can't clone VM to node '{other_node(sim, tpl['node'])}' (VM uses local storage)\n"}]
    vmid, node = clone(seed, storage="ceph-vm")
    cfg = sim.api("GET", f"/nodes/{node}/qemu/{vmid}/config")
    assert cfg["scsi0"].startswith("ceph-vm:"), cfg
    try:
        seed.wait_ok(seed.upid("Start", NODE_NAME=node, VMID=vmid))
        target = next(n for n in sim.nodes if n not in (node,))
        (check,) = seed.json("Pre-migration resource check", TARGET_NODE=target)
        assert set(check) == {"cpu", "memory_free", "memory_total"}
        assert re.fullmatch(r"\d+G", check["memory_free"]) and re.fullmatch(r"\d+G", check["memory_total"])
        assert int(check["memory_free"][:-1]) <= int(check["memory_total"][:-1])
        upid = seed.upid("Live migrate a running VM", TARGET_NODE=target, SOURCE_NODE=node, VMID=vmid)
        assert UPID_RE.match(upid).group("type") == "qmigrate"  # type: ignore[union-attr]
        seed.wait_ok(upid)
        assert vm_node(sim, vmid) == target
        (s,) = seed.json("Individual VM status", NODE_NAME=target, VMID=vmid)
        assert s["status"] == "running"
        node = target
    finally:
        if sim.api("GET", f"/nodes/{node}/qemu/{vmid}/status/current")["status"] == "running":
            sim.wait_task(sim.api("POST", f"/nodes/{node}/qemu/{vmid}/status/stop", node=node))
        sim.wait_task(sim.api("DELETE", f"/nodes/{node}/qemu/{vmid}", node=node))


def test_live_migration_with_local_disks_fails_like_proxmox(seed: SeedShell) -> None:
    """The seed says local-lvm disks are copied automatically; without `with-local-disks=1` Proxmox
    aborts a live migration of attached local disks - and the seed's poll_task reports it."""
    sim = seed.sim
    vm = next(v for v in sim.vms() if v.get("template") == 0 and v["status"] == "running"
              and "local-lvm:" in sim.api("GET", f"/nodes/{v['node']}/qemu/{v['vmid']}/config").get("scsi0", ""))
    target = other_node(sim, vm["node"])
    upid = seed.upid("Live migrate a running VM", TARGET_NODE=target, SOURCE_NODE=vm["node"], VMID=vm["vmid"])
    proc = seed.poll_task(vm["node"], upid)
    assert proc.returncode == 1 and proc.stdout.strip() == "Task failed: migration aborted", proc.stdout
    log = seed.json("Read task logs for debugging", NODE_NAME=vm["node"], UPID=upid)
    assert any("can't live migrate attached local disks without with-local-disks option" in t for t in log)
    assert log[-1] == "TASK ERROR: migration aborted"
    assert vm_node(sim, vm["vmid"]) == vm["node"]


def test_pre_migration_resource_check(seed: SeedShell) -> None:
    for node in seed.sim.nodes:
        (out,) = seed.json("Pre-migration resource check", TARGET_NODE=node)
        (st,) = seed.json("Per-node resource usage", NODE_NAME=node)
        assert out["memory_total"] == f"{st['memory_total'] // GIB}G"
        assert out["memory_free"] == f"{(st['memory_total'] - st['memory_used']) // GIB}G"
        assert out["cpu"] >= 0
