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
median of `--runs` runs is reported. Target: >= 300 req/s on one core.
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
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PATHS = ("/api2/json/cluster/resources", "/api2/json/cluster/resources?type=vm")
TARGET = 300.0
SERVER_CORE = 0


def _cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


# -- server process -----------------------------------------------------------------------------


def serve(vms: int) -> int:
    os.sched_setaffinity(0, {SERVER_CORE})
    from pvectl.sim.cluster import Cluster

    stop = False

    def _on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_term)
    with Cluster(nodes=3, vms=vms, templates=2, bind="127.0.0.1", port=0, time_scale=0.05) as sim:
        host, port = sim.nodes["pve1"]
        info = {"host": host, "port": port, "ca": str(sim.ca_path),
                "auth": f"PVEAPIToken={sim.token_id}={sim.token_secret}",
                "vms": len(sim.backend.state.vms)}
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop:
            time.sleep(0.1)
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


def start_server(vms: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--vms", str(vms)], stdout=subprocess.PIPE,
                            text=True)
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


def record(rows: list[dict[str, Any]], args: argparse.Namespace, info: dict[str, Any], sizes: dict[str, int],
           pinned: bool) -> None:
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach section is written by the benchmark named in its title "
                           "(see bench/README.md for how to run them).\n", encoding="utf-8")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "",
        f"## Simulator throughput: GET /cluster/resources, {info['vms']} guests (bench/bench_sim.py)",
        "",
        f"{when} · Python {platform.python_version()} · {os.cpu_count()} CPUs (load average {load}) · server "
        f"{'pinned to core ' + str(SERVER_CORE) if pinned else 'not pinned'} · {args.conns} client connections "
        f"(one process each{', on the other cores' if pinned else ''}) · median of {args.runs} runs of "
        f"{args.seconds:g} s · target >= {TARGET:g} req/s on one core",
        "",
        "Server CPU is the server process's CPU time over the run's wall time (1.0 = its core fully busy); "
        "below ~90% the clients or other load on the machine, not the simulator, set the pace, and "
        "req/s per server CPU-second estimates what the core would serve when saturated.",
        "",
        "| request | answer | keep-alive | median req/s | runs (req/s) | errors | server CPU | req/s per server CPU-second | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| `GET {r['path'].replace('/api2/json', '')}` | {sizes[r['path']] / 1024:.0f} KiB | "
                     f"{'yes' if r['keepalive'] else 'no'} | {r['median']:.0f} | "
                     f"{', '.join(f'{x:.0f}' for x in r['runs'])} | {r['errors']} | {r['busy']:.0%} | "
                     f"{r['median'] / r['busy'] if r['busy'] else float('nan'):.0f} | "
                     f"{'met' if r['median'] >= TARGET else 'MISSED'} |")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--host"), p.add_argument("--port", type=int), p.add_argument("--ca")
    p.add_argument("--path"), p.add_argument("--keepalive", action="store_true")
    p.add_argument("--cores", help=argparse.SUPPRESS)
    p.add_argument("--vms", type=int, default=500, help="guests in the simulated cluster (default 500)")
    p.add_argument("--runs", type=int, default=5, help="runs per measurement (default 5)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of one run (default 2)")
    p.add_argument("--max-requests", type=int, default=5000, help="requests per connection per run, at most")
    p.add_argument("--conns", type=int, default=3, help="client connections (default 3, pveproxy's workers)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server to one core")
    p.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = p.parse_args()
    if args.serve:
        return serve(args.vms)
    if args.client:
        return client(args)

    cores = _cores()
    pinned = not args.no_pin
    client_cores = [c for c in cores if c != SERVER_CORE] if pinned else []
    t0 = time.monotonic()
    proc, info = start_server(args.vms)
    rows: list[dict[str, Any]] = []
    sizes: dict[str, int] = {}
    try:
        print(f"simulator: {info['vms']} guests on {info['host']}:{info['port']}, server core {SERVER_CORE}, "
              f"client cores {client_cores or 'any'}")
        for path in PATHS:
            for keepalive in (True, False):
                runs: list[float] = []
                busy: list[float] = []
                errors = 0
                for _ in range(args.runs):
                    c0, w0 = cpu_seconds(proc.pid), time.monotonic()
                    rate, err, size = measure(info, path, keepalive=keepalive, conns=args.conns,
                                              seconds=args.seconds, max_requests=args.max_requests,
                                              client_cores=client_cores)
                    busy.append((cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0))
                    runs.append(rate)
                    errors += err
                    sizes[path] = size
                med = statistics.median(runs)
                rows.append({"path": path, "keepalive": keepalive, "median": med, "runs": runs, "errors": errors,
                             "busy": statistics.median(busy)})
                print(f"GET {path.replace('/api2/json', ''):<28} keep-alive={'yes' if keepalive else 'no ':<3} "
                      f"median {med:7.0f} req/s  runs {' '.join(f'{x:.0f}' for x in runs)}  errors {errors}  "
                      f"({size / 1024:.0f} KiB, server CPU {statistics.median(busy):.0%})  {'met' if med >= TARGET else 'MISSED'} target {TARGET:g}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    if not args.no_record:
        record(rows, args, info, sizes, pinned)
        print(f"appended to {RESULTS}")
    print(f"took {time.monotonic() - t0:.0f} s")
    return 0 if all(r["median"] >= TARGET for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
