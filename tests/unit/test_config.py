from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pvectl.config import Config, VmidRange, find_config, load_config, loads_config
from pvectl.errors import ConfigError

GOOD = """\
cluster:
  name: lab
  nodes:
    - {name: pve01, host: pve01.lab.example.com}
    - name: pve02
      host: 10.0.0.2
      port: 8007
credentials:
  pass_path: proxmox/api-token
  ssh_user: root
defaults: {storage: local-lvm, network_bridge: vmbr0}
tags: {templates: template}
vmid_ranges: {vms: 100-899, templates: 9000-9999}
cloudinit: {default_user: ubuntu, ssh_keys_file: ~/.ssh/id_ed25519.pub}
"""

FP = ":".join(["AB"] * 32)


def write(tmp_path: Path, text: str, name: str = "cluster-config.yaml", age: float = 60) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    t = time.time() - age
    os.utime(p, (t, t))
    return p


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PVECTL_CONFIG", raising=False)
    monkeypatch.delenv("PVECTL_CLUSTER", raising=False)
    monkeypatch.chdir(tmp_path)


def test_good_config(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD))
    assert c.name == "lab" and c.path == str(tmp_path / "cluster-config.yaml")
    assert [(n.name, n.host, n.port) for n in c.nodes] == [("pve01", "pve01.lab.example.com", 8006),
                                                          ("pve02", "10.0.0.2", 8007)]
    assert c.node("pve02").address == "10.0.0.2:8007"
    assert c.credentials.pass_path == "proxmox/api-token" and c.credentials.ssh_user == "root"
    assert (c.defaults.storage, c.defaults.network_bridge, c.tags.templates) == ("local-lvm", "vmbr0", "template")
    assert c.vmid_ranges.vms == VmidRange(start=100, end=899) and str(c.vmid_ranges.templates) == "9000-9999"
    assert c.vmid_ranges.vms.contains(100) and c.vmid_ranges.vms.contains("899") and not c.vmid_ranges.vms.contains(900)
    assert c.cloudinit.ssh_keys_file == os.path.expanduser("~/.ssh/id_ed25519.pub")
    assert c.tls.mode("pve01") == "system" and c.clusters == ("lab",)
    with pytest.raises(AttributeError):
        c.name = "x"  # type: ignore[misc]
    assert c == load_config(tmp_path / "cluster-config.yaml")


def test_unknown_node_helper(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD))
    with pytest.raises(ConfigError) as ei:
        c.node("pve1")
    assert str(ei.value) == "unknown node 'pve1' in cluster 'lab' (did you mean 'pve01'?); nodes: pve01, pve02"


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "ca.pem").write_text("x")
    p = write(d, GOOD + "tls: {ca_file: ca.pem}\n".replace("tls", "tls") )
    text = p.read_text().replace("  pass_path: proxmox/api-token\n",
                                 "  token_id: root@pam!pvectl\n  token_file: secrets/token\n")
    p.write_text(text)
    c = load_config(p)
    assert c.tls.ca_file == str(d / "ca.pem") and c.tls.mode("pve01") == "ca_file"
    assert c.credentials.token_file == str(d / "secrets" / "token")
    assert c.credentials.token_id == "root@pam!pvectl"


def test_fingerprints_normalised(tmp_path: Path) -> None:
    fp_lower = FP.lower()
    c = load_config(write(tmp_path, GOOD + f'tls:\n  fingerprints:\n    pve01: "{fp_lower}"\n    pve02: "{"CD" * 32}"\n'))
    assert c.tls.fingerprint("pve01") == FP and c.tls.fingerprint("pve02") == ":".join(["CD"] * 32)
    assert c.tls.mode("pve02") == "pin"


BAD = [
    # (yaml, line, key, message tail)
    ("cluster: [\n", 2, None, "YAML syntax error: "),
    ("", 1, None, "the file is empty; expected a mapping with a 'cluster:' section"),
    ("- a\n- b\n", 1, "(top level)", "expected a mapping with a 'cluster:' section, got a list"),
    ("credentials: {ssh_user: root}\n", 1, "cluster", "missing required section (expected name: and nodes:)"),
    ("cluster:\n  nmae: lab\n  nodes: [{name: a, host: h}]\n", 2, "cluster.nmae",
     "unknown key (did you mean 'name'?)"),
    ("cluster:\n  name: lab\n  nodes: []\n", 3, "cluster.nodes", "no nodes: expected at least one {name, host}"),
    ("cluster:\n  name: lab\n", 1, "cluster.nodes", "missing required key (expected a list of {name, host})"),
    ("cluster:\n  name: lab\n  nodes:\n    - {name: a, host: h}\n    - {name: a, host: h2}\n", 5,
     "cluster.nodes[1].name", "duplicate node name 'a' (first at line 4)"),
    ("cluster:\n  name: lab\n  nodes:\n    - {name: a}\n", 4, "cluster.nodes[0].host",
     "missing required key (expected a string)"),
    ("cluster:\n  name: lab\n  nodes:\n    - {name: a, host: h, port: abc}\n", 4, "cluster.nodes[0].port",
     "expected an integer from 1 to 65535, got a string ('abc')"),
    ("cluster:\n  name: lab\n  nodes:\n    - {name: a, host: h, port: 70000}\n", 4, "cluster.nodes[0].port",
     "expected an integer from 1 to 65535, got 70000"),
    ("cluster:\n  name: 42\n  nodes: [{name: a, host: h}]\n", 2, "cluster.name",
     "expected a string, got an integer ('42')"),
    ("cluster:\n  name: lab\n  nodes: [{name: a, host: 'https://h:8006'}]\n", 3, "cluster.nodes[0].host",
     "expected a host name or IP address (no scheme, path or port), got 'https://h:8006'"),
    ("cluster:\n  name: lab\n  nodes: [{name: a_b, host: h}]\n", 3, "cluster.nodes[0].name",
     "not a valid node name: 'a_b' (letters, digits, '-')"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\nvmid_ranges:\n  vms: 100-899\n  templates: 800-999\n",
     4, "vmid_ranges.templates", "800-999 overlaps vmid_ranges.vms 100-899"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\nvmid_ranges: {vms: 100..899}\n", 2, "vmid_ranges.vms",
     "expected a range FIRST-LAST like '100-899', got a string ('100..899')"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\nvmid_ranges: {vms: 899-100}\n", 2, "vmid_ranges.vms",
     "range 899-100 is empty: FIRST must not exceed LAST"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\nvmid_ranges: {vms: 1-99}\n", 2, "vmid_ranges.vms",
     "range 1-99 is outside the valid VMIDs 100-999999999"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ntls:\n  fingerprints: {a: 'AB:CD'}\n", 3,
     "tls.fingerprints.a", "expected a SHA-256 fingerprint (32 hex byte pairs 'AB:CD:…'), got 'AB:CD'"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ntls:\n  fingerprints: {b: 'AB'}\n", 3,
     "tls.fingerprints.b", "unknown key (expected one of: a)"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ntls: {insecure: 'yes please'}\n", 2, "tls.insecure",
     "expected true or false, got a string ('yes please')"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ncredentials: {token_id: root@pam}\n", 2,
     "credentials.token_id",
     "expected an API token id USER@REALM!TOKENNAME (e.g. root@pam!pvectl), got 'root@pam'"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ncredentials: {pass-path: x}\n", 2, "credentials.pass-path",
     "unknown key (did you mean 'pass_path'?)"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ndefualts: {storage: x}\n", 2, "defualts",
     "unknown key (did you mean 'defaults'?)"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ncluster: {name: x}\n", 2, "cluster",
     "duplicate key (first at line 1)"),
    ("cluster: {name: lab, nodes: {name: a, host: h}}\n", 1, "cluster.nodes",
     "expected a list of {name, host}, got a mapping"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ntls: {ca_file: missing.pem}\n", 2, "tls.ca_file",
     "CA file not found: {dir}/missing.pem"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}, {name: b, host: h2}]}\ntls: {fingerprints: {a: '%s'}}\n" % FP,
     2, "tls.fingerprints", "no fingerprint for node b (pin every node, or add tls.ca_file)"),
    ("clusters:\n  lab: {cluster: {nodes: [{name: a, host: h}]}}\n  prod: {cluster: {nodes: [{name: b, host: h}]}}\n",
     1, "clusters", "several clusters defined (lab, prod); choose one with --cluster NAME, $PVECTL_CLUSTER or "
                    "default_cluster:"),
    ("clusters:\n  lab: {cluster: {nodes: [{name: a, host: h}]}}\ndefault_cluster: prd\n", 3, "default_cluster",
     "no cluster 'prd'; defined: lab"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\nclusters: {}\n", 1, "cluster",
     "cannot be combined with 'clusters:'; move it into each clusters entry"),
]


@pytest.mark.parametrize("text,line,key,tail", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_configs(tmp_path: Path, text: str, line: int, key: str | None, tail: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    e = ei.value
    msg = str(e)
    assert "\n" not in msg and "Traceback" not in msg
    prefix = f"{p}:{line}: " + (f"{key}: " if key else "")
    tail = tail.replace("{dir}", str(tmp_path))
    if tail.endswith(": "):
        assert msg.startswith(prefix + tail), msg
    else:
        assert msg == prefix + tail
    assert (e.file, e.line, e.key) == (str(p), line, key)
    assert e.exit_code == 2


def test_yaml_syntax_error_names_problem(tmp_path: Path) -> None:
    p = write(tmp_path, "cluster:\n  name: lab\n   nodes: x\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    # libyaml and pure-Python PyYAML word it slightly differently
    assert str(ei.value).startswith(f"{p}:3: YAML syntax error: mapping values are not allowed ")


def test_missing_and_unreadable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "nope.yaml")
    assert str(ei.value) == f"{tmp_path / 'nope.yaml'}: config file not found"
    monkeypatch.setenv("PVECTL_CONFIG", str(tmp_path / "env.yaml"))
    with pytest.raises(ConfigError) as ei:
        load_config()
    assert str(ei.value) == f"{tmp_path / 'env.yaml'}: config file not found ($PVECTL_CONFIG)"
    monkeypatch.delenv("PVECTL_CONFIG")
    with pytest.raises(ConfigError) as ei:
        load_config()
    assert str(ei.value) == (f"no cluster-config.yaml found (tried ./cluster-config.yaml, "
                             f"{tmp_path / 'xdg' / 'pvectl' / 'cluster-config.yaml'})")
    d = tmp_path / "dir.yaml"
    d.mkdir()
    with pytest.raises(ConfigError) as ei:
        load_config(d)
    assert str(ei.value) == f"{d}: cannot read config file: Is a directory"


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg" / "pvectl"
    xdg.mkdir(parents=True)
    write(xdg, GOOD.replace("name: lab", "name: home"))
    assert load_config().name == "home"
    write(tmp_path, GOOD.replace("name: lab", "name: cwd"))
    assert load_config().name == "cwd"
    env_file = write(tmp_path, GOOD.replace("name: lab", "name: env"), name="env.yaml")
    monkeypatch.setenv("PVECTL_CONFIG", str(env_file))
    assert load_config().name == "env"
    explicit = write(tmp_path, GOOD.replace("name: lab", "name: explicit"), name="x.yaml")
    assert load_config(explicit).name == "explicit"
    assert find_config(explicit) == str(explicit)


def test_multi_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
    default_cluster: prod
    clusters:
      lab:
        cluster: {nodes: [{name: a, host: 10.0.0.1}]}
        vmid_ranges: {vms: 100-199}
      prod:
        cluster: {name: production, nodes: [{name: b, host: 10.1.0.1}]}
    """
    p = write(tmp_path, text)
    assert load_config(p).name == "production"
    lab = load_config(p, cluster="lab")
    assert lab.name == "lab" and lab.node_names == ("a",) and lab.clusters == ("lab", "prod")
    monkeypatch.setenv("PVECTL_CLUSTER", "lab")
    assert load_config(p).name == "lab"
    with pytest.raises(ConfigError) as ei:
        load_config(p, cluster="prd")
    assert str(ei.value) == f"{p}:2: clusters: no cluster 'prd' (did you mean 'prod'?); defined: lab, prod"


def test_single_cluster_rejects_other_cluster_name(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD)
    assert load_config(p, cluster="lab").name == "lab"
    with pytest.raises(ConfigError, match="the file defines cluster 'lab', not 'prod'"):
        load_config(p, cluster="prod")


def test_loads_config() -> None:
    c = loads_config(GOOD, file="inline.yaml")
    assert isinstance(c, Config) and c.path is None and c.name == "lab"
    with pytest.raises(ConfigError, match=r"^inline.yaml:1: cluster: missing required section"):
        loads_config("tags: {templates: t}\n", file="inline.yaml")


def test_cache_is_used_and_invalidated(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD)
    c1 = load_config(p)
    caches = list((tmp_path / "cache" / "pvectl").glob("config-*.json"))
    assert len(caches) == 1
    assert "pass_path" in caches[0].read_text()
    assert load_config(p) == c1
    # Changing the file (new mtime/size) invalidates the cache.
    write(tmp_path, GOOD.replace("name: lab", "name: lab2"), age=30)
    assert load_config(p).name == "lab2"


def test_recently_modified_file_is_not_cached(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD, age=0)
    load_config(p)
    assert not (tmp_path / "cache" / "pvectl").exists()


def test_cache_rechecks_ca_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    p = write(tmp_path, GOOD + "tls: {ca_file: ca.pem}\n")
    load_config(p)
    (tmp_path / "ca.pem").unlink()
    with pytest.raises(ConfigError, match=r":15: tls.ca_file: CA file not found: "):
        load_config(p)


def test_warm_load_does_not_import_yaml(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD)
    code = ("import sys; from pvectl.config import load_config; c = load_config(sys.argv[1]); "
            "print(c.name, 'yaml' in sys.modules, 'dataclasses' in sys.modules)")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    cold = subprocess.run([sys.executable, "-c", code, str(p)], env=env, capture_output=True, text=True, check=True)
    warm = subprocess.run([sys.executable, "-c", code, str(p)], env=env, capture_output=True, text=True, check=True)
    assert cold.stdout.split() == ["lab", "True", "False"]
    assert warm.stdout.split() == ["lab", "False", "False"]


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD)
    load_config(p)
    caches = list((tmp_path / "cache" / "pvectl").glob("config-*.json"))
    assert len(caches) == 1, "the first load must have written a cache entry to corrupt"
    caches[0].write_text("{not json")
    assert caches[0].read_text() == "{not json"
    assert load_config(p).name == "lab"
    assert json.loads(caches[0].read_text())["doc"]["blocks"]["lab"]["config"]["name"] == "lab"  # rebuilt
