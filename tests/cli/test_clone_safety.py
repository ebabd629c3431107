"""`pvectl vm clone` under the ways operators actually run it: several processes with one name, a retry
after exit 4, Ctrl-C (a real SIGINT to a child process), a short deadline in bulk, a range that is too
small, the last VMID of a range, a keys file that is not a keys file.

Spec: DESIGN §3 (exit codes), §5 ("names", "deadlines"); pve-semantics §4.3 (a clone in flight has no
name yet). No test measures wall-clock time beyond a generous upper bound.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PVECTL = Path(sys.executable).with_name("pvectl")


@pytest.fixture(autouse=True)
def _audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))


def names(sim: Any, name: str) -> list[int]:
    with sim.backend.mu:
        return sorted(v.vmid for v in sim.backend.state.vms.values() if v.config.get("name") == name)


def clone_posts(sim: Any) -> list[dict[str, Any]]:
    return [e for e in sim.requests_log() if e["method"] == "POST" and e["path"].endswith("/clone")]


def clone_task_polled(sim: Any) -> bool:
    """pvectl has asked for the status of a clone task (it has the task's UPID)."""
    return any(e["method"] == "GET" and "%3Aqmclone%3A" in e["path"] and e["path"].endswith("/status")
               for e in sim.requests_log())


def writes(sim: Any) -> list[tuple[str, str]]:
    return [(e["method"], e["path"]) for e in sim.requests_log() if e["method"] != "GET"]


def spawn(cfg: Path, *args: str, env_dir: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PVECTL_AUDIT_LOG=str(env_dir / "audit.jsonl"))
    return subprocess.Popen([str(PVECTL), "--config", str(cfg), "vm", "clone", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL)


def wait_for(pred: Callable[[], bool], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def wait_idle(sim: Any, timeout: float = 30) -> None:
    wait_for(lambda: not any(r.status == "running" for r in sim.backend.engine.records()), timeout)


def test_four_processes_one_name_make_one_vm(fresh_sim: Any, tmp_path: Path) -> None:
    procs = [spawn(fresh_sim.config_path, "9000", "four-1", "-o", "json", env_dir=tmp_path) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    wait_idle(fresh_sim)
    made = names(fresh_sim, "four-1")
    assert len(made) == 1
    results = sorted(json.loads(o)["result"] for o, _ in outs)
    assert results == ["created", "exists", "exists", "exists"], outs
    assert {json.loads(o)["vmid"] for o, _ in outs} == set(made)


def test_retry_after_exit_4_reports_the_first_clone(fresh_sim: Any, cli: Callable[..., Any]) -> None:
    cfg = str(fresh_sim.config_path)
    r = cli("--config", cfg, "--timeout", "0.2", "vm", "clone", "9000", "retry1", "-o", "json")
    assert r.code == 4, r.out + r.err
    err = r.json["error"]
    assert err["upid"] and "pvectl task wait" in err["hint"]
    again = cli("--config", cfg, "vm", "clone", "9000", "retry1", "-o", "json")
    assert again.code == 0, again.err
    assert again.json["result"] == "exists" and again.json["vmid"] == err["vm"]["vmid"]
    assert names(fresh_sim, "retry1") == [err["vm"]["vmid"]] and len(clone_posts(fresh_sim)) == 1


def test_sigint_bulk_reports_what_is_in_flight_and_starts_nothing_new(start_sim: Callable[..., Any],
                                                                      tmp_path: Path) -> None:
    sim = start_sim(time_scale=0.05)          # a full clone takes about 2 s
    p = spawn(sim.config_path, "9000", "--count", "4", "--name-pattern", "int-{n}", "--start", "--wait-ip",
              "--max-per-node", "1", "-o", "json", env_dir=tmp_path)
    # Ctrl-C once the first clone runs and pvectl waits for its task (it polls its status: it has the
    # UPID); the other three wait their turn. A condition, not a pause: a loaded machine may take
    # longer than any fixed pause to hand the clone's answer to the child process. Which VM goes first
    # is up to the scheduling of the worker threads (not always int-1); each has the VMID planned for it.
    wait_for(lambda: clone_task_polled(sim))
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    took = time.monotonic() - sent
    assert p.returncode == 130, (out, err)
    assert took < 10
    assert "Traceback" not in err
    d = json.loads(out)
    assert d["interrupted"] is True and d["resume"].startswith("pvectl ") and "--count 4" in d["resume"]
    rows = {r["name"]: r for r in d["results"]}
    assert sorted(rows) == ["int-1", "int-2", "int-3", "int-4"]
    busy = [n for n, r in rows.items() if r["result"] != "not started"]
    assert len(busy) == 1, rows
    first = rows[busy[0]]
    assert first["vmid"] == 111 + int(busy[0][-1]) and first["upids"]["clone"].startswith("UPID:pve1:")
    assert first["result"] == "in progress"
    assert first["upids"]["clone"] in err and "pvectl task wait" in err
    wait_idle(sim)
    assert len(clone_posts(sim)) == 1         # nothing new was started after Ctrl-C
    # the resume command finishes the first VM and makes the other three, each once
    r = subprocess.run([str(PVECTL), *shlex.split(d["resume"])[1:]], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, PVECTL_AUDIT_LOG=str(tmp_path / "a.jsonl")))
    assert r.returncode == 0, r.stdout + r.stderr
    for n in ("int-1", "int-2", "int-3", "int-4"):
        assert len(names(sim, n)) == 1, n
    with sim.backend.mu:
        assert sim.backend.state.vms[first["vmid"]].status == "running"


def test_sigint_single_clone_reports_vmid_and_upid(start_sim: Callable[..., Any], tmp_path: Path) -> None:
    sim = start_sim(time_scale=0.05)
    p = spawn(sim.config_path, "9000", "one-int", "--start", "-o", "json", env_dir=tmp_path)
    wait_for(lambda: len(clone_posts(sim)) >= 1)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (out, err)
    d = json.loads(out)
    (row,) = d["results"]
    assert row["vmid"] == 112 and row["status"] == "cloning" and row["upids"]["clone"] in err
    assert row["result"] == "in progress"
    assert d["resume"].endswith("vm clone 9000 one-int --start -o json")


def test_bulk_deadline_starts_nothing_late_and_exits_4(start_sim: Callable[..., Any],
                                                        cli: Callable[..., Any]) -> None:
    """`--count 3 --timeout 1 --max-per-node 1` with clones of about 2 s: one clone is still
    running at the deadline and the other two never start (no POST after the deadline, never two
    clones at once on pve1); exit 4 (only the deadline), not 1."""
    sim = start_sim(time_scale=0.05)
    r = cli("--config", str(sim.config_path), "--timeout", "1", "vm", "clone", "9000", "--count", "3",
            "--name-pattern", "late-{n}", "--max-per-node", "1", "-o", "json")
    assert r.code == 4, r.out + r.err
    rows = r.json["results"]
    assert [x["name"] for x in rows] == ["late-1", "late-2", "late-3"]
    for x in rows:
        assert x["result"] == "not started" or "deadline" in x["error"]["message"], x
    # one clone at most started (which one is up to the workers' order for pve1's one slot), the others never
    waiting = [x for x in rows if x["result"] == "not started"]
    assert len(waiting) >= 2, json.dumps(rows)
    for x in waiting:      # exit 4 with no task to resume: says nothing was sent, and how to run it again
        assert "before the clone request for" in x["error"]["message"], x
        assert "was sent; nothing changed" in x["error"]["message"], x
        # the command to run again is the command line as given
        assert x["error"]["hint"].endswith("--timeout 1 vm clone 9000 --count 3 --name-pattern 'late-{n}' "
                                           "--max-per-node 1 -o json"), x
    assert len(clone_posts(sim)) <= 1


def test_count_larger_than_the_free_range_is_refused_up_front(fresh_sim: Any, cli: Callable[..., Any],
                                                               variant_config: Callable[..., Path]) -> None:
    cfg = variant_config(fresh_sim.config_path, "narrow.yaml",
                         lambda d: d["vmid_ranges"].update(vms="100-115"))       # 100-111 are taken
    r = cli("--config", str(cfg), "vm", "clone", "9000", "--count", "5", "--name-pattern", "many-{n}",
            "-o", "table")
    assert r.code == 3 and "only 4 free" in r.err and "100-115" in r.err
    assert writes(fresh_sim) == []


def test_the_last_vmid_of_the_range_is_used(fresh_sim: Any, cli: Callable[..., Any],
                                             variant_config: Callable[..., Path]) -> None:
    cfg = variant_config(fresh_sim.config_path, "last.yaml", lambda d: d["vmid_ranges"].update(vms="100-112"))
    r = cli("--config", str(cfg), "vm", "clone", "9000", "last-1", "-o", "json")
    assert r.code == 0, r.err
    assert r.json["vmid"] == 112 and names(fresh_sim, "last-1") == [112]
    r = cli("--config", str(cfg), "--dry-run", "vm", "clone", "9000", "--count", "1", "--name-pattern", "x-{n}",
            "-o", "table")
    assert r.code == 3 and "only 0 free" in r.err


def test_bad_keys_file_names_the_line_not_its_text(fresh_sim: Any, cli: Callable[..., Any], tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0 a@b\n\nhunter2-secret-password-value\n")
    r = cli("--config", str(fresh_sim.config_path), "vm", "clone", "9000", "k-1", "--ssh-keys", str(keys),
            "-o", "table")
    assert r.code == 2 and "line 3 is not an SSH public key" in r.err
    assert "hunter2" not in r.out + r.err
    assert writes(fresh_sim) == []
