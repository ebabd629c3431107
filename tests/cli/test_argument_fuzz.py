"""Generated command lines against the simulator, always with --dry-run: every one ends with a
documented exit code and at most a one-line error, never an internal error or a traceback, and
nothing is sent. (Lone surrogates - what a non-UTF-8 byte in argv becomes - are left out here: the
captured stderr of this harness is strict UTF-8, a real process's stderr escapes them.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from cliharness import Run

COMMANDS = [["cluster", "status"], ["node", "list"], ["node", "status"], ["vm", "list"], ["vm", "status"],
            ["vm", "clone"], ["vm", "start"], ["vm", "shutdown"], ["vm", "stop"], ["vm", "reboot"], ["vm", "delete"],
            ["vm", "resize"], ["vm", "set"], ["vm", "migrate"], ["task", "status"], ["task", "log"],
            ["task", "list"], ["template", "list"], ["audit"]]
WORDS = ["100", "101", "9000", "pve1", "pve9", "web-1", "\u0661\u0660\u0660", " 100", "", "-", "--", "0", "-5",
         "1e3G", "+10G", "10GiB", "-5G", "4G", "nan", "inf", "cores=2", "bogus=1", "cipassword=x", "name=a,b",
         "UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmstart:100:root@pam:", "UPID:", "scsi0", "ide2", "auto",
         "x" * 300, "a=b=c", "\x00", "%s", "{n}", "web-{n}"]
OPTIONS = ["--node", "--status", "--tag", "--templates", "--memory", "--cores", "--disk", "--size", "--disk-size",
           "--vmid", "--target", "--storage", "--linked", "--bridge", "--ip", "--ciuser", "--start", "--limit",
           "--running", "--vm", "--delete", "--allow-running", "--allow-template", "--yes", "--no-wait", "--by",
           "--online", "--offline", "--bwlimit", "--check", "--with-local-disks", "--name-pattern", "--name-start",
           "--timeout", "-o", "--force-stop", "--shutdown-timeout", "--max-per-node"]
COUNTS = st.sampled_from(["1", "2", "0", "-1", "x"])


WORD = st.one_of(st.sampled_from(WORDS), st.text(st.characters(blacklist_categories=("Cs",)), max_size=6))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(cmd=st.sampled_from(COMMANDS), positional=st.lists(WORD, max_size=3),
       options=st.lists(st.tuples(st.sampled_from(OPTIONS), st.one_of(st.none(), WORD)), max_size=4),
       count=st.one_of(st.none(), COUNTS))
def test_generated_command_lines_end_cleanly(cli: Callable[..., Run], sim: Any, cmd: list[str], positional: list[str],
                                              options: list[tuple[str, str | None]], count: str | None) -> None:
    rest = positional + [w for opt, value in options for w in ((opt,) if value is None else (opt, value))]
    argv = ["--config", str(sim.config_path), "--dry-run", "--timeout", "5", *cmd, *rest]
    if count is not None and cmd == ["vm", "clone"]:
        argv += ["--count", count]
    seq = max((q["seq"] for q in sim.requests_log()), default=0)
    r = cli(*argv)
    event(f"exit {r.code}")
    assert r.code in (0, 1, 2, 3, 4, 5), (argv, r)
    assert "internal error" not in r.err and "Traceback" not in r.err, (argv, r.err)
    if r.code != 0:
        assert len(r.err_lines) <= 1 or r.out == "", (argv, r)
    sent = [q for q in sim.requests_log(since=seq) if q["method"] != "GET"]
    assert sent == [], (argv, sent)
