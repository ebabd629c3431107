"""Random command lines for `pvectl` against a simulated cluster: read-only commands and dry-runs only.

Whatever the arguments, pvectl ends with a documented exit code (0-5, DESIGN §3), says what went wrong
in one line (or one JSON error object), never prints a traceback or `internal error`, and sends no
write to the cluster.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvectl.cli.main import main
from pvectl.sim.cluster import Cluster

from .history import RecordingApi, recording_sim

UPID = "UPID:pve1:00001234:0000ABCD:6B000000:qmstart:100:root@pam:"
# Characters that end a line (str.splitlines) are left out here: an argument holding one is escaped in
# the one-line usage error (checked on its own at the end of this file).
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00" + LINE_BREAKS),
                max_size=16)


def _pick(*fixed: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(fixed), _text)


refs = _pick("100", "101", "9000", "web-01", "nosuch", "0", "-1", "99999999999", "1e2", "0x64", " 100", "100 ")
names = _pick("ok-1", "web-01", "x y", "-bad", "a" * 70, "ünï", "a.b", "")
sizes = _pick("+1G", "10G", "1e3G", "10GiB", "-5G", "+0G", "0", "G", "+", "1.5G", "99999999T", "4096", "2g")
nodes = _pick("pve1", "pve2", "nosuch", "", "PVE1", "../x", "auto", "127.0.0.1")
upids = _pick(UPID, "UPID:pve9:00001234:0000ABCD:6B000000:qmstart:100:root@pam:", "UPID:bad", "", "UPID:" * 9)
counts = st.sampled_from(["0", "1", "2", "-1", "x", "300", "1e1", "03"])


def _opt(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.one_of(st.just([]), values.map(lambda v: [flag, v]), st.just([flag]))


def _opts(*options: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.tuples(*options).map(lambda parts: [w for p in parts for w in p])


READS = st.one_of(
    st.tuples(st.just(["vm", "list"]), _opts(_opt("--status", _pick("running", "stopped", "bogus")),
                                             _opt("--node", nodes), _opt("--tag", _text),
                                             st.sampled_from([[], ["--templates"], ["--no-templates"]]))),
    st.tuples(st.just(["vm", "status"]), refs.map(lambda r: [r])),
    st.tuples(st.sampled_from([["template", "list"], ["cluster", "status"], ["node", "list"]]), st.just([])),
    st.tuples(st.just(["node", "status"]), st.one_of(st.just([]), nodes.map(lambda n: [n]))),
    st.tuples(st.sampled_from([["task", "status"], ["task", "log"], ["task", "wait"]]), upids.map(lambda u: [u])),
    st.tuples(st.just(["vm", "migrate"]), st.tuples(refs, nodes).map(lambda t: [t[0], t[1], "--check"])),
)
DRY_RUNS = st.one_of(
    st.tuples(st.just(["vm", "clone"]), st.tuples(refs, names, _opts(
        _opt("--count", counts), _opt("--memory", sizes), _opt("--disk-size", sizes), _opt("--cores", counts),
        _opt("--vmid", refs), _opt("--target", nodes), _opt("--ip", _pick("dhcp", "10.0.0.5/24", "1.2.3.4")),
        _opt("--storage", _pick("local-lvm", "nosuch")), st.sampled_from([[], ["--linked"], ["--start"]]),
    )).map(lambda t: [t[0], t[1], *t[2]])),
    st.tuples(st.just(["vm", "resize"]), st.tuples(refs, _opts(_opt("--disk", _pick("scsi0", "ide9")),
                                                               _opt("--size", sizes), _opt("--cores", counts),
                                                               _opt("--memory", sizes))).map(lambda t: [t[0], *t[1]])),
    st.tuples(st.just(["vm", "set"]), st.tuples(refs, st.lists(_pick("description=x", "cores=2", "=", "k=v=w",
                                                                      "cipassword=hunter2"), max_size=3))
              .map(lambda t: [t[0], *t[1]])),
    st.tuples(st.sampled_from([["vm", "start"], ["vm", "shutdown"], ["vm", "stop"], ["vm", "reboot"],
                               ["vm", "delete"]]), refs.map(lambda r: [r])),
)


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    dry = draw(st.booleans())
    head, rest = draw(DRY_RUNS if dry else READS)
    glob = draw(_opts(st.sampled_from([[], ["-o", "json"], ["-o", "table"], ["-o", "yaml"]]),
                      st.sampled_from([["--timeout", "2"], ["--timeout", "0.5"], ["--timeout", "0"],
                                       ["--timeout", "nan"], ["--timeout", "-1"], ["--timeout", "x"]]),
                      st.sampled_from([[], ["--yes"]]), st.sampled_from([[], ["--no-wait"]])))
    junk = draw(st.one_of(st.just([]), st.just([]), st.lists(_text, min_size=1, max_size=2)))
    return [*head, *rest, *junk, *glob, *(["--dry-run"] if dry else [])]


@pytest.fixture(scope="module")
def fuzz_sim() -> Iterator[tuple[Cluster, RecordingApi]]:
    with recording_sim(nodes=3, vms=6, templates=2, time_scale=0.01) as pair:
        yield pair


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return code, out.getvalue(), err.getvalue()


def structured(out: str) -> bool:
    """A JSON or YAML document on stdout: an error object, or a report (bulk results, a --check verdict)."""
    import yaml

    last = out.strip().splitlines()[-1:] or [""]
    if last[0].startswith('{"error"'):
        out = last[0]          # a dry-run's curl lines, then the error object
    try:
        doc = json.loads(out) if out.lstrip().startswith(("{", "[")) else yaml.safe_load(out)
    except (ValueError, yaml.YAMLError):
        return False
    return isinstance(doc, (dict, list)) and bool(doc)


def check(argv: list[str], code: int, out: str, err: str) -> None:
    said = f"pvectl {argv!r} -> exit {code}\nstdout: {out[-500:]!r}\nstderr: {err[-500:]!r}"
    assert code in range(6), said
    assert "Traceback" not in out + err and "internal error" not in (out + err).lower(), said
    if code == 0 or structured(out):
        return
    if "--check" in argv and code == 3 and "REFUSED" in out:
        return                                                                # the verdict table
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("pvectl"), said                      # it says what went wrong
    assert "error" in lines[-1] or "FAILED" in lines[-1], said
    assert sum("error:" in ln for ln in lines) == 1 or "FAILED" in lines[-1], said   # in one line


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(argv=argvs())
def test_random_command_lines_end_with_a_typed_answer_and_change_nothing(
        fuzz_sim: tuple[Cluster, RecordingApi], argv: list[str]) -> None:
    sim, recorder = fuzz_sim
    before = len(recorder.received)
    code, out, err = run(["--config", str(sim.config_path), *argv])
    check(argv, code, out, err)
    writes = [f"{r.method} {r.path}" for r in recorder.received[before:] if r.is_write]
    assert writes == [], f"pvectl {argv!r} sent writes {writes}"


@pytest.mark.parametrize("arg", ["\n", "x\ny", "\r", "\x1c"])
def test_an_argument_with_a_line_break_still_gives_a_one_line_error(arg: str) -> None:
    code, out, err = run(["vm", "status", "100", arg])
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1, repr(err)
