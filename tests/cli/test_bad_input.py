"""Bad configs and bad arguments: each is exactly one line on stderr, exit 2, and no traceback.

Config errors name the file, the line and the dotted key; argument errors are argparse's, reworded
into one line. In JSON mode a config error is one `{"error": ...}` object on stdout instead.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from cliharness import Run

VALID = """\
cluster:
  name: lab
  nodes:
    - {name: pve1, host: 127.0.0.1, port: 1}
    - {name: pve2, host: 127.0.0.1, port: 2}
credentials: {token_file: token}
vmid_ranges: {vms: 100-899, templates: 9000-9999}
"""

# (id, config text, expected text in the single stderr line). The config is written to
# <tmp>/cluster-config.yaml and used with `--config`; the line must start "pvectl: error: <file>:".
BAD_CONFIGS: list[tuple[str, str, str]] = [
    ("unknown-key-did-you-mean", VALID.replace("  nodes:", "  nodse:"),
     ":3: cluster.nodse: unknown key (did you mean 'nodes'?)"),
    ("unknown-top-level-key", VALID + "tsl: {ca_file: ca.pem}\n", ":8: tsl: unknown key (did you mean 'tls'?)"),
    ("unknown-key-no-suggestion", VALID + "defaults: {colour: blue}\n",
     ":8: defaults.colour: unknown key (expected one of: storage, network_bridge)"),
    ("port-not-an-integer", VALID.replace("port: 1}", "port: abc}"),
     ":4: cluster.nodes[0].port: expected an integer from 1 to 65535, got a string ('abc')"),
    ("port-too-big", VALID.replace("port: 1}", "port: 70000}"),
     ":4: cluster.nodes[0].port: expected an integer from 1 to 65535, got 70000"),
    ("port-zero", VALID.replace("port: 2}", "port: 0}"),
     ":5: cluster.nodes[1].port: expected an integer from 1 to 65535, got 0"),
    ("nodes-not-a-list", "cluster: {name: lab, nodes: pve1}\n",
     ":1: cluster.nodes: expected a list of {name, host}, got a string ('pve1')"),
    ("no-nodes", "cluster: {name: lab, nodes: []}\n",
     ":1: cluster.nodes: no nodes: expected at least one {name, host}"),
    ("no-cluster-section", "credentials: {token_file: token}\n",
     ":1: cluster: missing required section (expected name: and nodes:)"),
    ("node-without-host", "cluster: {name: lab, nodes: [{name: pve1}]}\n",
     ":1: cluster.nodes[0].host: missing required key (expected a string)"),
    ("duplicate-node-names", VALID.replace("name: pve2", "name: pve1"),
     ":5: cluster.nodes[1].name: duplicate node name 'pve1' (first at line 4)"),
    ("invalid-node-name", VALID.replace("name: pve2", "name: pve_2"),
     ":5: cluster.nodes[1].name: not a valid node name: 'pve_2' (letters, digits, '-')"),
    ("host-with-scheme", VALID.replace("host: 127.0.0.1, port: 2", "host: 'https://127.0.0.1:8006'"),
     ":5: cluster.nodes[1].host: expected a host name or IP address (no scheme, path or port), "
     "got 'https://127.0.0.1:8006'"),
    ("overlapping-vmid-ranges", VALID.replace("vms: 100-899", "vms: 100-9500"),
     ":7: vmid_ranges.templates: 9000-9999 overlaps vmid_ranges.vms 100-9500"),
    ("empty-vmid-range", VALID.replace("vms: 100-899", "vms: 899-100"),
     ":7: vmid_ranges.vms: range 899-100 is empty: FIRST must not exceed LAST"),
    ("vmid-range-below-100", VALID.replace("vms: 100-899", "vms: 1-99"),
     ":7: vmid_ranges.vms: range 1-99 is outside the valid VMIDs 100-999999999"),
    ("vmid-range-not-a-range", VALID.replace("templates: 9000-9999", "templates: lots"),
     ":7: vmid_ranges.templates: expected a range FIRST-LAST like '100-899', got a string ('lots')"),
    ("yaml-syntax-error", "cluster: [\n", ":2: YAML syntax error: did not find expected node content"),
    ("yaml-bad-indentation", "cluster:\n  name: lab\n    nodes: []\n", ": YAML syntax error: "),
    ("empty-file", "", ":1: the file is empty; expected a mapping with a 'cluster:' section"),
    ("top-level-list", "- cluster\n", ":1: (top level): expected a mapping with a 'cluster:' section, got a list"),
    ("duplicate-key", VALID + "credentials: {ssh_user: root}\n", ":8: credentials: duplicate key (first at line 6)"),
    ("bad-fingerprint", VALID + "tls: {fingerprints: {pve1: 'AB:CD', pve2: 'AB:CD'}}\n",
     ":8: tls.fingerprints.pve1: expected a SHA-256 fingerprint (32 hex byte pairs 'AB:CD:\u2026'), got 'AB:CD'"),
    ("fingerprint-for-unknown-node", VALID + "tls: {fingerprints: {pvee1: '" + "AB" * 32 + "'}}\n",
     ":8: tls.fingerprints.pvee1: unknown key (did you mean 'pve1'?)"),
    ("fingerprint-missing-for-a-node", VALID + "tls: {fingerprints: {pve1: '" + "AB" * 32 + "'}}\n",
     ":8: tls.fingerprints: no fingerprint for node pve2 (pin every node, or add tls.ca_file)"),
    ("insecure-not-a-boolean", VALID + "tls: {insecure: 'yes'}\n",
     ":8: tls.insecure: expected true or false, got a string ('yes')"),
    ("insecure-and-ca-file", VALID + "tls: {insecure: true, ca_file: /etc/hosts}\n",
     ":8: tls.insecure: true cannot be combined with ca_file or fingerprints"),
    ("ca-file-missing", VALID + "tls: {ca_file: no-such-ca.pem}\n", ":8: tls.ca_file: CA file not found: "),
    ("bad-token-id", VALID.replace("{token_file: token}", "{token_file: token, token_id: root}"),
     ":6: credentials.token_id: expected an API token id USER@REALM!TOKENNAME (e.g. root@pam!pvectl), got 'root'"),
    ("name-wrong-type", VALID.replace("name: lab", "name: [lab]"), ":2: cluster.name: expected a string, got a list"),
    ("several-clusters-none-chosen",
     "clusters:\n  a: {cluster: {nodes: [{name: n1, host: 127.0.0.1}]}}\n"
     "  b: {cluster: {nodes: [{name: n1, host: 127.0.0.1}]}}\n",
     ":1: clusters: several clusters defined (a, b); choose one with --cluster NAME, $PVECTL_CLUSTER or "
     "default_cluster:"),
    ("clusters-mixed-with-cluster", "cluster: {name: x, nodes: [{name: n, host: 127.0.0.1}]}\nclusters: {}\n",
     ":1: cluster: cannot be combined with 'clusters:'; move it into each clusters entry"),
]


def one_error_line(r: Run, code: int = 2) -> str:
    assert r.code == code, (r.code, r.out, r.err)
    assert "Traceback" not in r.err and "internal error" not in r.err, r.err
    assert len(r.err_lines) == 1, r.err
    assert r.out == ""
    return r.err_lines[0]


@pytest.mark.parametrize("case,text,expected", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config(cli: Callable[..., Run], tmp_path: Path, case: str, text: str, expected: str) -> None:
    cfg = tmp_path / "cluster-config.yaml"
    cfg.write_text(text, encoding="utf-8")
    (tmp_path / "token").write_text("root@pam!t\nsecret-secret\n")
    line = one_error_line(cli("--config", str(cfg), "-o", "table", "vm", "list"))
    assert line.startswith(f"pvectl: error: {cfg}:"), line
    assert expected in line, line
    # JSON mode: the same message as one object on stdout, nothing on stderr
    r = cli("--config", str(cfg), "-o", "json", "cluster", "status")
    assert r.code == 2 and r.err == ""
    [obj] = [json.loads(ln) for ln in r.out.splitlines()]
    assert obj["error"]["type"] == "ConfigError" and expected in obj["error"]["message"]


def test_bad_config_files(cli: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.yaml"
    line = one_error_line(cli("--config", str(missing), "-o", "table", "vm", "list"))
    assert line == f"pvectl: error: {missing}: config file not found (hint: check the --config path)"

    # unreadable: a directory where the file should be (the tests may run as root, so mode 000 would not do)
    d = tmp_path / "dir.yaml"
    d.mkdir()
    line = one_error_line(cli("--config", str(d), "-o", "table", "vm", "list"))
    assert line == f"pvectl: error: {d}: cannot read config file: Is a directory"

    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"cluster: \xff\xfe\x00garbage\n")
    line = one_error_line(cli("--config", str(binary), "-o", "table", "vm", "list"))
    assert line.startswith(f"pvectl: error: {binary}:1: ")

    # no config anywhere (cwd and XDG_CONFIG_HOME are empty temporary directories)
    line = one_error_line(cli("-o", "table", "vm", "list"))
    assert line.startswith("pvectl: error: no cluster-config.yaml found (tried ./cluster-config.yaml, ")
    assert line.endswith("(hint: pass --config FILE or set $PVECTL_CONFIG (pvectl sim serve writes one))")

    monkeypatch.setenv("PVECTL_CONFIG", str(missing))
    line = one_error_line(cli("-o", "table", "vm", "list"))
    assert line == (f"pvectl: error: {missing}: config file not found ($PVECTL_CONFIG) "
                    "(hint: fix or unset $PVECTL_CONFIG)")


# (id, argv after `--config <valid config> -o table`, expected text in the single stderr line)
BAD_ARGS: list[tuple[str, list[str], str]] = [
    ("output-xml", ["-o", "xml", "vm", "list"],
     "pvectl: error: argument -o/--output: invalid choice: 'xml' (choose from 'table', 'json', 'yaml')"),
    ("output-xml-after-command", ["vm", "list", "-o", "xml"],
     "pvectl vm list: error: argument -o/--output: invalid choice: 'xml'"),
    ("missing-vm-argument", ["vm", "status"], "pvectl vm status: error: the following arguments are required: VM"),
    ("unknown-command", ["frobnicate"], "pvectl: error: argument COMMAND: invalid choice: 'frobnicate'"),
    ("unknown-subcommand", ["vm", "explode"], "pvectl vm: error: argument CMD: invalid choice: 'explode'"),
    ("group-without-command", ["vm"], "pvectl vm: error: missing command (choose from list, status"),
    ("timeout-not-a-number", ["--timeout", "abc", "vm", "list"],
     "pvectl: error: argument --timeout: expected a positive number of seconds, got 'abc'"),
    ("timeout-negative", ["--timeout=-5", "vm", "list"],
     "pvectl: error: argument --timeout: expected a positive number of seconds, got '-5'"),
    ("timeout-nan", ["vm", "list", "--timeout", "nan"],
     "pvectl vm list: error: argument --timeout: expected a positive number of seconds, got 'nan'"),
    ("timeout-zero", ["--timeout", "0", "vm", "list"],
     "pvectl: error: argument --timeout: expected a positive number of seconds, got '0'"),
    ("unknown-status", ["vm", "list", "--status", "bogus"],
     "pvectl vm list: error: argument --status: invalid choice: 'bogus'"),
    ("templates-and-no-templates", ["vm", "list", "--templates", "--no-templates"],
     "pvectl vm list: error: argument --no-templates: not allowed with argument --templates"),
    ("template-rule", ["template", "list", "--by", "colour"],
     "pvectl template list: error: argument --by: invalid choice: 'colour'"),
    ("unknown-option", ["vm", "list", "--bogus-flag"], "pvectl: error: unrecognized arguments: --bogus-flag"),
    ("extra-argument", ["node", "status", "pve1", "pve2"], "pvectl: error: unrecognized arguments: pve2"),
    ("negative-limit", ["task", "list", "--limit", "-5"],
     "pvectl task list: error: argument --limit: expected a whole number (0, 1, 2 ...), got '-5'"),
    ("foreign-digit-limit", ["audit", "--limit", "\u0661\u0660"],
     "pvectl audit: error: argument --limit: expected a whole number (0, 1, 2 ...), got '\u0661\u0660'"),
    ("log-limit-with-blank", ["task", "log", "UPID:x", "--limit", " 3"],
     "pvectl task log: error: argument --limit: expected a whole number (0, 1, 2 ...), got ' 3'"),
    ("cores-zero", ["vm", "resize", "100", "--cores", "0"],
     "pvectl vm resize: error: argument --cores: expected a whole number from 1, got '0'"),
    ("shutdown-timeout-negative", ["vm", "shutdown", "100", "--shutdown-timeout=-1"],
     "pvectl vm shutdown: error: argument --shutdown-timeout: expected a whole number (0, 1, 2 ...), got '-1'"),
    ("unknown-cluster-name", ["--cluster", "prod", "vm", "list"],
     ": cluster.name: the file defines cluster 'lab', not 'prod'"),
]


@pytest.mark.parametrize("case,argv,expected", BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments(cli: Callable[..., Run], tmp_path: Path, case: str, argv: list[str], expected: str) -> None:
    cfg = tmp_path / "cluster-config.yaml"
    cfg.write_text(VALID, encoding="utf-8")
    line = one_error_line(cli("--config", str(cfg), "-o", "table", *argv))
    assert expected in line, line


def test_bad_arguments_as_a_subprocess(run_pvectl: Callable[..., Run]) -> None:
    line = one_error_line(run_pvectl("-o", "xml", "vm", "list"))
    assert line == ("pvectl: error: argument -o/--output: invalid choice: 'xml' (choose from 'table', 'json', "
                    "'yaml') (see pvectl --help)")
    line = one_error_line(run_pvectl("vm", "status"))
    assert line == "pvectl vm status: error: the following arguments are required: VM (see pvectl vm status --help)"


def test_several_clusters_bad_choice(cli: Callable[..., Run], tmp_path: Path) -> None:
    cfg = tmp_path / "clusters.yaml"
    cfg.write_text(textwrap.dedent("""\
        clusters:
          lab: {cluster: {nodes: [{name: n1, host: 127.0.0.1, port: 1}]}}
          prod: {cluster: {nodes: [{name: n1, host: 127.0.0.1, port: 1}]}}
        default_cluster: lab
        """))
    line = one_error_line(cli("--config", str(cfg), "--cluster", "prd", "-o", "table", "vm", "list"))
    assert line == f"pvectl: error: {cfg}:1: clusters: no cluster 'prd' (did you mean 'prod'?); defined: lab, prod"
    bad_default = tmp_path / "bad-default.yaml"
    bad_default.write_text(cfg.read_text().replace("default_cluster: lab", "default_cluster: stage"))
    line = one_error_line(cli("--config", str(bad_default), "-o", "table", "vm", "list"))
    assert line == f"pvectl: error: {bad_default}:4: default_cluster: no cluster 'stage'; defined: lab, prod"


# ------------------------------------------------------------------------------------------------
# Against the simulator: arguments that are only wrong for this cluster


def test_unknown_node(cli: Callable[..., Run], sim: Any) -> None:
    cfg = str(sim.config_path)
    line = one_error_line(cli("--config", cfg, "-o", "table", "node", "status", "pve9"))
    assert line == "pvectl: error: no node 'pve9' in the cluster (nodes: pve1, pve2, pve3)"
    line = one_error_line(cli("--config", cfg, "-o", "table", "vm", "list", "--node", "pve9"))
    assert line == "pvectl: error: no node 'pve9' in the cluster (nodes: pve1, pve2, pve3)"
    # a real node with no matching VM is an empty list, not an error
    r = cli("--config", cfg, "-o", "json", "vm", "list", "--node", "pve3", "--templates")
    assert (r.code, r.json) == (0, [])


def test_missing_token_file(cli: Callable[..., Run], sim: Any, variant_config: Callable[..., Path],
                            tmp_path: Path) -> None:
    gone = tmp_path / "no-such-token"
    cfg = variant_config(sim.config_path, "no-token.yaml", lambda d: d["credentials"].update(token_file=str(gone)))
    line = one_error_line(cli("--config", str(cfg), "-o", "table", "vm", "list"))
    assert line == (f"pvectl: error: cannot read credentials.token_file {gone}: No such file or directory "
                    "(hint: fix credentials.token_file (line 1 token id, last line secret))")


# ------------------------------------------------------------------------------------------------
# Generated input


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(text=st.text(max_size=200))
def test_garbage_yaml_text_is_one_line_exit_2(cli: Callable[..., Run], tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "garbage.yaml"
    cfg.write_text(text, encoding="utf-8")
    line = one_error_line(cli("--config", str(cfg), "-o", "table", "vm", "list"))
    assert line.startswith(f"pvectl: error: {cfg}:")


@FUZZ
@given(data=st.binary(max_size=200))
def test_garbage_bytes_are_one_line_exit_2(cli: Callable[..., Run], tmp_path: Path, data: bytes) -> None:
    cfg = tmp_path / "garbage.yaml"
    cfg.write_bytes(data)
    line = one_error_line(cli("--config", str(cfg), "-o", "table", "cluster", "status"))
    assert line.startswith(f"pvectl: error: {cfg}:")


VMID_MIN, VMID_MAX = 100, 999_999_999
vmid = st.integers(min_value=0, max_value=2 * VMID_MAX)


@st.composite
def bad_ranges(draw: st.DrawFn) -> tuple[str, str, str]:
    """(vms, templates, key expected in the message): at least one range is invalid by construction."""
    kind = draw(st.sampled_from(["reversed", "low", "high", "overlap", "text"]))
    good_t = "9000-9999"
    if kind == "reversed":
        lo = draw(st.integers(VMID_MIN + 1, 8999))
        hi = draw(st.integers(VMID_MIN, lo - 1))
        return f"{lo}-{hi}", good_t, "vmid_ranges.vms"
    if kind == "low":
        lo = draw(st.integers(0, VMID_MIN - 1))
        hi = draw(st.integers(lo, 8999))
        return f"{lo}-{hi}", good_t, "vmid_ranges.vms"
    if kind == "high":
        lo = draw(st.integers(10_000, VMID_MAX))
        hi = draw(st.integers(VMID_MAX + 1, 2 * VMID_MAX))
        return "100-899", f"{lo}-{hi}", "vmid_ranges.templates"
    if kind == "overlap":
        a_lo = draw(st.integers(VMID_MIN, 100_000))
        a_hi = draw(st.integers(a_lo, 200_000))
        b_lo = draw(st.integers(VMID_MIN, a_hi))
        b_hi = draw(st.integers(max(b_lo, a_lo), 300_000))
        return f"{a_lo}-{a_hi}", f"{b_lo}-{b_hi}", "vmid_ranges.templates"
    junk = draw(st.text(alphabet="0123456789-, .abc", min_size=1, max_size=12)
                .filter(lambda t: re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", t) is None and t.strip() != ""))
    return junk, good_t, "vmid_ranges.vms"


@FUZZ
@given(case=bad_ranges())
def test_bad_vmid_ranges(cli: Callable[..., Run], tmp_path: Path, case: tuple[str, str, str]) -> None:
    vms, templates, key = case
    cfg = tmp_path / "ranges.yaml"
    cfg.write_text(VALID.replace("100-899", json.dumps(vms)).replace("9000-9999", json.dumps(templates)))
    line = one_error_line(cli("--config", str(cfg), "-o", "table", "vm", "list"))
    assert line.startswith(f"pvectl: error: {cfg}:7: {key}: "), line


@FUZZ
@given(a_lo=st.integers(VMID_MIN, 10**6), a_len=st.integers(0, 10**6), gap=st.integers(1, 10**6),
       b_len=st.integers(0, 10**6), templates_first=st.booleans())
def test_good_vmid_ranges_load(a_lo: int, a_len: int, gap: int, b_len: int, templates_first: bool) -> None:
    from pvectl.config import loads_config

    a = (a_lo, a_lo + a_len)
    b = (a[1] + gap, a[1] + gap + b_len)
    vms, tpl = (b, a) if templates_first else (a, b)
    cfg = loads_config(VALID.replace("100-899", f"{vms[0]}-{vms[1]}").replace("9000-9999", f"{tpl[0]}-{tpl[1]}"))
    assert (cfg.vmid_ranges.vms.start, cfg.vmid_ranges.vms.end) == vms
    assert (cfg.vmid_ranges.templates.start, cfg.vmid_ranges.templates.end) == tpl
    assert not cfg.vmid_ranges.vms.overlaps(cfg.vmid_ranges.templates)


@FUZZ
@given(port=st.one_of(st.integers(max_value=0), st.integers(min_value=65536),
                      st.text(alphabet="abcxyz:-", min_size=1, max_size=8),
                      st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                      st.lists(st.integers(1, 9), min_size=1, max_size=3)))
def test_bad_ports(cli: Callable[..., Run], tmp_path: Path, port: Any) -> None:
    cfg = tmp_path / "ports.yaml"
    cfg.write_text(VALID.replace("port: 1}", f"port: {json.dumps(port)}}}"))
    line = one_error_line(cli("--config", str(cfg), "-o", "table", "vm", "list"))
    assert line.startswith(f"pvectl: error: {cfg}:4: cluster.nodes[0].port: expected an integer from 1 to 65535, got ")


def test_non_latin1_secret_is_a_credential_error(cli: Callable[..., Run], sim: Any,
                                                 variant_config: Callable[..., Path], tmp_path: Path) -> None:
    secret = "3f2b1c9e-8d7a-4b6c-9e5f-1a2b3c4d5e\u20ac\u20ac"
    token = tmp_path / "euro-token"
    token.write_text(f"{sim.token_id}\n{secret}\n", encoding="utf-8")
    cfg = variant_config(sim.config_path, "euro.yaml", lambda d: d["credentials"].update(token_file=str(token)))
    line = one_error_line(cli("--config", str(cfg), "-o", "table", "vm", "list"))
    assert line == (f"pvectl: error: malformed secret in token_file {token}: it contains characters other than "
                    "printable ASCII (a Proxmox token secret is a UUID)")
    r = cli("--config", str(cfg), "-o", "json", "vm", "status", "100")
    assert r.code == 2 and r.json["error"]["type"] == "CredentialError"
    assert "\u20ac" not in r.out + r.err


@pytest.mark.parametrize("ref", ["\u0661\u0660\u0660", " 100", "100 ", "\uff11\uff10\uff10", "100\n"])
def test_a_vmid_is_ascii_digits_only(cli: Callable[..., Run], sim: Any, ref: str) -> None:
    # Arabic-Indic, full-width digits and blanks are not a VMID: the word is looked up as a name
    r = cli("--config", str(sim.config_path), "-o", "json", "vm", "status", ref)
    assert r.code == 1 and r.json["error"]["type"] == "NotFound", r
    assert r.json["error"]["message"] == f"no VM named {ref!r}"
    r = cli("--config", str(sim.config_path), "-o", "json", "vm", "status", "100")
    assert r.code == 0 and r.json["vmid"] == 100


# ------------------------------------------------------------------------------------------------
# Sizes: one grammar for --memory, --size and --disk-size; malformed is a usage error (exit 2)

SIZE_FORMS = "K, M, G or T (or KiB, MiB, GiB, TiB: powers of 1024)"


@pytest.mark.parametrize("argv,expected", [
    (["vm", "resize", "100", "--disk", "scsi0", "--size", "1e3G"], "invalid disk size '1e3G': expected +N"),
    (["vm", "resize", "100", "--disk", "scsi0", "--size=-5G"], "invalid disk size '-5G': disks only grow"),
    (["vm", "resize", "100", "--disk", "scsi0", "--size", "10GB"], "invalid disk size '10GB': expected +N"),
    (["vm", "resize", "100", "--memory", "1e3G"], "invalid memory size '1e3G': expected N with "),
    (["vm", "resize", "100", "--memory", "+1G"], "invalid memory size '+1G': memory is an absolute size"),
    (["vm", "clone", "9000", "sized", "--disk-size", "1e3G"], "invalid disk size '1e3G': expected +N"),
    (["vm", "clone", "9000", "sized", "--memory", "4 gallons"], "invalid memory size '4 gallons': expected N"),
])
def test_malformed_sizes_exit_2_and_show_the_accepted_forms(cli: Callable[..., Run], sim: Any, argv: list[str],
                                                             expected: str) -> None:
    line = one_error_line(cli("--config", str(sim.config_path), "-o", "table", "--dry-run", *argv))
    assert line.startswith(f"pvectl: error: {expected}"), line
    assert SIZE_FORMS in line, line


@pytest.mark.parametrize("argv,flag", [
    (["vm", "clone", "9000", "sized", "--disk-size", "10GB"], "--disk-size"),
    (["vm", "resize", "100", "--disk", "scsi0", "--size", "10GB"], "--size"),
])
def test_a_bad_disk_size_hint_names_the_flag_it_came_from(cli: Callable[..., Run], sim: Any, argv: list[str],
                                                          flag: str) -> None:
    r = cli("--config", str(sim.config_path), "-o", "table", "--dry-run", *argv)
    assert r.code == 2, r.err
    assert f"e.g. {flag} +10G grows by 10 GiB, {flag} 50G makes it 50 GiB" in r.err, r.err


def test_a_property_string_missing_its_required_key_is_one_error_line(cli: Callable[..., Run], sim: Any) -> None:
    """`net0=bridge=vmbr0` has no model: Proxmox's checker reports two lines ("invalid format - format
    error", then "net0.model: property is missing ..."); pvectl prints one, exit 2, nothing sent."""
    r = cli("--config", str(sim.config_path), "-o", "table", "vm", "set", "100", "net0=bridge=vmbr0")
    line = one_error_line(r)
    assert "net0: invalid format - format error; net0.model: property is missing" in line, line


def test_gib_sizes_are_accepted_for_memory_and_disks_and_sent_as_proxmox_spells_them(
        cli: Callable[..., Run], sim: Any) -> None:
    cfg = str(sim.config_path)
    r = cli("--config", cfg, "-o", "json", "--dry-run", "vm", "clone", "9000", "sized", "--memory", "10GiB",
            "--disk-size", "40GiB")
    assert r.code == 0, r.err
    assert "--data-urlencode memory=10240 " in r.out and "--data-urlencode size=40G " in r.out, r.out
    r = cli("--config", cfg, "-o", "json", "--dry-run", "vm", "resize", "100", "--disk", "scsi0", "--size", "+2GiB")
    assert r.code == 0, r.err
    assert "--data-urlencode size=+2G " in r.out, r.out


@pytest.mark.parametrize("argv", [
    ["task", "wait", "UPID:pve9:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:"],
    ["task", "status", "UPID:pve9:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:"],
    ["task", "log", "UPID:pve9:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:"],
    ["task", "list", "--node", "pve9"],
    ["vm", "list", "--node", "pve9", "--templates"],
])
def test_an_unknown_node_is_a_usage_error_for_every_command(cli: Callable[..., Run], sim: Any,
                                                            argv: list[str]) -> None:
    since = max((q["seq"] for q in sim.requests_log()), default=0)
    line = one_error_line(cli("--config", str(sim.config_path), "-o", "table", *argv))
    assert line == "pvectl: error: no node 'pve9' in the cluster (nodes: pve1, pve2, pve3)"
    r = cli("--config", str(sim.config_path), "-o", "json", *argv)
    assert r.code == 2 and r.json["error"]["type"] == "UsageError"
    # found from the node list alone: no request ever names the unknown node
    assert not [q for q in sim.requests_log(since=since) if "pve9" in str(q)]


def test_a_credential_error_opens_no_connection(cli: Callable[..., Run], sim: Any, tmp_path: Path,
                                                variant_config: Callable[..., Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # the token is read before a connection is opened: nothing to leak or leave half-open
    from pvectl.http import conn as httpconn

    opened: list[Any] = []
    real_init = httpconn.Connection.__init__

    def counting_init(self: Any, *a: Any, **kw: Any) -> None:
        opened.append(a)
        real_init(self, *a, **kw)

    monkeypatch.setattr(httpconn.Connection, "__init__", counting_init)
    token = tmp_path / "empty-token"
    token.write_text(f"{sim.token_id}\n\n")
    cfg = variant_config(sim.config_path, "empty.yaml", lambda d: d["credentials"].update(token_file=str(token)))
    line = one_error_line(cli("--config", str(cfg), "-o", "table", "vm", "list"))
    assert line.startswith(f"pvectl: error: empty secret in token_file {token}")
    assert opened == []
