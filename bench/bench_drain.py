"""Draining 30 running VMs off one node: `pvectl node drain` against the seed's way, as ratios to the lower
bound at Proxmox's concurrency.

    .venv/bin/python bench/bench_drain.py                  # ~1 minute; appends a section to bench/RESULTS.md
    .venv/bin/python bench/bench_drain.py --no-record      # quick look

Each way gets a fresh in-process simulator (3 nodes, `--time-scale`, default 0.2) holding the same 30
running VMs on pve1 (1, 2 and 4 GiB, disks on the shared Ceph pool) and nothing on pve2 and pve3 (48 GiB
each, so one target alone cannot take them all). datacenter.cfg sets `max_workers` to `--workers`
(default 4, Proxmox's fallback when it is unset: pve-ha-manager Env/PVE2.pm::get_max_workers).

(a) pvectl: `pvectl --config CFG -o json node drain pve1 --yes` as a process: plan, then `max_workers`
    migrations at once; wall clock of the whole process, start-up included.
(b) the seed's way, a bash loop with the seed's curl: for each VM, the seed's pre-migration resource
    check (GET /nodes/{target}/status for both targets; the one with more free memory is taken), the
    live-migration POST, then the seed's `poll_task` (every 5 s x time scale, the seed's interval at
    this scale); one VM after the other. `pass show` is a shell function printing the simulator's token
    file (pvectl reads the same file).
(c) the lower bound at Proxmox's concurrency: the migration tasks' own durations (start to end, from
    the simulator's task engine, no polling) of run (a), packed onto `--workers` slots:
    max(longest task, sum of tasks / workers). The simulator gives each live migration its own
    1100 MiB/s link (no shared bottleneck), so concurrency is the only lever.

After each way the simulator's state is checked: all 30 VMs running on pve2/pve3, and on each target
host memory + the maxmem of its VMs within its total.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_provision import SEED_SCRIPT, TaskTimes  # noqa: E402
from bench_startup import pvectl_argv, record  # noqa: E402

GIB = 1024**3
COUNT = 30
SIZES = (1, 2, 4)
TARGETS = ("pve2", "pve3")
TARGET_TOTAL = 48 * GIB

SEED_LOOP = r'''#!/usr/bin/env bash
set -u
CA=__CA__
TOKEN=__TOKEN__
INTERVAL=__INTERVAL__
TIMEOUT=__TIMEOUT__
node_url() {
  case "$1" in
__NODE_CASES__
  esac
}
AUTH_PASS_PATH=proxmox/api-token
pass() { cat "$TOKEN"; }   # stands in for `pass show PATH`: the token file holds the same two lines
__POLL_TASK__
free_mem() {   # the seed's pre-migration resource check
  curl -s --cacert "$CA" \
    -H "Authorization: PVEAPIToken=$(pass show $AUTH_PASS_PATH | head -1)=$(pass show $AUTH_PASS_PATH | tail -1)" \
    "$(node_url $1)/api2/json/nodes/$1/status" \
    | jq -r '.data.memory.total - .data.memory.used'
}

for id in __VMIDS__; do
  A=$(free_mem pve2); B=$(free_mem pve3)
  if [ "$A" -ge "$B" ]; then T=pve2; else T=pve3; fi
  UPID=$(curl -s --cacert "$CA" -X POST -d "target=$T&online=1" \
    -H "Authorization: PVEAPIToken=$(pass show $AUTH_PASS_PATH | head -1)=$(pass show $AUTH_PASS_PATH | tail -1)" \
    "$(node_url pve1)/api2/json/nodes/pve1/qemu/$id/migrate" | jq -r '.data')
  case "$UPID" in UPID:*) ;; *) echo "migration of $id not started"; exit 1;; esac
  poll_task pve1 "$UPID" "$TIMEOUT" "$INTERVAL" || exit 1
done
'''


def new_sim(time_scale: float, workers: int) -> tuple[Any, TaskTimes]:
    from pvectl.sim.cluster import Cluster
    from pvectl.sim.models import VM, Volume

    sim = Cluster(nodes=3, vms=0, templates=0, bind="127.0.0.1", port=0, time_scale=time_scale).start()
    for t in TARGETS:
        sim.set_node(t, mem_total=TARGET_TOTAL)
    b = sim.backend
    with b.mu:
        b.state.datacenter["max_workers"] = workers
        for i in range(COUNT):
            vmid, volid = 200 + i, f"ceph-vm:vm-{200 + i}-disk-0"
            vm = VM(vmid=vmid, node="pve1", created_at=time.time() - 3600,
                    config={"name": f"app-{vmid}", "memory": str(SIZES[i % 3] * 1024), "cores": 1, "sockets": 1,
                            "scsi0": f"{volid},size=8G", "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0"})
            b.state.volumes[volid] = Volume(volid, 8 * GIB, vmid, None)
            n = b.state.nodes["pve1"]
            n.next_pid += 17
            vm.status = vm.qmpstatus = vm.prev_status = "running"
            vm.pid, vm.started_at, vm.mem_fraction = n.next_pid, time.time() - 600, 0.5
            b.state.vms[vmid] = vm
        b.changed()
    return sim, TaskTimes(b.engine)


def check(sim: Any) -> None:
    b = sim.backend
    with b.mu:
        vms = [v for v in b.state.vms.values() if 200 <= v.vmid < 200 + COUNT]
        bad = [v.vmid for v in vms if v.node not in TARGETS or v.status != "running"]
        if bad:
            raise SystemExit(f"not drained: {bad}")
        for t in TARGETS:
            n = b.state.nodes[t]
            used = n.mem_host_used + sum(int(v.config["memory"]) * 1024**2 for v in vms if v.node == t)
            if used > n.mem_total:
                raise SystemExit(f"{t} over its memory: {used / GIB:.1f} of {n.mem_total / GIB:.1f} GiB")


def run_pvectl(time_scale: float, workers: int, root: Path) -> dict[str, Any]:
    sim, times = new_sim(time_scale, workers)
    try:
        argv = pvectl_argv() + ["--config", str(sim.config_path), "-o", "json", "node", "drain", "pve1", "--yes",
                                "--plan-file", str(root / "plan.json")]
        env = dict(os.environ, PVECTL_AUDIT_LOG=str(root / "audit.jsonl"))
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
        wall = time.monotonic() - t0
        if p.returncode != 0:
            raise SystemExit(f"pvectl node drain failed ({p.returncode}): {p.stdout[-2000:]} {p.stderr[-2000:]}")
        check(sim)
        migs = [u for u, t in times.type.items() if t == "qmigrate" and u in times.end]
        durations = [times.duration(u) for u in migs]
        return {"wall": wall, "durations": durations, "parallel": json.loads(p.stdout)["parallel"]}
    finally:
        sim.stop()


def run_seed(time_scale: float, workers: int, root: Path) -> dict[str, Any]:
    sim, times = new_sim(time_scale, workers)
    try:
        cases = "\n".join(f'    {n}) echo "https://{h}:{p}";;' for n, (h, p) in sim.nodes.items())
        # the seed's poll_task exactly as the provisioning benchmark runs it
        poll = SEED_SCRIPT[SEED_SCRIPT.index("poll_task() {"):SEED_SCRIPT.index("SSHKEYS=")]
        script = SEED_LOOP.replace("__POLL_TASK__", poll)
        for k, v in {"__CA__": str(sim.ca_path), "__TOKEN__": str(sim.token_path),
                     "__INTERVAL__": f"{5 * time_scale:g}", "__TIMEOUT__": "600", "__NODE_CASES__": cases,
                     "__VMIDS__": " ".join(str(200 + i) for i in range(COUNT))}.items():
            script = script.replace(k, v)
        path = root / "seed-drain.sh"
        path.write_text(script)
        t0 = time.monotonic()
        p = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=1800, check=False)
        wall = time.monotonic() - t0
        if p.returncode != 0:
            raise SystemExit(f"seed loop failed ({p.returncode}): {p.stdout[-2000:]} {p.stderr[-2000:]}")
        check(sim)
        migs = [u for u, t in times.type.items() if t == "qmigrate" and u in times.end]
        return {"wall": wall, "durations": [times.duration(u) for u in migs]}
    finally:
        sim.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-scale", type=float, default=0.2,
                    help="PVE seconds -> seconds (default 0.2: a 2 GiB live migration takes ~0.7 s)")
    ap.add_argument("--workers", type=int, default=4, help="datacenter.cfg max_workers (default 4)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a = run_pvectl(args.time_scale, args.workers, root)
        b = run_seed(args.time_scale, args.workers, root)
    d = a["durations"]
    bound = max(max(d), sum(d) / args.workers)
    serial = sum(b["durations"])
    rows = [
        ("(a) pvectl node drain pve1 --yes", a["wall"]),
        (f"(b) the seed's way: resource check, migrate, poll_task every {5 * args.time_scale:g} s, one at a time",
         b["wall"]),
        (f"(c) lower bound at {args.workers} migrations at once", bound),
    ]
    lines = [f"## Draining {COUNT} running VMs off one node: pvectl, the seed's way, the lower bound "
             "(bench/bench_drain.py)", "",
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · Python {platform.python_version()} · {os.cpu_count()} CPUs "
             f"(load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}) · time scale {args.time_scale:g} · "
             f"max_workers {args.workers} · {COUNT} VMs (1/2/4 GiB, shared storage) from pve1 onto pve2 + pve3 "
             "(48 GiB each)", "",
             "| way | wall s | x lower bound |", "|---|---|---|"]
    lines += [f"| {name} | {secs:.2f} | {secs / bound:.2f} |" for name, secs in rows]
    lines += ["", f"Migration tasks (run a): {len(d)}, {min(d):.2f}-{max(d):.2f} s each, {sum(d):.2f} s in sum; "
              f"pvectl ran {a['parallel']} at a time. The seed's tasks summed to {serial:.2f} s; its wall clock adds "
              f"{b['wall'] - serial:.2f} s of polling and checks. pvectl / seed: {a['wall'] / b['wall']:.2f}. "
              "After both, all 30 VMs ran on pve2/pve3 within each node's memory."]
    print("\n".join(lines))
    if not args.no_record:
        record(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
