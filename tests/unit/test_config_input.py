"""Hostile and wrongly shaped config input: every problem is a ConfigError naming file, line and key;
nothing else may escape the loader (no TypeError, KeyError, RecursionError ...), and a config cache of
the wrong shape is rebuilt from the YAML."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvectl.config import MAX_CONFIG_BYTES, load_config, loads_config

from pvectl.errors import ConfigError

GOOD = """\
cluster:
  name: lab
  nodes:
    - {name: pve1, host: 127.0.0.1, port: 8006}
    - {name: pve2, host: pve2.lab.example.com}
credentials: {token_file: token, ssh_user: root}
defaults: {storage: local-lvm}
vmid_ranges: {vms: 100-899, templates: 9000-9999}
"""


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PVECTL_CONFIG", raising=False)
    monkeypatch.delenv("PVECTL_CLUSTER", raising=False)


def old_file(path: Path, text: str | bytes) -> Path:
    """Write `path` with an mtime a minute ago (files changed in the last 2 s are not cached)."""
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    t = time.time() - 60
    os.utime(path, (t, t))
    return path


def config_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        loads_config(text, file="c.yaml")
    msg = ei.value.message
    assert msg.startswith("c.yaml:") and "\n" not in msg, msg
    return ei.value


# (yaml, line, key, expected text): lists where mappings belong, numbers where strings, nulls, odd tags
SHAPES = [
    ("clusters: [a]\n", 1, "clusters", "expected a mapping of cluster name -> {cluster: ...}, got a list"),
    ("clusters: a\n", 1, "clusters", "expected a mapping of cluster name -> {cluster: ...}, got a string ('a')"),
    ("clusters:\n", 1, "clusters", "expected a mapping of cluster name -> {cluster: ...}, got nothing (null)"),
    ("clusters: {}\n", 1, "clusters", "expected at least one cluster"),
    ("clusters: {a: [x]}\n", 1, "clusters.a", "expected a mapping, got a list"),
    ("clusters: {a: null}\n", 1, "clusters.a", "expected a mapping, got nothing (null)"),
    ("clusters: {1: {cluster: {nodes: [{name: a, host: h}]}}}\n", 1, "clusters", "keys must be strings"),
    ("clusters: {a: {cluster: {nodes: [{name: a, host: h}]}}}\ndefault_cluster: [a]\n", 2, "default_cluster",
     "expected a string, got a list"),
    ("cluster: [a]\n", 1, "cluster", "expected a mapping, got a list"),
    ("cluster:\n", 1, "cluster", "expected a mapping, got nothing (null)"),
    ("cluster: {name: lab, nodes: [a]}\n", 1, "cluster.nodes[0]", "expected a mapping, got a string ('a')"),
    ("cluster: {name: lab, nodes: [[]]}\n", 1, "cluster.nodes[0]", "expected a mapping, got a list"),
    ("cluster: {name: lab, nodes: [null]}\n", 1, "cluster.nodes[0]", "expected a mapping, got nothing (null)"),
    ("cluster: {name: lab, nodes: [{name: 5, host: h}]}\n", 1, "cluster.nodes[0].name",
     "expected a string, got an integer ('5')"),
    ("cluster: {name: lab, nodes: [{name: a, host: 10}]}\n", 1, "cluster.nodes[0].host",
     "expected a string, got an integer ('10')"),
    ("cluster: {name: lab, nodes: [{name: a, host: h, port: !!int abc}]}\n", 1, "cluster.nodes[0].port",
     "expected an integer from 1 to 65535"),
    ("cluster: {name: lab, nodes: [{name: a, host: h, port: null}]}\n", 1, "cluster.nodes[0].port",
     "expected an integer from 1 to 65535, got nothing (null)"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ntls: {insecure: !!bool maybe}\n", 2, "tls.insecure",
     "expected true or false"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ntls: {insecure: null}\n", 2, "tls.insecure",
     "expected true or false, got nothing (null)"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ntls: {fingerprints: [a]}\n", 2, "tls.fingerprints",
     "expected a mapping, got a list"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ncredentials: [a]\n", 2, "credentials",
     "expected a mapping, got a list"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ncredentials: {token_file: [a]}\n", 2,
     "credentials.token_file", "expected a string, got a list"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\nvmid_ranges: [100-899]\n", 2, "vmid_ranges",
     "expected a mapping, got a list"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\nvmid_ranges: {vms: [100, 899]}\n", 2, "vmid_ranges.vms",
     "expected a range FIRST-LAST like '100-899', got a list"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\nvmid_ranges: {vms: 100-99999999999999999999}\n", 2,
     "vmid_ranges.vms", "outside the valid VMIDs"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ntags: {templates: !!binary aGVsbG8=}\n", 2,
     "tags.templates", "expected a string, got a binary"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ndefaults: {storage: !custom x}\n", 2,
     "defaults.storage", "expected a string"),
    ("cluster: {name: lab, nodes: [{name: a, host: h}]}\ncloudinit: {default_user: 2024-01-01}\n", 2,
     "cloudinit.default_user", "expected a string, got a date ('2024-01-01')"),
    ("{? [a, b] : c}\n", 1, "(top level)", "keys must be strings, got a list"),
    ("cluster: &c {name: lab, nodes: [{name: a, host: h}]}\ndefaults: *c\n", 1, "defaults.name",
     "unknown key"),
]


@pytest.mark.parametrize("text,line,key,expected", SHAPES, ids=[f"{i}-{s[2]}" for i, s in enumerate(SHAPES)])
def test_wrong_shapes_are_config_errors(text: str, line: int, key: str, expected: str) -> None:
    e = config_error(text)
    assert (e.line, e.key) == (line, key), e.message
    assert e.message.startswith(f"c.yaml:{line}: {key}: "), e.message
    assert expected in e.message, e.message


def test_clusters_list_on_the_command_line_is_one_line_exit_2(tmp_path: Path, capsys: Any) -> None:
    from pvectl.cli.main import main

    cfg = old_file(tmp_path / "cluster-config.yaml", "clusters: [a]\n")
    assert main(["--config", str(cfg), "-o", "table", "vm", "list"]) == 2
    err = capsys.readouterr().err
    assert err == (f"pvectl: error: {cfg}:1: clusters: expected a mapping of cluster name -> {{cluster: ...}}, "
                   "got a list\n")


def test_a_long_wrong_value_is_shortened_in_the_message() -> None:
    e = config_error("cluster: {name: lab, nodes: [{name: a, host: h, port: '" + "x" * 10_000 + "'}]}\n")
    assert len(e.message) < 300 and "..." in e.message


def test_deep_nesting_is_a_config_error() -> None:
    # flow sequences nested far beyond any real config: PyYAML's composer recurses per level
    e = config_error("cluster: " + "[" * 5000 + "]" * 5000 + "\n")
    assert e.key is None or e.key.startswith("cluster")


def test_alias_bomb_is_refused_cheaply() -> None:
    # "billion laughs": each level refers to the previous one ten times; nothing may expand it
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    t = time.perf_counter()
    e = config_error("\n".join(lines) + "\n")
    assert e.key == "a0" and time.perf_counter() - t < 5


# ------------------------------------------------------------------------------------------------
# Hosts: a port belongs in `port:`; IPv6 literals are hosts


@pytest.mark.parametrize("host,port", [("127.0.0.1:43031", "43031"), ("pve1.example.com:8006", "8006"),
                                       ("'[::1]:8006'", "8006"), ("'[fe80::1]:443'", "443")])
def test_a_port_in_the_host_is_refused_with_a_pointer_to_port(host: str, port: str) -> None:
    e = config_error(f"cluster: {{name: lab, nodes: [{{name: a, host: {host}}}]}}\n")
    assert e.key == "cluster.nodes[0].host"
    assert f"put the port in 'port: {port}'" in e.message, e.message


@pytest.mark.parametrize("host,expected", [("'[::1]'", "::1"), ("'::1'", "::1"), ("'fe80::1'", "fe80::1"),
                                           ("'[2001:db8::10]'", "2001:db8::10"), ("127.0.0.1", "127.0.0.1"),
                                           ("pve1.lab.example.com", "pve1.lab.example.com"), ("pve1", "pve1")])
def test_ipv6_literals_and_names_are_hosts(host: str, expected: str) -> None:
    c = loads_config(f"cluster: {{name: lab, nodes: [{{name: a, host: {host}, port: 8443}}]}}\n")
    n = c.nodes[0]
    assert n.host == expected
    bracketed = f"[{expected}]" if ":" in expected else expected
    assert n.base_url == f"https://{bracketed}:8443/api2/json"


@pytest.mark.parametrize("host", ["'a b'", "'h\u00e9te'", "'-bad'", "'bad-.x'", "'x..y'", "'::1::2'", "'[pve1]'",
                                  "'127.0.0.1]'", "'" + "a" * 64 + ".example.com'"])
def test_malformed_hosts_are_refused(host: str) -> None:
    e = config_error(f"cluster: {{name: lab, nodes: [{{name: a, host: {host}}}]}}\n")
    assert e.key == "cluster.nodes[0].host" and "expected a host name or IP address" in e.message, e.message


# ------------------------------------------------------------------------------------------------
# Size cap


def test_a_huge_config_is_refused_before_it_is_read(tmp_path: Path) -> None:
    p = tmp_path / "cluster-config.yaml"
    with open(p, "wb") as fh:           # sparse: 100 MB on paper, nothing on disk
        fh.truncate(100 * 1024 * 1024)
    t = time.perf_counter()
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert time.perf_counter() - t < 2
    assert ei.value.message == (f"{p}: the config file is 100.0 MiB; a cluster-config.yaml may be at most "
                                f"{MAX_CONFIG_BYTES // 1024} KiB")


def test_size_cap_applies_to_text_too() -> None:
    with pytest.raises(ConfigError, match=r"^c.yaml: the config file is 1.0 MiB; "):
        loads_config(b"#" * (MAX_CONFIG_BYTES + 1), file="c.yaml")
    # just under the cap is parsed as usual
    assert loads_config("#" * (MAX_CONFIG_BYTES - len(GOOD) - 2) + "\n" + GOOD).name == "lab"


# ------------------------------------------------------------------------------------------------
# The config cache: validated, rebuilt when wrongly shaped


def _cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "pvectl").glob("config-*.json"))


def _rewrite_cache(tmp_path: Path, edit: Any) -> None:
    [f] = _cache_files(tmp_path)
    obj = json.loads(f.read_text())
    obj = edit(obj)
    f.write_text(json.dumps(obj))
    assert json.loads(f.read_text()) == obj


CACHE_EDITS = {
    "doc-empty": lambda o: {**o, "doc": {}},
    "doc-list": lambda o: {**o, "doc": []},
    "blocks-empty": lambda o: {**o, "doc": {**o["doc"], "blocks": {}}},
    "node-without-host": lambda o: _edit_config(o, lambda c: c["nodes"][0].pop("host")),
    "port-a-string": lambda o: _edit_config(o, lambda c: c["nodes"][0].update(port="8006")),
    "unknown-field": lambda o: _edit_config(o, lambda c: c["credentials"].update(password="x")),
    "range-wrong": lambda o: _edit_config(o, lambda c: c["vmid_ranges"].update(vms=[100, 899])),
    "tls-null": lambda o: _edit_config(o, lambda c: c.update(tls=None)),
    "multi-string": lambda o: {**o, "doc": {**o["doc"], "multi": "no"}},
    "fingerprints-list": lambda o: _edit_config(o, lambda c: c["tls"].update(fingerprints=["x"])),
}


def _edit_config(obj: dict[str, Any], change: Any) -> dict[str, Any]:
    [block] = obj["doc"]["blocks"].values()
    change(block["config"])
    return obj


@pytest.mark.parametrize("edit", list(CACHE_EDITS), ids=list(CACHE_EDITS))
def test_a_wrongly_shaped_cache_is_rebuilt_from_the_yaml(tmp_path: Path, edit: str) -> None:
    p = old_file(tmp_path / "cluster-config.yaml", GOOD)
    first = load_config(p)
    _rewrite_cache(tmp_path, CACHE_EDITS[edit])
    assert load_config(p) == first
    # ... and the cache was written again, in the right shape
    [f] = _cache_files(tmp_path)
    [block] = json.loads(f.read_text())["doc"]["blocks"].values()
    assert block["config"]["nodes"][0] == {"name": "pve1", "host": "127.0.0.1", "port": 8006, "ssh_host": None,
                                         "ssh_port": None}


def test_the_cache_is_still_used_when_it_is_well_formed(tmp_path: Path) -> None:
    # a cache entry of the right shape wins over the YAML (that is what makes it a cache)
    p = old_file(tmp_path / "cluster-config.yaml", GOOD)
    load_config(p)
    _rewrite_cache(tmp_path, lambda o: _edit_config(o, lambda c: c.update(name="from-cache")))
    assert load_config(p).name == "from-cache"


# ------------------------------------------------------------------------------------------------
# Generated input: anything other than ConfigError is a bug

KEYS = ["cluster", "clusters", "default_cluster", "name", "nodes", "host", "port", "credentials", "pass_path",
        "token_id", "token_file", "ssh_user", "tls", "ca_file", "fingerprints", "insecure", "defaults", "storage",
        "network_bridge", "tags", "templates", "vmid_ranges", "vms", "cloudinit", "default_user", "ssh_keys_file",
        "lab", "a", "pve1", "<<"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.sampled_from(["100-899", "127.0.0.1", "::1", "[::1]", "h:1", "root@pam!t", "a", "", " ",
                                     "~", "~/x", "9000-9999", "pve1", "AB" * 32, ":".join(["AB"] * 32)]),
                    st.text(max_size=12))
TREES = st.recursive(SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                     st.dictionaries(st.sampled_from(KEYS), kids, max_size=5)),
                     max_leaves=25)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(tree=TREES)
def test_any_yaml_tree_is_loaded_or_a_config_error(tree: Any) -> None:
    _load_or_config_error(json.dumps(tree, allow_nan=True))


@FUZZ
@given(section=st.sampled_from(["cluster", "credentials", "tls", "defaults", "tags", "vmid_ranges", "cloudinit"]),
       tree=TREES)
def test_any_section_value_is_loaded_or_a_config_error(section: str, tree: Any) -> None:
    import yaml

    doc = yaml.safe_load(GOOD)
    doc[section] = tree
    _load_or_config_error(json.dumps(doc, allow_nan=True))


@FUZZ
@given(node=TREES, multi=st.booleans())
def test_any_node_entry_is_loaded_or_a_config_error(node: Any, multi: bool) -> None:
    import yaml

    doc = yaml.safe_load(GOOD)
    doc["cluster"]["nodes"].append(node)
    if multi:
        doc = {"clusters": {"lab": doc, "x": node}, "default_cluster": "lab"}
    _load_or_config_error(json.dumps(doc, allow_nan=True))


@FUZZ
@given(tag=st.sampled_from(["!!int", "!!float", "!!bool", "!!null", "!!str", "!!binary", "!!timestamp", "!!set",
                            "!!omap", "!!python/object:os.system", "!x", "!!map", "!!seq"]),
       value=st.sampled_from(["abc", "1", "", "maybe", "2024-13-45", "{}", "[]", "=", "0x", "1e999"]),
       where=st.sampled_from(["port", "host", "name", "insecure", "vms", "token_id", "storage"]))
def test_explicit_tags_are_loaded_or_a_config_error(tag: str, value: str, where: str) -> None:
    text = textwrap.dedent(f"""\
        cluster:
          name: lab
          nodes: [{{name: a, host: h, port: 8006}}]
        tls: {{insecure: false}}
        credentials: {{token_id: root@pam!t}}
        vmid_ranges: {{vms: 100-899}}
        defaults: {{storage: s}}
        """)
    target = {"port": "port: 8006", "host": "host: h", "name": "name: lab", "insecure": "insecure: false",
              "vms": "vms: 100-899", "token_id": "token_id: root@pam!t", "storage": "storage: s"}[where]
    key = target.split(":")[0]
    _load_or_config_error(text.replace(target, f"{key}: {tag} {value}"))


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_are_loaded_or_a_config_error(data: bytes) -> None:
    _load_or_config_error(data)


def _load_or_config_error(text: str | bytes) -> None:
    try:
        cfg = loads_config(text, file="f.yaml")
    except ConfigError as e:
        assert e.message.startswith("f.yaml:") and "\n" not in e.message, e.message
        return
    assert cfg.nodes and all(isinstance(n.host, str) and isinstance(n.port, int) for n in cfg.nodes)


def test_the_cap_holds_for_a_file_whose_size_is_not_known_in_advance() -> None:
    # a character device reports size 0 and never ends: at most the cap (+1 byte) is read
    with pytest.raises(ConfigError, match=r"^/dev/zero: the config file is 1.0 MiB; "):
        load_config("/dev/zero", cache=False)


def test_a_warm_load_imports_neither_the_validator_nor_yaml(tmp_path: Path) -> None:
    import subprocess
    import sys

    p = old_file(tmp_path / "cluster-config.yaml", GOOD)
    code = ("import sys; from pvectl.config import load_config; load_config(sys.argv[1]); "
            "import pvectl.units, pvectl.upid, pvectl.vms; "
            "print(*[m in sys.modules for m in ('pvectl.configcheck', 'yaml', 'ipaddress', 'typing')])")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    cold = subprocess.run([sys.executable, "-c", code, str(p)], env=env, capture_output=True, text=True, check=True)
    warm = subprocess.run([sys.executable, "-c", code, str(p)], env=env, capture_output=True, text=True, check=True)
    assert cold.stdout.split()[:2] == ["True", "True"]
    assert warm.stdout.split() == ["False"] * 4, warm.stdout
