"""Read commands against the simulator, checked against the seed's own curl + jq pipelines.

Each comparison runs the seed's jq filter (copied verbatim from the seed reference) in the same
test, so the CLI is held to what the API says, not to numbers written into the test. The CLI runs
in this process (`main()`) and, in the parametrized variant, as the installed `pvectl` script.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from cliharness import Run
    from conftest import SeedCurl

GIB = 1024**3

# The seed's jq filters, verbatim.
JQ_CLUSTER = ".data[] | {name, type, online}"
JQ_NODE = ("{cpu: .data.cpu, memory_used: .data.memory.used, memory_total: .data.memory.total, "
           "uptime: .data.uptime}")
JQ_VMS = ('.data[] | {vmid, name, status, node, maxcpu: .maxcpu, maxmem: (.maxmem / 1073741824 | floor | '
          'tostring + "G"), template}')
JQ_VM = ".data | {status, pid, cpu, mem, maxmem, uptime, qmpstatus}"
JQ_RUNNING = '[.data[] | select(.status == "running") | {vmid, name, node}]'
JQ_TEMPLATES = "[.data[] | select(.template == 1) | {vmid, name, node}]"

RESOURCES = "/cluster/resources?type=vm"
ANSI = re.compile(r"\x1b\[")


@pytest.fixture(params=["in-process", "subprocess"])
def pvectl(request: pytest.FixtureRequest, cli: Callable[..., Run], sim: Any,
           run_pvectl: Callable[..., Run]) -> Callable[..., Run]:
    """`pvectl --config <sim config> ARGS` either in this process or as the installed script."""
    cfg = str(sim.config_path)
    if request.param == "in-process":
        return lambda *a: cli("--config", cfg, *a)
    return lambda *a: run_pvectl("--config", cfg, *a)


def ok(r: Run) -> Run:
    assert r.code == 0, (r.code, r.out, r.err)
    assert "Traceback" not in r.err
    return r


def by_vmid(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["vmid"]): r for r in rows}


# ------------------------------------------------------------------------------------------------
# JSON output holds the same facts as the seed's curl + jq


def test_json_reads_match_seed_pipelines(pvectl: Callable[..., Run], seed_curl: SeedCurl) -> None:
    # vm list  <->  "List all VMs across the cluster"
    seed = by_vmid(seed_curl(RESOURCES, JQ_VMS))
    ours = by_vmid(ok(pvectl("-o", "json", "vm", "list")).json)
    assert len(seed) == 14 and ours.keys() == seed.keys()
    for vmid, s in seed.items():
        o = ours[vmid]
        assert (o["name"], o["status"], o["node"], o["maxcpu"]) == (s["name"], s["status"], s["node"], s["maxcpu"])
        assert f"{o['maxmem'] // GIB}G" == s["maxmem"]
        assert o["template"] is (s["template"] == 1)

    # vm list --status running  <->  "Filter VMs by status"
    [seed_running] = seed_curl(RESOURCES, JQ_RUNNING)
    ours_running = ok(pvectl("-o", "json", "vm", "list", "--status", "running")).json
    assert seed_running and len(seed_running) < len(seed)
    assert [{k: v[k] for k in ("vmid", "name", "node")} for v in ours_running] == \
        sorted(seed_running, key=lambda v: v["vmid"])

    # template list  <->  "List templates"
    [seed_templates] = seed_curl(RESOURCES, JQ_TEMPLATES)
    ours_templates = ok(pvectl("-o", "json", "template", "list")).json
    assert [{k: t[k] for k in ("vmid", "name", "node")} for t in ours_templates] == \
        sorted(seed_templates, key=lambda v: v["vmid"])
    assert [t["vmid"] for t in seed_templates] == [9000, 9001]
    assert all(t["template"] is True and "flag" in t["matched_by"] for t in ours_templates)

    # cluster status  <->  "Cluster health and node membership"
    seed_cluster = seed_curl("/cluster/status", JQ_CLUSTER)
    ours_cluster = ok(pvectl("-o", "json", "cluster", "status")).json
    [cluster_entry] = [e for e in seed_cluster if e["type"] == "cluster"]
    assert ours_cluster["cluster"] == cluster_entry["name"] == "simcluster"
    assert ours_cluster["quorate"] is True
    assert {n["name"]: n["online"] for n in ours_cluster["nodes"]} == \
        {e["name"]: e["online"] == 1 for e in seed_cluster if e["type"] == "node"} == \
        {"pve1": True, "pve2": True, "pve3": True}

    # node status NODE  <->  "Per-node resource usage"
    for node in ("pve1", "pve3"):
        [s] = seed_curl(f"/nodes/{node}/status", JQ_NODE)
        o = ok(pvectl("-o", "json", "node", "status", node)).json
        assert o["name"] == node
        assert (o["cpu"], o["memory_used"], o["memory_total"]) == (s["cpu"], s["memory_used"], s["memory_total"])
        assert o["memory_free"] == s["memory_total"] - s["memory_used"]
        assert abs(o["uptime"] - s["uptime"]) <= 60      # uptime counts up between the two reads

    # vm status VM  <->  "Individual VM status" (VM 101 lives on pve2; the curl goes to pve1, which
    # relays it, as any node does for the cluster)
    node = seed[101]["node"]
    [s] = seed_curl(f"/nodes/{node}/qemu/101/status/current", JQ_VM)
    o = ok(pvectl("-o", "json", "vm", "status", "101")).json
    assert (o["vmid"], o["name"], o["node"]) == (101, seed[101]["name"], node)
    assert (o["status"], o["pid"], o["mem"], o["maxmem"], o["qmpstatus"]) == \
        (s["status"], s["pid"], s["mem"], s["maxmem"], s["qmpstatus"])
    assert s["status"] == "running" and isinstance(s["pid"], int)
    assert 0 <= o["cpu"] <= o["cpus"] and abs(o["uptime"] - s["uptime"]) <= 60


def test_stopped_vm_status_matches_seed(cli: Callable[..., Run], sim: Any, seed_curl: SeedCurl) -> None:
    [s] = seed_curl("/nodes/pve1/qemu/103/status/current", JQ_VM)
    o = ok(cli("--config", str(sim.config_path), "-o", "json", "vm", "status", "103")).json
    assert s["status"] == o["status"] == "stopped"
    assert s["pid"] is None and o["pid"] is None
    assert o["uptime"] == s["uptime"] == 0 and o["mem"] == s["mem"] == 0


# ------------------------------------------------------------------------------------------------
# Output formats


def test_default_output_is_json_when_stdout_is_not_a_tty(cli: Callable[..., Run], sim: Any) -> None:
    r = ok(cli("--config", str(sim.config_path), "vm", "list"))
    assert [v["vmid"] for v in r.json] == sorted(v["vmid"] for v in r.json)
    assert len(r.json) == 14 and r.err == ""
    # the global options work after the subcommand too
    r2 = ok(cli("vm", "list", "--config", str(sim.config_path), "-o", "json"))
    assert [v["vmid"] for v in r2.json] == [v["vmid"] for v in r.json]


def test_vm_list_table_on_a_non_tty(cli: Callable[..., Run], sim: Any, seed_curl: SeedCurl) -> None:
    seed = by_vmid(seed_curl(RESOURCES, JQ_VMS))
    r = ok(cli("--config", str(sim.config_path), "-o", "table", "vm", "list"))
    assert not ANSI.search(r.out), "no colours or box drawing when stdout is not a terminal"
    lines = r.out.splitlines()
    assert lines[0].split() == ["VMID", "NAME", "STATUS", "NODE", "CPUS", "MEM", "TEMPLATE", "TAGS", "LOCK"]
    rows = [ln.split() for ln in lines[1:]]
    assert len(rows) == len(seed) == 14
    for vmid, name, status, node, cpus, mem, template, _tags, lock in rows:
        s = seed[int(vmid)]
        assert (name, status, node, int(cpus)) == (s["name"], s["status"], s["node"], s["maxcpu"])
        assert mem == s["maxmem"]                          # the seed's floor(maxmem / GiB) "G"
        assert template == ("yes" if s["template"] == 1 else "-")
        assert lock == "-"
    # columns are aligned: every row starts its NAME at the same offset as the header
    col = lines[0].index("NAME")
    assert all(ln[col - 2:col] == "  " and ln[col] != " " for ln in lines[1:])


def test_other_tables_on_a_non_tty(cli: Callable[..., Run], sim: Any) -> None:
    cfg = str(sim.config_path)
    r = ok(cli("--config", cfg, "-o", "table", "cluster", "status"))
    lines = r.out.splitlines()
    assert lines[0] == "cluster simcluster  quorate: yes"
    assert lines[1].split() == ["NODE", "STATE", "ID", "IP"]
    assert [ln.split()[:3] for ln in lines[2:]] == [["pve1", "online", "1"], ["pve2", "online", "2"],
                                                    ["pve3", "online", "3"]]

    r = ok(cli("--config", cfg, "-o", "table", "node", "list"))
    lines = r.out.splitlines()
    assert lines[0].split()[:2] == ["NODE", "STATUS"] and [ln.split()[0] for ln in lines[1:]] == \
        ["pve1", "pve2", "pve3"]

    r = ok(cli("--config", cfg, "-o", "table", "template", "list"))
    lines = r.out.splitlines()
    assert lines[0].split() == ["VMID", "NAME", "NODE", "FLAG", "TAGS", "DISK", "FOUND", "BY"]
    assert [ln.split()[:4] for ln in lines[1:]] == [["9000", "ubuntu-24.04-cloud", "pve1", "yes"],
                                                    ["9001", "debian-12-cloud", "pve2", "yes"]]

    r = ok(cli("--config", cfg, "-o", "table", "vm", "status", "web-01"))
    kv = dict(ln.split(None, 1) for ln in r.out.splitlines())
    assert (kv["vmid"], kv["name"], kv["node"], kv["status"], kv["maxmem"], kv["template"]) == \
        ("100", "web-01", "pve1", "running", "4G", "no")

    r = ok(cli("--config", cfg, "-o", "table", "node", "status", "pve2"))
    lines = r.out.splitlines()
    assert lines[0].split()[0] == "NODE" and len(lines) == 2 and lines[1].split()[0] == "pve2"


def test_yaml_output_equals_json_output(cli: Callable[..., Run], sim: Any) -> None:
    cfg = str(sim.config_path)
    for args in (("cluster", "status"), ("template", "list"), ("node", "status", "pve1")):
        j = ok(cli("--config", cfg, "-o", "json", *args)).json
        y = yaml.safe_load(ok(cli("--config", cfg, "-o", "yaml", *args)).out)
        j.pop("uptime", None) if isinstance(j, dict) else None
        y.pop("uptime", None) if isinstance(y, dict) else None
        assert y == j, args
    stable = ("vmid", "name", "node", "status", "template", "maxcpu", "maxmem", "tags")
    j = ok(cli("--config", cfg, "-o", "json", "vm", "list")).json
    y = yaml.safe_load(ok(cli("--config", cfg, "-o", "yaml", "vm", "list")).out)
    assert [{k: v[k] for k in stable} for v in y] == [{k: v[k] for k in stable} for v in j]


# ------------------------------------------------------------------------------------------------
# Filters


def test_vm_list_filters(cli: Callable[..., Run], sim: Any, seed_curl: SeedCurl) -> None:
    cfg = str(sim.config_path)

    def vmids(*args: str) -> list[int]:
        return [v["vmid"] for v in ok(cli("--config", cfg, "-o", "json", "vm", "list", *args)).json]

    def jq_vmids(select: str) -> list[int]:
        [ids] = seed_curl(RESOURCES, f"[.data[] | select({select}) | .vmid] | sort")
        return ids

    assert vmids("--node", "pve2") == jq_vmids('.node == "pve2"') != []
    assert vmids("--tag", "prod") == jq_vmids('(.tags // "") | split(";") | index("prod")') != []
    assert vmids("--status", "stopped") == jq_vmids('.status == "stopped"') != []
    assert vmids("--templates") == jq_vmids(".template == 1") == [9000, 9001]
    assert vmids("--no-templates") == jq_vmids(".template != 1") and 9000 not in vmids("--no-templates")
    assert vmids("--node", "pve1", "--status", "running", "--no-templates") == \
        jq_vmids('.node == "pve1" and .status == "running" and .template != 1') != []
    assert vmids("--tag", "no-such-tag") == []
    assert vmids("--node", "pve2", "--templates") == [9001]


def test_template_list_rules_against_the_seed_flag_rule(cli: Callable[..., Run], fresh_sim: Any,
                                                         seed_curl_for: Callable[[Any], SeedCurl]) -> None:
    """A VM tagged `template` that was never converted: listed (found by tag only) with a warning in
    table mode; `--by flag` is exactly the seed's `select(.template == 1)`."""
    curl = seed_curl_for(fresh_sim)
    with fresh_sim.backend.mu:
        fresh_sim.backend.state.vms[106].config["tags"] = "batch;template"
    cfg = str(fresh_sim.config_path)
    all_ = ok(cli("--config", cfg, "-o", "json", "template", "list")).json
    assert [(t["vmid"], t["matched_by"]) for t in all_] == \
        [(106, ["tag"]), (9000, ["flag", "tag", "range"]), (9001, ["flag", "tag", "range"])]
    [seed] = curl(RESOURCES, JQ_TEMPLATES)
    by_flag = ok(cli("--config", cfg, "-o", "json", "template", "list", "--by", "flag")).json
    assert [{k: t[k] for k in ("vmid", "name", "node")} for t in by_flag] == sorted(seed, key=lambda v: v["vmid"])
    by_tag = ok(cli("--config", cfg, "-o", "json", "template", "list", "--by", "tag")).json
    assert sorted(t["vmid"] for t in by_tag) == [106, 9000, 9001]
    table = ok(cli("--config", cfg, "-o", "table", "template", "list")).out
    assert "note: VM 106 (worker-01) matches tag but is not a template (no template flag)" in table


# ------------------------------------------------------------------------------------------------
# Naming a VM


def test_vm_by_name(cli: Callable[..., Run], sim: Any) -> None:
    r = ok(cli("--config", str(sim.config_path), "-o", "json", "vm", "status", "db-01"))
    assert (r.json["vmid"], r.json["node"], r.json["name"]) == (101, "pve2", "db-01")


def test_ambiguous_name_lists_candidates_exit_2(cli: Callable[..., Run], fresh_sim: Any,
                                                seed_curl_for: Callable[[Any], SeedCurl]) -> None:
    # Rename VM 104 to db-01 through the API (PUT .../config name=db-01), as an operator could.
    curl = seed_curl_for(fresh_sim)
    subprocess.run(["curl", "-s", "--fail-with-body", "--cacert", str(fresh_sim.ca_path), "-H",
                    f"@{curl.header_file}", "-X", "PUT", "--data-urlencode", "name=db-01",
                    curl.base + "/nodes/pve2/qemu/104/config"], check=True, capture_output=True)
    cfg = str(fresh_sim.config_path)
    r = cli("--config", cfg, "-o", "table", "vm", "status", "db-01")
    assert r.code == 2 and r.out == ""
    assert r.err_lines == ["pvectl: error: the name 'db-01' matches 2 VMs (101 on pve2, 104 on pve2): "
                           "give the VMID instead"]
    r = cli("--config", cfg, "-o", "json", "vm", "status", "db-01")
    assert r.code == 2 and r.err == ""
    assert r.json["error"]["type"] == "UsageError" and "101 on pve2, 104 on pve2" in r.json["error"]["message"]
    # the VMID still works
    assert ok(cli("--config", cfg, "-o", "json", "vm", "status", "104")).json["name"] == "db-01"


def test_unknown_vm_exit_1(cli: Callable[..., Run], sim: Any) -> None:
    cfg = str(sim.config_path)
    r = cli("--config", cfg, "-o", "table", "vm", "status", "4242")
    assert r.code == 1 and r.out == ""
    assert r.err_lines == ["pvectl: error: VM 4242 does not exist (or the token may not see it) "
                           "(hint: list the VMs with: pvectl vm list)"]
    r = cli("--config", cfg, "-o", "table", "vm", "status", "no-such-vm")
    assert r.code == 1
    assert r.err_lines == ["pvectl: error: no VM named 'no-such-vm' (hint: list the VMs with: pvectl vm list)"]
    r = cli("--config", cfg, "-o", "json", "vm", "status", "4242")
    assert r.code == 1 and r.err == ""
    assert r.json == {"error": {"type": "NotFound", "message": "VM 4242 does not exist (or the token may not see it)",
                                "hint": "list the VMs with: pvectl vm list"}}


def test_subprocess_error_is_one_line_on_stderr(sim: Any, run_pvectl: Callable[..., Run]) -> None:
    r = run_pvectl("--config", str(sim.config_path), "-o", "yaml", "vm", "status", "4242")
    assert r.code == 1 and r.out == ""
    assert r.err_lines == ["pvectl: error: VM 4242 does not exist (or the token may not see it) "
                           "(hint: list the VMs with: pvectl vm list)"]
