"""Load: 16 concurrent `pvectl` processes on a 5,000-VM cluster, and `vm list` of 10,000 VMs as JSON and as a
table on a terminal.

    .venv/bin/python bench/bench_load.py                       # about 2 minutes; appends a section to RESULTS.md
    .venv/bin/python bench/bench_load.py --baseline 2b04414    # the same, with a revision's src/ measured beside
    .venv/bin/python bench/bench_load.py --runs 3 --no-record  # quick look

(a) Concurrency: a simulator (`python -m pvectl.sim --nodes 3 --vms 5000 --templates 2`, its own process) and
`--procs` workers, each running its list of commands one after the other as new `pvectl` processes: reads
(`vm list`, `vm list --status running`, `vm status`, `node list`, `cluster status`, `template list`,
`task list`), dry-run writes (`vm clone --dry-run`, `vm stop --dry-run --yes`) and real writes (`vm set`
description, `vm start` of a stopped VM of its own, a linked `vm clone` with a name of its own). Every command
must exit 0; afterwards each worker's clone must exist exactly once, no dry-run clone may exist, each started
VM must run and the VM count must have grown by exactly one per worker. The config's VM range is widened to
10000-19999 so that clones find free VMIDs.

(b) Size: a simulator with 10,000 VMs and its 2 templates (`pvectl sim serve --vms 10000`: the generated VMIDs
step over the template range, 9000 and 9001 stay templates: checked with `template list`), then
`pvectl -o json vm list` to a pipe and
`pvectl vm list` to a pseudo-terminal (200x50, TERM=xterm-256color; a thread reads the terminal's output as a
terminal emulator would). Wall time from spawn to exit and the process's peak RSS (GNU time), `--runs` runs each,
medians. With `--baseline REV`, the `src/` of that revision (git archive) runs the same commands in the same
run, alternating with the work tree's. Targets: each under 1.5 s and 150 MB.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
TIME_TARGET_S = 1.5
RSS_TARGET_MB = 150.0
LAUNCH = "import sys; from pvectl.cli.main import main; sys.exit(main())"


class Outcome:
    __slots__ = ("argv", "code", "seconds", "rss_mb", "out", "err")

    def __init__(self, argv: list[str], code: int, seconds: float, rss_mb: float, out: str, err: str) -> None:
        self.argv, self.code, self.seconds, self.rss_mb, self.out, self.err = argv, code, seconds, rss_mb, out, err


def _measured(argv: list[str]) -> tuple[list[str], Path]:
    """`argv` under GNU time, which writes the peak RSS (KB) to a file. Linux counts the RSS a process had
    before exec in its peak, so a child forked straight from this (large) process would report this
    process's size; time(1) is small."""
    fd, name = tempfile.mkstemp(prefix="pvectl-bench-rss-")
    os.close(fd)
    return ["/usr/bin/time", "-f", "%M", "-o", name, *argv], Path(name)


def _peak_mb(path: Path) -> float:
    text = path.read_text().strip().splitlines()
    path.unlink()
    return int(text[-1]) / 1024 if text else float("nan")


def run_piped(argv: list[str], env: dict[str, str]) -> Outcome:
    timed, rss_file = _measured(argv)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.run(timed, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return Outcome(argv, proc.returncode, seconds, _peak_mb(rss_file), out.read(), err.read())


def run_on_terminal(argv: list[str], env: dict[str, str], cols: int = 200, rows: int = 50) -> Outcome:
    """Run with stdout and stderr on a new pseudo-terminal; drain it like a terminal emulator."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:      # EIO: the child side closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    timed, rss_file = _measured(argv)
    t0 = time.perf_counter()
    proc = subprocess.Popen(timed, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    os.close(slave)
    code = proc.wait()
    reader.join(30)
    seconds = time.perf_counter() - t0
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    return Outcome(argv, code, seconds, _peak_mb(rss_file), text, "")


def start_sim(state_dir: Path, *, vms: int, templates: int) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-m", "pvectl.sim", "--nodes", "3", "--vms", str(vms),
                             "--templates", str(templates), "--bind", "127.0.0.1", "--port", "0",
                             "--state-dir", str(state_dir), "--time-scale", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ready "):
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc, Path(line[len("ready "):])


def stop_sim(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def child_env(cache: Path, src: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVECTL_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["XDG_CACHE_HOME"] = str(cache)
    env["XDG_STATE_HOME"] = str(cache / "state")
    env["TERM"] = "xterm-256color"
    env.pop("NO_COLOR", None)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def pvectl(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, "--config", str(config), *args]


# -- (a) 16 processes at once ------------------------------------------------------------------------


def worker_commands(config: Path, i: int, stopped_vmid: int, some_vmid: int) -> list[list[str]]:
    return [
        pvectl(config, "-o", "json", "vm", "list"),
        pvectl(config, "-o", "json", "vm", "status", str(some_vmid)),
        pvectl(config, "-o", "json", "node", "list"),
        pvectl(config, "-o", "json", "vm", "list", "--status", "running"),
        pvectl(config, "-o", "json", "cluster", "status"),
        pvectl(config, "-o", "json", "--dry-run", "vm", "clone", "9000", f"load-dry-{i}"),
        pvectl(config, "-o", "json", "template", "list"),
        pvectl(config, "-o", "json", "vm", "set", str(some_vmid), f"description=load-{i}"),
        pvectl(config, "-o", "json", "--timeout", "120", "vm", "start", str(stopped_vmid)),
        pvectl(config, "-o", "json", "--dry-run", "--yes", "vm", "stop", str(stopped_vmid)),
        pvectl(config, "-o", "json", "--timeout", "120", "vm", "clone", "9000", f"load-{i}", "--linked"),
        pvectl(config, "-o", "json", "task", "list"),
        pvectl(config, "-o", "json", "vm", "list", "--node", "pve2"),
    ]


def command_kind(argv: list[str]) -> str:
    """`vm list --status`, `vm clone --dry-run`: the command words and the options that change its work."""
    words: list[str] = []
    rest = iter(argv[argv.index("--config") + 2:])
    for a in rest:
        if a in ("-o", "--timeout"):
            next(rest)
        elif not a.startswith("-"):
            words.append(a)
    flags = [f for f in ("--dry-run", "--status", "--node", "--linked") if f in argv]
    return " ".join(words[:2] + flags)


def concurrency(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    proc, config_path = start_sim(work / "sim5k", vms=args.vms, templates=2)
    try:
        conf = yaml.safe_load(config_path.read_text())
        conf["vmid_ranges"]["vms"] = "10000-19999"
        config = work / "load-config.yaml"
        config.write_text(yaml.safe_dump(conf))
        env = child_env(work / "cache")
        listing = run_piped(pvectl(config, "-o", "json", "vm", "list", "--status", "stopped"), env)
        import json

        stopped = [v["vmid"] for v in json.loads(listing.out) if not v.get("template")]
        running = run_piped(pvectl(config, "-o", "json", "vm", "list", "--status", "running"), env)
        some = [v["vmid"] for v in json.loads(running.out)]
        outcomes: list[Outcome] = []
        lock = threading.Lock()

        def work_on(i: int) -> None:
            for argv in worker_commands(config, i, stopped[i], some[i]):
                o = run_piped(argv, env)
                with lock:
                    outcomes.append(o)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=work_on, args=(i,)) for i in range(args.procs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        after = json.loads(run_piped(pvectl(config, "-o", "json", "vm", "list"), env).out)
        by_name = Counter(v["name"] for v in after)
        status = {v["vmid"]: v["status"] for v in after}
        checks = {
            "each worker's clone exists exactly once": all(by_name[f"load-{i}"] == 1 for i in range(args.procs)),
            "no dry-run clone was made": not any(by_name[f"load-dry-{i}"] for i in range(args.procs)),
            "each started VM runs": all(status[stopped[i]] == "running" for i in range(args.procs)),
        }
        checks["VM count grew by exactly one clone per worker"] = len(after) == args.vms + 2 + args.procs
        return {"outcomes": outcomes, "wall": wall, "checks": checks}
    finally:
        stop_sim(proc)


# -- (b) 10,000 VMs --------------------------------------------------------------------------------


def size(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    proc, config = start_sim(work / "sim10k", vms=10000, templates=2)
    sources: dict[str, Path | None] = {"work tree": None}
    if args.baseline:
        base = work / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "src"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        sources = {f"baseline {args.baseline}": base / "src", "work tree": REPO / "src"}
    results: dict[tuple[str, str], list[Outcome]] = {}
    try:
        envs = {name: child_env(work / f"cache-{i}", src) for i, (name, src) in enumerate(sources.items())}
        for name, env in envs.items():       # warm the config cache and bytecode
            run_piped(pvectl(config, "-o", "json", "vm", "list"), env)
        import json

        listed = run_piped(pvectl(config, "-o", "json", "template", "list"), envs["work tree"])
        templates = sorted(int(t["vmid"]) for t in json.loads(listed.out))
        if templates != [9000, 9001]:
            raise SystemExit(f"the 10,000-VM simulator lost its templates: template list shows {templates}")
        for _ in range(args.runs):
            for name, env in envs.items():
                o = run_piped(pvectl(config, "-o", "json", "vm", "list"), env)
                results.setdefault((name, "json to a pipe"), []).append(o)
                t = run_on_terminal(pvectl(config, "vm", "list"), env)
                results.setdefault((name, "table on a terminal"), []).append(t)
                p = run_piped(pvectl(config, "-o", "table", "vm", "list"), env)
                results.setdefault((name, "table to a pipe"), []).append(p)
        for (name, mode), runs in results.items():
            bad = [o for o in runs if o.code != 0]
            if bad:
                raise SystemExit(f"{name} {mode}: exit {bad[0].code}: {bad[0].err or bad[0].out[-500:]}")
            lines = runs[0].out.count("\n")
            if lines < 10000:
                raise SystemExit(f"{name} {mode}: only {lines} lines of output")
        return {"results": results, "templates": templates}
    finally:
        stop_sim(proc)


# -- report -----------------------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def report(args: argparse.Namespace, conc: dict[str, Any] | None, sz: dict[str, Any] | None,
           load_before: tuple[float, ...]) -> tuple[str, bool]:
    ok = True
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_after = os.getloadavg()
    lines = [f"## Load: 16 concurrent pvectl processes on 5,000 VMs; `vm list` of 10,000 VMs (bench/bench_load.py)",
             "",
             f"{now} · Python {platform.python_version()} · {os.cpu_count()} CPUs · load average "
             f"{' '.join(f'{x:.2f}' for x in load_before)} before, {' '.join(f'{x:.2f}' for x in load_after)} after "
             "(1/5/15 min) · simulators in their own processes, time scale 0.05.", ""]
    if conc is not None:
        outs: list[Outcome] = conc["outcomes"]
        failed = [o for o in outs if o.code != 0]
        ok &= not failed and all(conc["checks"].values())
        lines += [f"(a) {args.procs} workers at once, each running {len(outs) // args.procs} commands as new "
                  f"processes one after the other, against 3 nodes with {args.vms:,} VMs and 2 templates: "
                  f"{len(outs)} commands in {conc['wall']:.1f} s, **{len(failed)} failed**.", "",
                  "| command | runs | exit 0 | median s | max s | median peak RSS MB |", "|---|---|---|---|---|---|"]
        kinds: dict[str, list[Outcome]] = {}
        for o in outs:
            kinds.setdefault(command_kind(o.argv), []).append(o)
        for kind, os_ in kinds.items():
            lines.append(f"| `{kind}` | {len(os_)} | {sum(o.code == 0 for o in os_)} | "
                         f"{median([o.seconds for o in os_]):.2f} | {max(o.seconds for o in os_):.2f} | "
                         f"{median([o.rss_mb for o in os_]):.0f} |")
        lines += ["", "Checks afterwards: " + "; ".join(f"{k}: {'yes' if v else 'NO'}"
                                                       for k, v in conc["checks"].items()) + ".", ""]
        for o in failed[:5]:
            last = (o.out.strip() or o.err.strip()).splitlines()[-1:] or [""]
            lines.append(f"- failed: `{command_kind(o.argv)}` exit {o.code}: {last[0][:400]}")
    if sz is not None:
        lines += [f"(b) `vm list` of 10,000 VMs (3 nodes, `--vms 10000 --templates 2`; `template list` shows "
                  f"{', '.join(map(str, sz['templates']))}), {args.runs} runs each, "
                  "medians; wall time from spawn to exit (the whole command: start-up, the API read, the output), "
                  f"peak RSS from GNU time. Targets: under {TIME_TARGET_S} s and {RSS_TARGET_MB:.0f} MB.", "",
                  "| source | output | median s | min s | max s | median peak RSS MB | target |",
                  "|---|---|---|---|---|---|---|"]
        for (name, mode), runs in sz["results"].items():
            secs = [o.seconds for o in runs]
            rss = median([o.rss_mb for o in runs])
            met = median(secs) < TIME_TARGET_S and rss < RSS_TARGET_MB
            if name == "work tree" and mode != "table to a pipe":
                ok &= met
            lines.append(f"| {name} | {mode} | {median(secs):.2f} | {min(secs):.2f} | {max(secs):.2f} | {rss:.0f} | "
                         f"{'met' if met else 'missed'} |")
        lines.append("")
    return "\n".join(lines) + "\n", ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=16)
    ap.add_argument("--vms", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--baseline", metavar="REV", help="also measure (b) with this revision's src/")
    ap.add_argument("--only", choices=("concurrency", "size"))
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="pvectl-bench-load-"))
    try:
        conc = concurrency(args, work) if args.only in (None, "concurrency") else None
        sz = size(args, work) if args.only in (None, "size") else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text, ok = report(args, conc, sz, load_before)
    print(text)
    if not args.no_record:
        if not RESULTS.exists():
            RESULTS.write_text("# Benchmark results\n\n")
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
