"""Per-call overhead of library reads: `pve.version()` and `pve.vms.list()` over the API's own round trip.

    .venv/bin/python bench/bench_overhead.py                 # ~2-4 minutes; appends a section to bench/RESULTS.md
    .venv/bin/python bench/bench_overhead.py --calls 200 --no-record     # quick look

For each inventory size (14 VMs: 12 + 2 templates, the simulator's default; and 500 VMs: 498 + 2
templates) a simulator runs in its own process (`python -m pvectl.sim --bind 127.0.0.1 --port 0`), and
three clients in this process make `--calls` calls of each read:

- raw: `http.client.HTTPSConnection` on one kept-alive connection (TLS verified against the cluster CA,
  the token in the Authorization header), `GET /api2/json/version` and
  `GET /api2/json/cluster/resources?type=vm`, the body read in full, not decoded: the bare round trip.
  The time `json.loads` takes on that body is measured apart and shown beside it (every client decodes
  it, so it is part of every other client's overhead);
- pvectl: one `pvectl.Cluster.from_config(<the simulator's config>)`, `pve.version()` and
  `pve.vms.list()` (typed `VmSummary` records, sorted);
- proxmoxer: `ProxmoxAPI(..., token_name=..., verify_ssl=<CA>)`, `version.get()` and
  `cluster.resources.get(type="vm")`.

The clients take turns in blocks of `--block` calls (the order rotated every block), so load from other
work on the machine hits them alike. Overhead = a client's median minus raw's median; ratio = a client's
median over raw's. The simulator closes a keep-alive connection after 100 requests as pveproxy does;
every client reconnects then, so that cost is in every column alike.

Each call's CPU time in this process (`time.thread_time`) is recorded too: on a loaded machine the wall
times of the CPU-heavy clients stretch more than raw's (which mostly waits for the simulator), while
their CPU time does not.

Target: pvectl's median overhead over the bare round trip <= 2 ms for both
reads at both sizes. Exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_startup import RESULTS, record, start_sim  # noqa: E402 - shared with the start-up bench

TARGET_MS = 2.0
SIZES = ((12, 2), (498, 2))          # (VMs, templates): 14 and 500 guests
READS = ("version", "vms.list")
PATHS = {"version": "/api2/json/version", "vms.list": "/api2/json/cluster/resources?type=vm"}


class Raw:
    """The bare round trip: http.client on one kept-alive connection."""

    name = "raw"

    def __init__(self, host: str, port: int, ca: str, header: str) -> None:
        self.ctx = ssl.create_default_context(cafile=ca)
        self.conn = http.client.HTTPSConnection(host, port, context=self.ctx, timeout=30)
        self.headers = {"Authorization": header, "Accept": "application/json"}
        self.last_body = b""

    def call(self, read: str) -> None:
        self.conn.request("GET", PATHS[read], headers=self.headers)
        resp = self.conn.getresponse()
        self.last_body = resp.read()
        if resp.status != 200:
            raise SystemExit(f"raw {read}: {resp.status} {resp.reason}")

    def json_loads_time(self, runs: int = 200) -> float:
        """Median time of `json.loads` on the last answer (not part of the bare round trip)."""
        body = self.last_body
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            json.loads(body)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def close(self) -> None:
        self.conn.close()


class Pvectl:
    name = "pvectl"

    def __init__(self, config: Path) -> None:
        import pvectl

        self.pve = pvectl.Cluster.from_config(str(config))
        self.calls: dict[str, Callable[[], Any]] = {"version": self.pve.version, "vms.list": self.pve.vms.list}

    def call(self, read: str) -> None:
        self.calls[read]()

    def close(self) -> None:
        self.pve.close()


class Proxmoxer:
    name = "proxmoxer"

    def __init__(self, host: str, port: int, ca: str, token_id: str, secret: str) -> None:
        from proxmoxer import ProxmoxAPI  # type: ignore[import-untyped]

        user, _, token_name = token_id.partition("!")
        self.api = ProxmoxAPI(host, port=port, user=user, token_name=token_name, token_value=secret,
                              verify_ssl=ca, timeout=30)

    def call(self, read: str) -> None:
        if read == "version":
            self.api.version.get()
        else:
            self.api.cluster.resources.get(type="vm")

    def close(self) -> None:
        pass


def measure(clients: list[Any], read: str, calls: int, block: int,
            warmup: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall time and this process's CPU time of every call, per client."""
    for c in clients:
        for _ in range(warmup):
            c.call(read)
    wall: dict[str, list[float]] = {c.name: [] for c in clients}
    cpu: dict[str, list[float]] = {c.name: [] for c in clients}
    blocks = (calls + block - 1) // block
    clock, cpu_clock = time.perf_counter, time.thread_time
    for b in range(blocks):
        n = min(block, calls - b * block)
        order = clients[b % len(clients):] + clients[:b % len(clients)]
        for c in order:
            out, cpu_out = wall[c.name], cpu[c.name]
            call = c.call
            for _ in range(n):
                t0, c0 = clock(), cpu_clock()
                call(read)
                cpu_out.append(cpu_clock() - c0)
                out.append(clock() - t0)
    return wall, cpu


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def signed_ms(seconds: float) -> str:
    return ("+" if seconds >= 0 else "") + ms(seconds)


def run_size(vms: int, templates: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    import yaml

    with tempfile.TemporaryDirectory(prefix="pvectl-bench-overhead-") as tmp:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        proc, config = start_sim(Path(tmp) / "sim", vms, env, templates)
        try:
            cfg = yaml.safe_load(config.read_text())
            node = cfg["cluster"]["nodes"][0]
            host, port = node["host"], int(node.get("port", 8006))
            ca = cfg["tls"]["ca_file"]
            lines = [ln.strip() for ln in Path(cfg["credentials"]["token_file"]).read_text().splitlines() if ln.strip()]
            token_id, secret = lines[0], lines[-1]
            header = f"PVEAPIToken={token_id}={secret}"
            raw = Raw(host, port, ca, header)
            clients: list[Any] = [raw, Pvectl(config)]
            if not args.no_proxmoxer:
                clients.append(Proxmoxer(host, port, ca, token_id, secret))
            rows = []
            try:
                for read in READS:
                    times, cpu = measure(clients, read, args.calls, args.block, args.warmup)
                    base = statistics.median(times["raw"])
                    cpu_base = statistics.median(cpu["raw"])
                    json_med = raw.json_loads_time()
                    for c in clients:
                        med = statistics.median(times[c.name])
                        p90 = statistics.quantiles(times[c.name], n=10)[-1]
                        cpu_med = statistics.median(cpu[c.name])
                        rows.append({"guests": vms + templates, "read": read, "client": c.name, "median": med,
                                     "p90": p90, "over": med - base, "ratio": med / base, "cpu": cpu_med,
                                     "cpu_over": cpu_med - cpu_base,
                                     "json": json_med if c.name == "raw" else None})
                        print(f"{vms + templates:>4} guests  {read:<9} {c.name:<10} median {ms(med)} ms  "
                              f"p90 {ms(p90)} ms  over raw {signed_ms(med - base)} ms  x{med / base:.2f}  "
                              f"client CPU {ms(cpu_med)} ms ({signed_ms(cpu_med - cpu_base)})"
                              + (f"  (json.loads {ms(json_med)} ms)" if c.name == "raw" else ""), flush=True)
            finally:
                for c in clients:
                    c.close()
            return rows
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000, help="timed calls per read, client and size (default 1000)")
    ap.add_argument("--block", type=int, default=10, help="calls per turn of one client (default 10)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed calls of each read first (default 20)")
    ap.add_argument("--no-proxmoxer", action="store_true", help="leave proxmoxer out")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--note", default="", help="a sentence added to the recorded section")
    ap.add_argument("--src", metavar="DIR", help="import pvectl's client from DIR (another revision's src/, "
                    "e.g. from `git archive`); the simulator always runs from this tree")
    args = ap.parse_args()
    if args.src:
        sys.path.insert(0, str(Path(args.src).resolve()))
    load_before = os.getloadavg()
    rows = [r for vms, templates in SIZES for r in run_size(vms, templates, args)]
    load_after = os.getloadavg()
    missed = [r for r in rows if r["client"] == "pvectl" and r["over"] * 1000 > TARGET_MS]
    for r in missed:
        print(f"target missed: {r['read']} with {r['guests']} guests: +{ms(r['over'])} ms", file=sys.stderr)
    if not args.no_record:
        import proxmoxer

        head = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False).stdout.strip() or "?"
        if args.src:
            head = f"pvectl from {args.src}"
        out = [f"## Per-call overhead of library reads (bench_overhead.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
               f"{args.calls} calls per read, client and size, in blocks of {args.block} taking turns; simulator in its "
               f"own process (3 nodes); Python {platform.python_version()}, proxmoxer {proxmoxer.__version__}, "
               f"tree {head}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
               f"({os.cpu_count()} cores). Overhead = median minus raw's median; ratio = median / raw's median. "
               f"Target: pvectl <= +{TARGET_MS:g} ms.", "",
               "| guests | read | client | median ms | p90 ms | overhead ms | ratio | client CPU ms (over raw) |",
               "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            name = r["client"] + (f" (json.loads alone: {ms(r['json'])} ms)" if r["json"] is not None else "")
            out.append(f"| {r['guests']} | `{r['read']}` | {name} | {ms(r['median'])} | {ms(r['p90'])} | "
                       f"{signed_ms(r['over'])} | {r['ratio']:.2f} | "
                       f"{ms(r['cpu'])} ({signed_ms(r['cpu_over'])}) |")
        out.append("")
        out.append("Target " + ("met." if not missed else "missed: " + ", ".join(
            f"{r['read']} at {r['guests']} guests (+{ms(r['over'])} ms)" for r in missed) + "."))
        if args.note:
            out += ["", args.note]
        record(out)
        print(f"appended to {RESULTS}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
