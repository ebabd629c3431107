"""Provisioning 20 VMs from one template, four ways in one run; and how late `Task.wait()` notices a task's end.

    .venv/bin/python bench/bench_provision.py              # ~5 minutes; appends a section to bench/RESULTS.md
    .venv/bin/python bench/bench_provision.py --count 6 --lag-tasks 12 --no-record     # quick look

Part 1 - provisioning `--count` VMs (default 20) from template 9000 (`ubuntu-24.04-cloud`, 32 GiB disk, on
pve1) on a 3-node simulator at `--time-scale` (default 0.05). Each way gets a fresh simulator with the
same generated inventory, and the token comes from a real `pass` store (throwaway GNUPGHOME):

(a) pvectl: `pvectl vm clone 9000 web --count N --name-pattern web-{n} --cores 2 --memory 2048 --ip dhcp
    --ciuser ubuntu --ssh-keys KEYS --start` (full clones, the default), once with its default limits
    (2 clone tasks per node and per storage), once with the limits raised (`--max-per-node N
    --max-per-storage N`; provision_many's 8 worker threads still cap it at 8) and once with
    `--max-per-storage 1`; wall clock of the whole process, start-up included;
(b) the seed: a bash loop, one VM after the other: clone with the seed's curl, the seed's `poll_task`,
    the post-clone config PUT (every field with `--data-urlencode`, sshkeys pre-encoded with
    `jq -sRr @uri` as the seed says), start, `poll_task`. The seed polls every 5 s against real task
    durations; against a simulator at time scale s the interval is 5*s (0.25 s at 0.05) to keep the
    same ratio. `poll_task` counts its timeout in polls instead of seconds (bash arithmetic is integer
    only; the interval is fractional) - nothing else is changed;
(c) the lower bound: ONE VM's chain (clone POST, clone task, config PUT, start POST, start task) run
    in-process with instant completion detection (the simulator's own task-done event, no polling),
    median of `--chain-runs`, and the time one template disk takes on local-lvm alone, from the
    simulator's storage throughput. The simulator shares a storage's write throughput among the copies
    in flight onto it, so the N disks need N times that however many clones run at once (see
    `lower_bounds`). For every pvectl run the simulator's accounting also gives how long local-lvm sat
    idle between its first and last copy, and when the first / median VM was running.

Part 2 - completion-detection lag: `--lag-tasks` tasks (default 30, mixed start / shutdown / full clone
/ disk resize) on an in-process simulator; the task engine is wrapped so that the moment each task
finishes is taken with time.monotonic(); the lag is the time from then until `Task(cluster,
upid).wait()` returns. Once one task at a time (sequential) and once all at once (concurrent, one
waiting thread each). Polls per task come from `TaskResult.polls` (each poll is one GET of the task
status). Target: median lag < 250 ms.

Targets: pvectl within 1.3x of the lower bound; median detection lag < 250 ms. Exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import platform
import shutil
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_startup import (
    PASS_PATH,
    make_pass_store,
    pct,
    pvectl_argv,
    record,
    write_pass_config,
)

TEMPLATE = 9000
STORAGE = "local-lvm"
WORKERS = 3                 # pveproxy workers per node (the simulator's, like PVE)
POOL = 8                    # provision_many's worker threads (max_workers)
TARGET_RATIO = 1.3
LAG_TARGET_MS = 250.0
SECRET = "5f0c6a8e-8d7b-4f7e-9c2a-3b1d2e4f6a70"   # one token secret shared by every simulator of the run


def fake_ssh_key() -> str:
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes(range(32))
    return "ssh-ed25519 " + base64.b64encode(blob).decode() + " bench@pvectl\n"


# -- an instrumented in-process simulator ----------------------------------------------------------


class TaskTimes:
    """Wraps the simulator's task engine: monotonic start and end of every task."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.type: dict[str, str] = {}
        orig_start, orig_run = engine.start, engine._run

        def start(node: str, dtype: str, *a: Any, **kw: Any) -> str:
            t0 = time.monotonic()
            upid = orig_start(node, dtype, *a, **kw)
            self.start[upid] = t0
            self.type[upid] = dtype
            return upid

        def run(task: Any, worker: Any) -> None:
            try:
                orig_run(task, worker)
            finally:
                self.end[task.upid] = time.monotonic()

        engine.start = start
        engine._run = run      # looked up on the instance when the worker thread starts

    def duration(self, upid: str) -> float:
        return self.end[upid] - self.start[upid]

    def wait(self, upid: str, timeout: float = 120) -> float:
        """Instant detection: the engine's own done event. Returns the end time."""
        task = self.engine.get(upid)
        if task is not None and not task.done.wait(timeout):
            raise SystemExit(f"task {upid} did not finish")
        while upid not in self.end:          # set just after done (same thread)
            time.sleep(0.0005)
        return self.end[upid]


def new_sim(root: Path, name: str, vms: int, time_scale: float) -> tuple[Any, TaskTimes]:
    from pvectl.sim.cluster import TOKEN_ID, Cluster

    sd = root / name
    sd.mkdir()
    (sd / "token").write_text(f"{TOKEN_ID}\n{SECRET}\n", encoding="utf-8")   # reused by the Cluster
    os.chmod(sd / "token", 0o600)
    sim = Cluster(nodes=3, vms=vms, templates=2, bind="127.0.0.1", port=0, time_scale=time_scale,
                  state_dir=sd).start()
    return sim, TaskTimes(sim.backend.engine)


def free_vmids(sim: Any, n: int, start: int = 100) -> list[int]:
    used = set(sim.backend.state.vms)
    out, v = [], start
    while len(out) < n:
        if v not in used:
            out.append(v)
        v += 1
    return out


def check_made(sim: Any, names: list[str]) -> int:
    """How many of `names` exist as running, configured VMs (cores 2, memory 2048, ciuser ubuntu)."""
    ok = 0
    for vm in sim.backend.state.vms.values():
        c = vm.config
        if c.get("name") in names and vm.status == "running" and str(c.get("cores")) == "2" \
                and str(c.get("memory")) == "2048" and c.get("ciuser") == "ubuntu" and c.get("sshkeys"):
            ok += 1
    return ok


# -- (a) pvectl -------------------------------------------------------------------------------------


def run_pvectl(sim: Any, times: TaskTimes, root: Path, env: dict[str, str], count: int, keys: Path,
               extra: list[str], tag: str) -> dict[str, Any]:
    cfg = root / f"pass-{tag}.yaml"
    write_pass_config(sim.config_path, cfg)
    argv = pvectl_argv() + ["--config", str(cfg), "-o", "json", "vm", "clone", str(TEMPLATE), "web",
                            "--count", str(count), "--name-pattern", "web-{n}", "--cores", "2", "--memory",
                            "2048", "--ip", "dhcp", "--ciuser", "ubuntu", "--ssh-keys", str(keys), "--start",
                            *extra]
    seq0 = sim.summary()["requests"]
    t0 = time.monotonic()
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"pvectl vm clone failed ({p.returncode}):\n{p.stderr[-3000:]}")
    names = [f"web-{i}" for i in range(1, count + 1)]
    made = check_made(sim, names)
    clones = [u for u, t in times.type.items() if t == "qmclone" and u in times.end]
    running = sorted(times.end[u] - t0 for u, t in times.type.items() if t == "qmstart" and u in times.end)
    busy, window = storage_busy(sim, sim.backend.time_scale)
    return {"wall": wall, "made": made, "requests": sim.summary()["requests"] - seq0,
            "kinds": request_kinds(sim, seq0), "clone_durations": [times.duration(u) for u in clones],
            "max_parallel_clones": max_overlap([(times.start[u], times.end[u]) for u in clones]),
            "first_running": running[0], "median_running": statistics.median(running),
            "storage_busy": busy, "storage_window": window}


def request_kinds(sim: Any, since: int) -> dict[str, int]:
    """API requests after sequence number `since`, by kind."""
    out: dict[str, int] = {}
    for e in sim.requests_log():
        if e["seq"] <= since:
            continue
        path = e["path"]
        if "/tasks/" in path:
            kind = "task " + path.rsplit("/", 1)[-1]
        elif path.endswith("/cluster/resources"):
            kind = "cluster/resources"
        else:
            kind = path.rsplit("/", 1)[-1]
            kind = {"clone": "clone", "config": "config", "start": "start"}.get(kind, kind)
        key = f"{e['method']} {kind}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


# -- (b) the seed's loop ----------------------------------------------------------------------------


SEED_SCRIPT = r'''
set -u
AUTH_PASS_PATH=__PASS_PATH__
CA=__CA__
TPL_NODE=__TPL_NODE__
TPL=__TPL__
STORAGE=__STORAGE__
INTERVAL=__INTERVAL__
TIMEOUT=__TIMEOUT__
node_url() {
  case "$1" in
__NODE_CASES__
  esac
}

poll_task() {
  local node="$1" upid="$2" timeout="${3:-120}" interval="${4:-5}"
  local elapsed=0
  while [ "$elapsed" -lt "$timeout" ]; do
    STATUS=$(curl -s --cacert "$CA" \
      -H "Authorization: PVEAPIToken=$(pass show $AUTH_PASS_PATH | head -1)=$(pass show $AUTH_PASS_PATH | tail -1)" \
      "$(node_url $node)/api2/json/nodes/$node/tasks/$upid/status" \
      | jq -r '.data.status')
    if [ "$STATUS" = "stopped" ]; then
      EXIT=$(curl -s --cacert "$CA" \
        -H "Authorization: PVEAPIToken=$(pass show $AUTH_PASS_PATH | head -1)=$(pass show $AUTH_PASS_PATH | tail -1)" \
        "$(node_url $node)/api2/json/nodes/$node/tasks/$upid/status" \
        | jq -r '.data.exitstatus')
      if [ "$EXIT" = "OK" ]; then
        echo "Task completed successfully"
        return 0
      else
        echo "Task failed: $EXIT"
        return 1
      fi
    fi
    sleep "$interval"
    elapsed=$((elapsed + 1))   # counted in polls: the interval is fractional here
  done
  echo "Task timed out after $elapsed polls (UPID: $upid)"
  return 2
}

SSHKEYS=$(jq -sRr @uri < __KEYS__)
n=0
for id in __VMIDS__; do
  n=$((n + 1))
  UPID=$(curl -s --cacert "$CA" -X POST \
    -H "Authorization: PVEAPIToken=$(pass show $AUTH_PASS_PATH | head -1)=$(pass show $AUTH_PASS_PATH | tail -1)" \
    -d "newid=$id&name=web-$n&full=1&storage=$STORAGE" \
    "$(node_url $TPL_NODE)/api2/json/nodes/$TPL_NODE/qemu/$TPL/clone" | jq -r '.data')
  case "$UPID" in UPID:*) ;; *) echo "clone of $id not started"; exit 1;; esac
  poll_task "$TPL_NODE" "$UPID" "$TIMEOUT" "$INTERVAL" || exit 1
  OUT=$(curl -s --cacert "$CA" -X PUT \
    -H "Authorization: PVEAPIToken=$(pass show $AUTH_PASS_PATH | head -1)=$(pass show $AUTH_PASS_PATH | tail -1)" \
    --data-urlencode "cores=2" --data-urlencode "memory=2048" --data-urlencode "net0=virtio,bridge=vmbr0" \
    --data-urlencode "ipconfig0=ip=dhcp" --data-urlencode "ciuser=ubuntu" --data-urlencode "sshkeys=$SSHKEYS" \
    "$(node_url $TPL_NODE)/api2/json/nodes/$TPL_NODE/qemu/$id/config")
  [ "$OUT" = '{"data":null}' ] || { echo "config of $id failed: $OUT"; exit 1; }
  UPID=$(curl -s --cacert "$CA" -X POST \
    -H "Authorization: PVEAPIToken=$(pass show $AUTH_PASS_PATH | head -1)=$(pass show $AUTH_PASS_PATH | tail -1)" \
    "$(node_url $TPL_NODE)/api2/json/nodes/$TPL_NODE/qemu/$id/status/start" | jq -r '.data')
  case "$UPID" in UPID:*) ;; *) echo "start of $id not started"; exit 1;; esac
  poll_task "$TPL_NODE" "$UPID" "$TIMEOUT" "$INTERVAL" || exit 1
done
'''


def run_seed(sim: Any, times: TaskTimes, root: Path, env: dict[str, str], count: int, keys: Path,
             interval: float) -> dict[str, Any]:
    vmids = free_vmids(sim, count)
    cases = "\n".join(f'    {n}) echo "https://{h}:{p}";;' for n, (h, p) in sim.nodes.items())
    script = SEED_SCRIPT
    for k, v in {"__PASS_PATH__": PASS_PATH, "__CA__": str(sim.ca_path), "__TPL_NODE__": "pve1",
                 "__TPL__": str(TEMPLATE), "__STORAGE__": STORAGE, "__INTERVAL__": f"{interval:g}",
                 "__TIMEOUT__": str(int(300 / 5)), "__NODE_CASES__": cases, "__KEYS__": str(keys),
                 "__VMIDS__": " ".join(map(str, vmids))}.items():
        script = script.replace(k, v)
    path = root / "seed-loop.sh"
    path.write_text(script, encoding="utf-8")
    seq0 = sim.summary()["requests"]
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"the seed loop failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    ok = p.stdout.count("Task completed successfully")
    if ok != 2 * count:
        raise SystemExit(f"the seed loop reported {ok} completed tasks, expected {2 * count}")
    names = [f"web-{i}" for i in range(1, count + 1)]
    # what the seed spends after tasks have ended: wall time minus the sum of its tasks' durations
    task_time = sum(times.duration(u) for u in times.end)
    return {"wall": wall, "made": check_made(sim, names), "requests": sim.summary()["requests"] - seq0,
            "kinds": request_kinds(sim, seq0), "task_time": task_time}


# -- (c) one chain with instant detection -----------------------------------------------------------


class Api:
    """A keep-alive HTTPS client to one node (stdlib), for the in-process measurements."""

    def __init__(self, sim: Any, node: str) -> None:
        host, port = sim.nodes[node]
        self.conn = http.client.HTTPSConnection(host, port, context=ssl.create_default_context(cafile=str(sim.ca_path)),
                                                timeout=60)
        self.auth = f"PVEAPIToken={sim.token_id}={sim.token_secret}"

    def call(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        body = urllib.parse.urlencode(params or {}) if params else None
        headers = {"Authorization": self.auth}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, "/api2/json" + path, body=body, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise SystemExit(f"{method} {path}: {r.status} {r.reason}")
        return json.loads(data)["data"]


def run_chain(sim: Any, times: TaskTimes, vmid: int, name: str, sshkeys: str) -> dict[str, float]:
    api = Api(sim, "pve1")
    base = f"/nodes/pve1/qemu/{vmid}"
    t0 = time.monotonic()
    upid = api.call("POST", f"/nodes/pve1/qemu/{TEMPLATE}/clone",
                    {"newid": vmid, "name": name, "full": 1, "storage": STORAGE})
    t1 = time.monotonic()
    end_clone = times.wait(upid)
    t2 = time.monotonic()
    api.call("PUT", base + "/config", {"cores": 2, "memory": 2048, "net0": "virtio,bridge=vmbr0",
                                       "ipconfig0": "ip=dhcp", "ciuser": "ubuntu", "sshkeys": sshkeys})
    t3 = time.monotonic()
    upid2 = api.call("POST", base + "/status/start")
    t4 = time.monotonic()
    end_start = times.wait(upid2)
    api.conn.close()
    return {"post_clone": t1 - t0, "clone": end_clone - times.start[upid], "put_config": t3 - t2,
            "post_start": t4 - t3, "start": end_start - times.start[upid2], "chain": end_start - t0,
            "detect": (t2 - end_clone)}


def template_disk_size(sim: Any) -> int:
    """Bytes of the template's scsi0 volume (what every full clone copies)."""
    volid = str(sim.backend.state.vms[TEMPLATE].config["scsi0"]).split(",", 1)[0]
    return sim.backend.state.volumes[f"pve1/{volid}"].size


def storage_copy_time(sim: Any, size: int, time_scale: float) -> tuple[float, int]:
    """Seconds (wall clock at `time_scale`) that one disk of `size` bytes takes on STORAGE when it has the
    storage to itself, and the storage's throughput (bytes per PVE second), from the simulator's model."""
    throughput = sim.backend.state.storages[STORAGE].throughput()
    return size / throughput * time_scale, throughput


def lower_bounds(n: int, c: dict[str, float], t_copy: float) -> dict[str, float]:
    """Lower bounds for n VMs from one template, from the chain's medians `c` and the time `t_copy` one
    template disk takes with the storage to itself.

    Every clone is a task on the template's node (full clones to local-lvm cannot go elsewhere), all n
    disks are written into that node's local-lvm, and each VM's steps are strictly ordered: clone POST ->
    clone task -> config PUT -> start POST -> start task. The simulator shares a storage's write
    throughput among the copies in flight (sim.backend.StorageBandwidth), so however many clones run at
    once, the storage needs n * t_copy to write the n disks. Before the first byte: one clone POST and the
    clone task's work before its copy; after the last byte: the rest of that clone task and the VM's
    T_rest = PUT + POST + start task. With O = clone task - t_copy (the task's own work besides the copy):
          LB = POST_clone + O + n * t_copy + T_rest = chain + (n - 1) * t_copy
    The other clone POSTs (serialised by the template node's 3 pveproxy workers: ceil(n/3) * POST_clone)
    run while earlier copies write, so they add nothing to the bound.
    - one VM after the other (the seed's shape): LB_seq = n * chain.
    - the old bound, for reference (a simulator where copies do not share the storage):
          LB_free = ceil(n / 3) * POST_clone + clone task + T_rest
    """
    t_rest = c["put_config"] + c["post_start"] + c["start"]
    return {"bw": c["chain"] + (n - 1) * t_copy,
            "overhead": c["clone"] - t_copy,
            "rest": t_rest,
            "busy": n * t_copy,
            "seq": n * c["chain"],
            "free": math.ceil(n / WORKERS) * c["post_clone"] + c["clone"] + t_rest}


def storage_busy(sim: Any, time_scale: float) -> tuple[float, float]:
    """(busy, window) in wall-clock seconds for the template node's local-lvm: the union of the times any
    copy was writing, and first copy start to last copy end, from the simulator's accounting."""
    segs = sorted((s.t0, s.t1) for s in sim.backend.bandwidth.segments if s.key == (STORAGE, "pve1"))
    if not segs:
        return 0.0, 0.0
    busy, cur0, cur1 = 0.0, segs[0][0], segs[0][1]
    for t0, t1 in segs[1:]:
        if t0 > cur1:
            busy += cur1 - cur0
            cur0, cur1 = t0, t1
        else:
            cur1 = max(cur1, t1)
    busy += cur1 - cur0
    return busy * time_scale, (max(t1 for _, t1 in segs) - segs[0][0]) * time_scale


# -- part 2: detection lag --------------------------------------------------------------------------


def lag_tasks(sim: Any, n: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(kind, node, path, params) for n tasks: start / shutdown / clone / resize, on distinct VMs."""
    vms = sorted((v for v in sim.backend.state.vms.values() if not v.is_template), key=lambda v: v.vmid)
    stopped = [v for v in vms if v.status == "stopped"]
    running = [v for v in vms if v.status == "running"]
    templates = sorted((v for v in sim.backend.state.vms.values() if v.is_template), key=lambda v: v.vmid)
    per = n // 4
    kinds = {"start": per + (n % 4 > 0), "shutdown": per + (n % 4 > 1), "clone": per + (n % 4 > 2), "resize": per}
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    for v in stopped[:kinds["start"]]:
        out.append(("start", v.node, f"/nodes/{v.node}/qemu/{v.vmid}/status/start", {}))
    for v in running[:kinds["shutdown"]]:
        out.append(("shutdown", v.node, f"/nodes/{v.node}/qemu/{v.vmid}/status/shutdown", {}))
    new = free_vmids(sim, kinds["clone"], start=500)
    for i, vmid in enumerate(new):
        t = templates[i % len(templates)]
        out.append(("clone", t.node, f"/nodes/{t.node}/qemu/{t.vmid}/clone",
                    {"newid": vmid, "name": f"lag-{vmid}", "full": 1, "storage": STORAGE}))
    rest = (stopped[kinds["start"]:] + running[kinds["shutdown"]:])[:kinds["resize"]]
    for v in rest:
        out.append(("resize", v.node, f"/nodes/{v.node}/qemu/{v.vmid}/resize", {"disk": "scsi0", "size": "+1G"}))
    if len(out) != n:
        raise SystemExit(f"only {len(out)} suitable VMs for {n} tasks; raise --lag-vms")
    # interleave the kinds
    seen: dict[str, int] = {}
    rank = []
    for t in out:
        seen[t[0]] = seen.get(t[0], 0) + 1
        rank.append(seen[t[0]])
    out = [t for _, t in sorted(zip(rank, out), key=lambda rt: rt[0])]
    return out


def measure_lag(sim: Any, times: TaskTimes, n: int, concurrent: bool) -> list[dict[str, Any]]:
    from pvectl.cluster import Cluster as PveCluster
    from pvectl.tasks import Task

    pve = PveCluster.from_config(str(sim.config_path))
    rows: list[dict[str, Any]] = []
    lock = threading.Lock()

    def one(kind: str, node: str, path: str, params: dict[str, Any]) -> None:
        method = "PUT" if kind == "resize" else "POST"
        upid = pve.transport.request(method, path, params, node=node)
        res = Task(pve, str(upid)).wait(120)
        t_ret = time.monotonic()
        end = times.end[str(upid)]
        with lock:
            rows.append({"kind": kind, "lag": t_ret - end, "polls": res.polls,
                         "duration": times.duration(str(upid)), "exit": res.exitstatus})

    jobs = lag_tasks(sim, n)
    try:
        if concurrent:
            threads = [threading.Thread(target=one, args=j) for j in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            for j in jobs:
                one(*j)
    finally:
        pve.close()
    # cross-check: every poll is one task-status GET on the simulator
    gets = sum(1 for e in sim.requests_log() if e["method"] == "GET" and "/tasks/" in e["path"]
               and e["path"].endswith("/status"))
    if gets != sum(r["polls"] for r in rows):
        print(f"note: {gets} task-status GETs on the simulator, {sum(r['polls'] for r in rows)} polls counted")
    return rows


# -- main -------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20, help="VMs to provision (default 20)")
    ap.add_argument("--time-scale", type=float, default=0.05, help="simulator time scale (default 0.05)")
    ap.add_argument("--chain-runs", type=int, default=5, help="single-VM chains for the lower bound (default 5)")
    ap.add_argument("--lag-tasks", type=int, default=30, help="tasks for the detection-lag measurement (default 30)")
    ap.add_argument("--lag-vms", type=int, default=40, help="VMs in the detection-lag simulator (default 40)")
    ap.add_argument("--skip-seed", action="store_true", help="do not run the seed's loop (b)")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = ap.parse_args()
    for tool in ("curl", "jq", "pass", "gpg", "bash"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed")
    n = args.count
    interval = 5 * args.time_scale
    t_start = time.monotonic()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="pvp-", dir="/tmp"))      # short: gpg-agent's socket path
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONDONTWRITEBYTECODE", "PVECTL_CONFIG", "PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET")
                and not k.lower().endswith("_proxy")}
    base_env["XDG_CACHE_HOME"] = str(root / "cache")
    env = base_env
    keys = root / "id_ed25519.pub"
    keys.write_text(fake_ssh_key(), encoding="utf-8")
    sshkeys_enc = urllib.parse.quote(fake_ssh_key(), safe="")
    from pvectl.sim.cluster import TOKEN_ID

    results: dict[str, Any] = {}
    sims: list[Any] = []
    try:
        env = make_pass_store(root, f"{TOKEN_ID}\n{SECRET}\n", base_env)
        # warm: the pvectl console script once (bytecode), so (a) measures a normal start
        subprocess.run(pvectl_argv() + ["--help"], env=env, capture_output=True, check=False)

        print(f"provisioning {n} VMs from template {TEMPLATE}, time scale {args.time_scale:g}")
        # (c) first: the chain's durations (also a sanity check of the simulator)
        sim, times = new_sim(root, "chain", 12, args.time_scale)
        sims.append(sim)
        chains = [run_chain(sim, times, vmid, f"chain-{i}", sshkeys_enc)
                  for i, vmid in enumerate(free_vmids(sim, args.chain_runs), start=1)]
        chain = {k: statistics.median(c[k] for c in chains) for k in chains[0]}
        disk = template_disk_size(sim)
        t_copy, throughput = storage_copy_time(sim, disk, args.time_scale)
        lb = lower_bounds(n, chain, t_copy)
        sim.stop()
        print("(c) one chain, instant detection: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in chain.items()))
        print(f"    {STORAGE}: {throughput / 2**20:.0f} MiB/s shared; one {disk / 2**30:.0f} GiB disk alone "
              f"{t_copy:.3f} s; {n} disks {lb['busy']:.2f} s")
        print(f"    lower bounds for {n}: storage-bound LB {lb['bw']:.2f} s; one VM at a time {lb['seq']:.2f} s; "
              f"(free copies, the old bound: {lb['free']:.2f} s)")

        ways = [("pvectl", []), ("pvectl-raised", ["--max-per-node", str(n), "--max-per-storage", str(n)]),
                ("pvectl-1", ["--max-per-storage", "1"])]
        for tag, extra in ways:
            sim, times = new_sim(root, tag, 12, args.time_scale)
            sims.append(sim)
            results[tag] = run_pvectl(sim, times, root, env, n, keys, extra, tag)
            sim.stop()
            r = results[tag]
            print(f"(a) {tag}: {r['wall']:.2f} s, {r['made']}/{n} VMs running and configured, {r['requests']} "
                  f"requests, at most {r['max_parallel_clones']} clones at once, clone task median "
                  f"{statistics.median(r['clone_durations']):.2f} s; first VM running at {r['first_running']:.2f} s; "
                  f"{STORAGE} busy {r['storage_busy']:.2f} s of its {r['storage_window']:.2f} s copy window")
        if not args.skip_seed:
            sim, times = new_sim(root, "seed", 12, args.time_scale)
            sims.append(sim)
            results["seed"] = run_seed(sim, times, root, env, n, keys, interval)
            sim.stop()
            r = results["seed"]
            print(f"(b) seed loop: {r['wall']:.2f} s, {r['made']}/{n} VMs, {r['requests']} requests, "
                  f"tasks ran {r['task_time']:.2f} s of it")

        # part 2
        lag: dict[str, list[dict[str, Any]]] = {}
        for mode in ("sequential", "concurrent"):
            sim, times = new_sim(root, f"lag-{mode}", args.lag_vms, args.time_scale)
            sims.append(sim)
            lag[mode] = measure_lag(sim, times, args.lag_tasks, mode == "concurrent")
            sim.stop()
            lags = [r["lag"] * 1000 for r in lag[mode]]
            print(f"lag ({mode}, {len(lags)} tasks): median {statistics.median(lags):.0f} ms, p90 {pct(lags, .9):.0f} ms, "
                  f"max {max(lags):.0f} ms; polls per task median {statistics.median(r['polls'] for r in lag[mode]):g}")
        load_after = os.getloadavg()
    finally:
        for s in sims:
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, timeout=30, check=False)
        shutil.rmtree(root, ignore_errors=True)

    # verdicts
    labels = {"pvectl": f"(a) `pvectl vm clone 9000 web --count {n} --name-pattern web-{{n}} ... --start` (defaults: "
                        f"2 per node / storage, {POOL} workers)",
              "pvectl-raised": f"(a') the same with `--max-per-node {n} --max-per-storage {n}`",
              "pvectl-1": "(a'') the same with `--max-per-storage 1`"}
    pv = results["pvectl"]
    seq_lags = [r["lag"] * 1000 for r in lag["sequential"]]
    con_lags = [r["lag"] * 1000 for r in lag["concurrent"]]
    ok = {tag: r["wall"] <= TARGET_RATIO * lb["bw"] for tag, r in results.items() if tag != "seed"}
    ok_lag = statistics.median(seq_lags) < LAG_TARGET_MS and statistics.median(con_lags) < LAG_TARGET_MS
    print()
    for tag in labels:
        r = results[tag]
        print(f"{tag:14s} {r['wall']:.2f} s = {r['wall'] / lb['bw']:.2f}x LB ({'within' if ok[tag] else 'over'} "
              f"{TARGET_RATIO}x); storage idle {r['storage_window'] - r['storage_busy']:.2f} s in its copy window")
    if "seed" in results:
        print(f"seed loop      {results['seed']['wall']:.2f} s = {results['seed']['wall'] / lb['bw']:.2f}x LB, "
              f"{results['seed']['wall'] / lb['seq']:.2f}x LB_seq, {results['seed']['wall'] / pv['wall']:.2f}x pvectl")

    if not args.no_record:
        import pvectl

        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        la = lambda t: " ".join(f"{x:.2f}" for x in t)
        tv = lambda argv: subprocess.run(argv, capture_output=True, text=True, check=False).stdout.splitlines()[0]
        mib = throughput / 2**20
        lines = [
            f"## Provisioning {n} VMs from one template: pvectl, the seed's loop, the lower bound; task-completion "
            "lag (bench/bench_provision.py)",
            "",
            f"{when} · pvectl {pvectl.__version__} · Python {platform.python_version()} · "
            f"{tv(['curl', '--version']).split(' (')[0]} · {tv(['jq', '--version'])} · {os.cpu_count()} CPUs · "
            f"load average {la(load_before)} before, {la(load_after)} after (1/5/15 min) · simulator: 3 nodes, "
            f"time scale {args.time_scale:g}, template {TEMPLATE} ({disk / 2**30:.0f} GiB scsi0 on {STORAGE}, pve1), "
            f"{STORAGE} write throughput {mib:.0f} MiB/s per node shared by all copies onto it, in the "
            f"benchmark's process; token from a real `pass` store for pvectl and the seed alike.",
            "",
            f"Each way ran once, on its own fresh simulator with the same inventory, making {n} running VMs "
            f"(full clone, cores 2, memory 2048, net0 on vmbr0, ipconfig0 dhcp, ciuser, sshkeys, started); every "
            f"VM was checked afterwards. The seed's `poll_task` interval is 5 s x {args.time_scale:g} = "
            f"{interval:g} s (the same ratio to task durations as 5 s against a real cluster).",
            "",
            f"Storage model: the simulator shares a storage's write throughput among the disk copies in flight "
            f"onto it (max-min fair, re-split whenever a copy starts or ends; `bwlimit` caps a copy alone), as "
            f"{n} concurrent `qemu-img convert` onto one node's LVM-thin do. So the {n} disks need "
            f"{n} x {disk / 2**30:.0f} GiB / {mib:.0f} MiB/s = {n} x {t_copy:.3f} s = {lb['busy']:.2f} s of "
            f"{STORAGE} on pve1 however many clones run at once.",
            "",
            f"Lower bound, from ONE VM's chain run in-process with instant completion detection (median of "
            f"{args.chain_runs}): clone POST {chain['post_clone'] * 1000:.0f} ms, clone task "
            f"{chain['clone'] * 1000:.0f} ms (of which the copy alone t_copy = {t_copy * 1000:.0f} ms, from the "
            f"simulator's throughput; O = {lb['overhead'] * 1000:.0f} ms of other work), config PUT "
            f"{chain['put_config'] * 1000:.0f} ms, start POST {chain['post_start'] * 1000:.0f} ms, start task "
            f"{chain['start'] * 1000:.0f} ms; chain {chain['chain'] * 1000:.0f} ms. Nothing can be written "
            f"before the first clone POST and the clone task's own work before its copy; the storage then needs "
            f"n x t_copy; after the last byte that VM still needs the rest of its clone task and T_rest = PUT + "
            f"POST + start task = {lb['rest'] * 1000:.0f} ms: **LB = POST_clone + O + n x t_copy + T_rest = chain "
            f"+ (n-1) x t_copy = {lb['bw']:.2f} s**. The other clone POSTs (the template node's 3 pveproxy "
            f"workers serialise them: ceil(n/3) x POST_clone = {math.ceil(n / WORKERS) * chain['post_clone'] * 1000:.0f} ms) "
            f"overlap earlier copies and add nothing. One VM after the other (the seed's shape): LB_seq = n x "
            f"chain = {lb['seq']:.2f} s. (The bound before the storage model, every copy at full speed at once: "
            f"ceil(n/3) x POST_clone + clone task + T_rest = {lb['free']:.2f} s.)",
            "",
            "| way | wall s | VMs made | API requests | clones at once (max) | first VM running s | median VM running s "
            "| local-lvm idle in copy window s | vs LB | target: <= 1.3x LB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for tag, label in labels.items():
            r = results[tag]
            lines.append(f"| {label} | {r['wall']:.2f} | {r['made']}/{n} | {r['requests']} | {r['max_parallel_clones']} | "
                         f"{r['first_running']:.2f} | {r['median_running']:.2f} | "
                         f"{r['storage_window'] - r['storage_busy']:.2f} | {r['wall'] / lb['bw']:.2f}x | "
                         f"{'met' if ok[tag] else 'MISSED'} |")
        if "seed" in results:
            s = results["seed"]
            lines.append(f"| (b) the seed's loop (curl + `poll_task` every {interval:g} s, one VM after the other; "
                         f"{s['wall'] / lb['seq']:.2f}x LB_seq) | {s['wall']:.2f} | {s['made']}/{n} | {s['requests']} | 1 | "
                         f"- | - | - | {s['wall'] / lb['bw']:.2f}x | - |")
            lines += ["", f"Same run: the seed's loop took **{s['wall'] / pv['wall']:.2f}x** as long as pvectl with its "
                      f"defaults. Its tasks ran one at a time for {s['task_time']:.1f} s of its {s['wall']:.1f} s; the "
                      f"other {s['wall'] - s['task_time']:.1f} s ({1 - s['task_time'] / s['wall']:.0%}) went to sleeping "
                      f"past tasks that had ended and to {s['requests']} curl calls with two `pass show` each."]
        lines += ["", "API requests by kind: " + "; ".join(
            f"{label}: " + ", ".join(f"{k} {v}" for k, v in results[key]["kinds"].items())
            for key, label in (("pvectl", "(a)"), ("pvectl-raised", "(a')"), ("pvectl-1", "(a'')"), ("seed", "(b)"))
            if key in results) + "."]
        lines += [
            "",
            f"Task-completion detection lag: time from the moment a task finished (the simulator's task engine, "
            f"wrapped in-process, time.monotonic()) until `Task(cluster, upid).wait()` returned; {args.lag_tasks} "
            f"tasks (start, ACPI shutdown, full clone, disk resize on distinct VMs), client and simulator in one "
            f"process. Polls = task-status GETs per task (`TaskResult.polls`). Target: median < {LAG_TARGET_MS:g} ms.",
            "",
            "| mode | tasks | lag median ms | lag p90 ms | lag max ms | polls per task (median / max) | target |",
            "|---|---|---|---|---|---|---|",
        ]
        for mode, xs in (("one at a time", seq_lags), ("all at once", con_lags)):
            rows = lag["sequential" if mode == "one at a time" else "concurrent"]
            polls = [r["polls"] for r in rows]
            verdict = f"{'met' if statistics.median(xs) < LAG_TARGET_MS else 'MISSED'}"
            lines.append(f"| {mode} | {len(xs)} | {statistics.median(xs):.0f} | {pct(xs, .9):.0f} | {max(xs):.0f} | "
                         f"{statistics.median(polls):g} / {max(polls)} | {verdict} |")
        lines += ["", "Per kind (one at a time): " + "; ".join(
            f"{k} (task {statistics.median(r['duration'] for r in lag['sequential'] if r['kind'] == k) * 1000:.0f} ms) "
            f"lag median {statistics.median(r['lag'] * 1000 for r in lag['sequential'] if r['kind'] == k):.0f} ms, "
            f"{statistics.median(r['polls'] for r in lag['sequential'] if r['kind'] == k):g} polls"
            for k in ("start", "shutdown", "clone", "resize")) + "."]
        record(lines)
        print(f"appended to {RESULTS_PATH()}")
    print(f"took {time.monotonic() - t_start:.0f} s")
    return 0 if (ok["pvectl"] and ok_lag) else 1


def RESULTS_PATH() -> Path:
    return HERE / "RESULTS.md"


if __name__ == "__main__":
    raise SystemExit(main())
