"""Requests per second that the simulator serves for `GET /cluster/resources`, with 500 VMs.

    .venv/bin/python bench/bench_sim.py            # ~1 minute; appends a section to bench/RESULTS.md
    .venv/bin/python bench/bench_sim.py --runs 3 --seconds 1 --no-record

The simulator (`pvectl.sim.cluster.Cluster(nodes=3, vms=500, templates=2, bind="127.0.0.1", port=0)`)
runs in its own process pinned to one CPU core (`os.sched_setaffinity`), so the numbers are "on one
core". The load comes from other processes (pinned to the remaining cores when there are any): one
process per connection, each a plain `http.client.HTTPSConnection` verifying the cluster CA, reading
whole responses, no compression (like `curl` without `--compressed`). Two client modes:

- keep-alive: each connection sends request after request (the server closes a connection after 100
  requests, like pveproxy's `keep_alive => 100`; the client then reconnects);
- no keep-alive: a new TCP + TLS connection per request (`Connection: close`), like one `curl` call.

Each measurement is bounded in time (`--seconds`) and in count (`--max-requests` per connection); the
median of `--runs` runs is reported. Target: >= 300 req/s on one core without any answer cache.

The baseline is measured in the same run: the simulator of `--baseline` (a git ref, default `main`,
unpacked with `git archive` into a temporary directory and run from there), once as it ships (with its
one-second answer cache) and once with that cache disabled. Then, at `--big` guests (default 10,000),
each simulator answers one request per second for `--big-requests` seconds over one keep-alive
connection: the server process times its request handler (wall and CPU time spent producing the answer,
before the socket write; target < 50 ms) and its resident memory is read before and after (the answer
cache, where there is one, fills one entry per second).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PATHS = ("/api2/json/cluster/resources", "/api2/json/cluster/resources?type=vm")
TARGET = 300.0
BIG_TARGET_MS = 50.0
SERVER_CORE = 0


def _cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


# -- server process -----------------------------------------------------------------------------


class _NoCache(dict):  # type: ignore[type-arg]
    """Stands in for an answer cache that never keeps anything."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def serve(vms: int, *, no_answer_cache: bool, pin: bool) -> int:
    if pin:
        os.sched_setaffinity(0, {SERVER_CORE})
    from pvectl.sim.cluster import Cluster

    stop = False

    def _on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_term)
    handled: list[tuple[float, float]] = []
    with Cluster(nodes=3, vms=vms, templates=2, bind="127.0.0.1", port=0, time_scale=0.05) as sim:
        api = sim.server.api
        cache = getattr(api, "_cache", None)
        if no_answer_cache and cache is not None:
            api._cache = _NoCache()       # the baseline's one-second answer cache, switched off
        handle = api.handle

        def timed(node: str, request: Any) -> Any:
            w0, c0 = time.perf_counter(), time.thread_time()
            result = handle(node, request)
            if request.path.startswith("/api2/json/cluster/resources"):
                handled.append(((time.perf_counter() - w0) * 1000, (time.thread_time() - c0) * 1000))
            return result

        api.handle = timed
        host, port = sim.nodes["pve1"]
        info = {"host": host, "port": port, "ca": str(sim.ca_path),
                "auth": f"PVEAPIToken={sim.token_id}={sim.token_secret}",
                "vms": len(sim.backend.state.vms), "answer_cache": cache is not None and not no_answer_cache}
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop:
            time.sleep(0.1)
        # what this tree keeps between answers: each guest's encoded fragments (sim/resources.py)
        statics = getattr(getattr(api, "_resources", None), "_static", {})
        kept = sum(sys.getsizeof(v) for st in statics.values() for v in (st.stopped, st.unknown, st.running))
        cache = getattr(api, "_cache", {})
        kept += sum(len(v) for v in cache.values()) if isinstance(cache, dict) else 0
        sys.stdout.write(json.dumps({"handled_ms": handled, "kept_bytes": kept}) + "\n")
        sys.stdout.flush()
    return 0


# -- client process ----------------------------------------------------------------------------


def client(args: argparse.Namespace) -> int:
    if args.cores:
        os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    auth = os.environ["PVECTL_BENCH_AUTH"]
    ctx = ssl.create_default_context(cafile=args.ca)
    headers = {"Authorization": auth}
    if not args.keepalive:
        headers["Connection"] = "close"

    def one(conn: http.client.HTTPSConnection) -> int:
        conn.request("GET", args.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or not body:
            raise RuntimeError(f"{resp.status} {resp.reason}")
        return len(body)

    def new_conn() -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(args.host, args.port, context=ctx, timeout=30)

    conn = new_conn()
    size = one(conn)           # warm-up (and the answer's size)
    if not args.keepalive:
        conn.close()
    done = errors = 0
    start = time.perf_counter()
    deadline = start + args.seconds
    while done < args.max_requests and time.perf_counter() < deadline:
        try:
            if not args.keepalive:
                conn = new_conn()
            one(conn)
            done += 1
        except (OSError, http.client.HTTPException, RuntimeError):
            errors += 1
            conn.close()
            conn = new_conn()
        finally:
            if not args.keepalive:
                conn.close()
    elapsed = time.perf_counter() - start
    conn.close()
    sys.stdout.write(json.dumps({"requests": done, "errors": errors, "elapsed": elapsed, "bytes": size}) + "\n")
    return 0


# -- driver ------------------------------------------------------------------------------------


def start_server(vms: int, *, src: Path | None = None, no_answer_cache: bool = False,
                 pin: bool = True) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The simulator in a child process; `src`: run that tree's `pvectl` (the baseline)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    argv = [sys.executable, __file__, "--serve", "--vms", str(vms)]
    argv += ["--no-answer-cache"] if no_answer_cache else []
    argv += ["--no-pin"] if not pin else []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise SystemExit(f"the simulator did not start (exit {proc.returncode})")
    return proc, json.loads(line)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(info: dict[str, Any], path: str, *, keepalive: bool, conns: int, seconds: float,
            max_requests: int, client_cores: list[int]) -> tuple[float, int, int]:
    env = dict(os.environ, PVECTL_BENCH_AUTH=info["auth"])
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(k, None)
    argv = [sys.executable, __file__, "--client", "--host", info["host"], "--port", str(info["port"]),
            "--ca", info["ca"], "--path", path, "--seconds", str(seconds), "--max-requests", str(max_requests)]
    if keepalive:
        argv.append("--keepalive")
    if client_cores:
        argv += ["--cores", ",".join(map(str, client_cores))]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) for _ in range(conns)]
    rate = 0.0
    total = errors = size = 0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 60)
        if p.returncode != 0:
            raise SystemExit(f"a client failed (exit {p.returncode})")
        r = json.loads(out)
        rate += r["requests"] / r["elapsed"]
        total += r["requests"]
        errors += r["errors"]
        size = r["bytes"]
    return rate, errors, size


def stop_server(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """SIGTERM; the server's last line lists its handler times."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {"handled_ms": []}


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def unpack_baseline(ref: str, into: Path) -> Path:
    """`git archive <ref> src` of this repository, unpacked: the baseline's source tree."""
    repo = HERE.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", ref], check=True, capture_output=True,
                            text=True).stdout.strip()
    (into / "COMMIT").write_text(commit, encoding="ascii")
    return into / "src"


def throughput(label: str, info: dict[str, Any], proc: subprocess.Popen[str], paths: tuple[str, ...],
               args: argparse.Namespace, client_cores: list[int]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        for keepalive in (True, False):
            runs: list[float] = []
            busy: list[float] = []
            errors = size = 0
            for _ in range(args.runs):
                c0, w0 = cpu_seconds(proc.pid), time.monotonic()
                rate, err, size = measure(info, path, keepalive=keepalive, conns=args.conns, seconds=args.seconds,
                                          max_requests=args.max_requests, client_cores=client_cores)
                busy.append((cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0))
                runs.append(rate)
                errors += err
            med = statistics.median(runs)
            rows.append({"impl": label, "path": path, "keepalive": keepalive, "median": med, "runs": runs,
                         "errors": errors, "busy": statistics.median(busy), "size": size})
            print(f"{label:<28} GET {path.replace('/api2/json', ''):<28} keep-alive={'yes' if keepalive else 'no ':<3} "
                  f"median {med:6.0f} req/s  runs {' '.join(f'{x:.0f}' for x in runs)}  errors {errors}  "
                  f"({size / 1024:.0f} KiB, server CPU {statistics.median(busy):.0%})")
    return rows


def big_answers(label: str, args: argparse.Namespace, src: Path | None, no_answer_cache: bool,
                pin: bool) -> dict[str, Any]:
    """One request per second at `--big` guests: handler time (server side), round trip, memory."""
    proc, info = start_server(args.big, src=src, no_answer_cache=no_answer_cache, pin=pin)
    try:
        rss0 = rss_mib(proc.pid)
        ctx = ssl.create_default_context(cafile=info["ca"])
        conn = http.client.HTTPSConnection(info["host"], info["port"], context=ctx, timeout=120)
        trips: list[float] = []
        size = 0
        for _ in range(args.big_requests):
            t0 = time.perf_counter()
            conn.request("GET", PATHS[0], headers={"Authorization": info["auth"]})
            resp = conn.getresponse()
            body = resp.read()
            trips.append((time.perf_counter() - t0) * 1000)
            size = len(body)
            if resp.status != 200:
                raise SystemExit(f"{label}: {resp.status} {resp.reason}")
            time.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))
        conn.close()
        rss1 = rss_mib(proc.pid)
    finally:
        stats = stop_server(proc)
    handled = stats["handled_ms"][1:] or stats["handled_ms"]     # the first answer builds caches
    row = {"impl": label, "guests": info["vms"], "size": size, "rss0": rss0, "rss1": rss1,
           "wall": statistics.median(h[0] for h in handled), "cpu": statistics.median(h[1] for h in handled),
           "wall_max": max(h[0] for h in handled), "first": stats["handled_ms"][0][0],
           "trip": statistics.median(trips[1:] or trips), "answer_cache": info.get("answer_cache", False),
           "kept": stats.get("kept_bytes", 0) / 1024 / 1024}
    print(f"{label:<28} {info['vms']} guests: handler median {row['wall']:.1f} ms wall / {row['cpu']:.1f} ms CPU "
          f"(max {row['wall_max']:.1f}, first {row['first']:.1f}), round trip {row['trip']:.1f} ms, "
          f"{size / 1024:.0f} KiB, RSS {rss0:.0f} -> {rss1:.0f} MiB, kept between answers {row['kept']:.1f} MiB")
    return row


def record(rows: list[dict[str, Any]], big: list[dict[str, Any]], args: argparse.Namespace, vms: int,
           pinned: bool, baseline: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach section is written by the benchmark named in its title "
                           "(see bench/README.md for how to run them).\n", encoding="utf-8")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "",
        f"## Simulator throughput without an answer cache: GET /cluster/resources, {vms} guests (bench/bench_sim.py)",
        "",
        f"{when} · Python {platform.python_version()} · {os.cpu_count()} CPUs (load average {load} after; the "
        f"machine is shared, so runs vary) · server {'pinned to core ' + str(SERVER_CORE) if pinned else 'not pinned'}"
        f" · {args.conns} client connections (one process each{', on the other cores' if pinned else ''}) · "
        f"median of {args.runs} runs of {args.seconds:g} s · baseline: {baseline}, measured in the same run · "
        f"target >= {TARGET:g} req/s uncached",
        "",
        "Server CPU is the server process's CPU time over the run's wall time (1.0 = its core fully busy); "
        "below ~90% the clients or other load on the machine, not the simulator, set the pace, and "
        "req/s per server CPU-second estimates what the core would serve when saturated.",
        "",
        "| simulator | request | answer | keep-alive | median req/s | runs (req/s) | errors | server CPU | "
        "req/s per server CPU-second |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['impl']} | `GET {r['path'].replace('/api2/json', '')}` | {r['size'] / 1024:.0f} KiB | "
                     f"{'yes' if r['keepalive'] else 'no'} | {r['median']:.0f} | "
                     f"{', '.join(f'{x:.0f}' for x in r['runs'])} | {r['errors']} | {r['busy']:.0%} | "
                     f"{r['median'] / r['busy'] if r['busy'] else float('nan'):.0f} |")
    if big:
        lines += [
            "",
            f"{args.big:,} VMs, one `GET /cluster/resources` per second for {args.big_requests} s over one keep-alive "
            f"connection. Handler time: the server's request handler producing the answer (authentication, routing, "
            f"encoding; before the socket write), median over the requests after the first, which builds caches; "
            f"target < {BIG_TARGET_MS:g} ms. RSS: the server process before the first and after the last request. "
            f"Kept between answers: the answer cache's bytes (the baseline: one answer per second, up to 65) or "
            f"this tree's per-guest JSON fragments (bounded by the number of guests).",
            "",
            "| simulator | answer | handler median (wall) | handler median (CPU) | handler max | first answer | "
            "round trip median | RSS before -> after | kept between answers |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for b in big:
            lines.append(f"| {b['impl']} | {b['size'] / 1024 / 1024:.1f} MiB | {b['wall']:.1f} ms | "
                         f"{b['cpu']:.1f} ms | {b['wall_max']:.1f} ms | {b['first']:.1f} ms | {b['trip']:.1f} ms | "
                         f"{b['rss0']:.0f} -> {b['rss1']:.0f} MiB | {b['kept']:.1f} MiB |")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-answer-cache", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--host"), p.add_argument("--port", type=int), p.add_argument("--ca")
    p.add_argument("--path"), p.add_argument("--keepalive", action="store_true")
    p.add_argument("--cores", help=argparse.SUPPRESS)
    p.add_argument("--vms", type=int, default=500, help="guests in the simulated cluster (default 500)")
    p.add_argument("--runs", type=int, default=5, help="runs per measurement (default 5)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of one run (default 2)")
    p.add_argument("--max-requests", type=int, default=5000, help="requests per connection per run, at most")
    p.add_argument("--conns", type=int, default=3, help="client connections (default 3, pveproxy's workers)")
    p.add_argument("--baseline", default="main", help="git ref measured beside this tree (default main)")
    p.add_argument("--no-baseline", action="store_true", help="measure this tree only")
    p.add_argument("--big", type=int, default=10_000, help="guests for the large-answer run (default 10000; 0: skip)")
    p.add_argument("--big-requests", type=int, default=12, help="requests in the large-answer run (default 12)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server to one core")
    p.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = p.parse_args()
    if args.serve:
        return serve(args.vms, no_answer_cache=args.no_answer_cache, pin=not args.no_pin)
    if args.client:
        return client(args)

    cores = _cores()
    pinned = not args.no_pin
    client_cores = [c for c in cores if c != SERVER_CORE] if pinned else []
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []
    big: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pvectl-bench-baseline-") as tmp:
        impls: list[tuple[str, Path | None, bool, tuple[str, ...]]] = [
            ("this tree (no answer cache)", None, False, PATHS)]
        baseline = "none"
        if not args.no_baseline:
            src = unpack_baseline(args.baseline, Path(tmp))
            baseline = f"{args.baseline} @ {(Path(tmp) / 'COMMIT').read_text(encoding='ascii')}"
            impls = [(f"{args.baseline}, answer cache on", src, False, PATHS[:1]),
                     (f"{args.baseline}, answer cache off", src, True, PATHS[:1])] + impls
        vms = 0
        for label, src_dir, no_cache, paths in impls:
            proc, info = start_server(args.vms, src=src_dir, no_answer_cache=no_cache, pin=pinned)
            vms = info["vms"]
            try:
                rows += throughput(label, info, proc, paths, args, client_cores)
            finally:
                stop_server(proc)
        if args.big:
            for label, src_dir, no_cache, _ in impls:
                big.append(big_answers(label, args, src_dir, no_cache, pinned))
    if not args.no_record:
        record(rows, big, args, vms, pinned, baseline)
        print(f"appended to {RESULTS}")
    print(f"took {time.monotonic() - t0:.0f} s")
    ours = [r for r in rows if r["impl"].startswith("this tree")]
    ok = all(r["median"] >= TARGET for r in ours) and all(b["wall"] < BIG_TARGET_MS for b in big
                                                           if b["impl"].startswith("this tree"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
