"""One seeded chaos run: several clients (CLI processes and library threads) run random operations
against an in-process simulated cluster while faults are injected at random; the invariants are
checked against everything recorded (see invariants.py), and a summary is printed.

    python -m tests.chaos --seed 7 --ops 300        # or: python bench/chaos.py --seed 7 --ops 300
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvectl.sim.cluster import Cluster as SimCluster

from .history import History, OpRecord, TaskState, recording_sim
from .injector import INJECTOR_TOKEN, Injector
from .invariants import DEADLINE_MARGIN, Violation, check_all
from .ops import Env, OpSpec, choose, run_cli, run_lib


@dataclass
class Report:
    seed: int
    ops: int
    elapsed: float
    faults: Counter[str]
    outcomes: Counter[str]
    violations: list[Violation]
    history: History = field(repr=False)
    requests: int = 0

    def summary(self) -> str:
        lines = [f"chaos seed {self.seed}: {self.ops} operations in {self.elapsed:.1f} s, "
                 f"{self.requests} API requests carried out, {sum(self.faults.values())} faults injected"]
        lines.append("  faults:     " + ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())))
        lines.append("  outcomes:   " + ", ".join(f"{k} {n}" for k, n in sorted(self.outcomes.items())))
        by_kind = Counter(v.kind for v in self.violations)
        lines.append(f"  violations: {len(self.violations)}"
                     + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())) + ")" if by_kind else ""))
        lines.extend(f"    - {v}" for v in self.violations)
        return "\n".join(lines)


def run_campaign(seed: int, ops: int = 40, *, clients: int = 3, time_budget: float | None = None,
                 time_scale: float = 0.02, mean_fault_interval: float = 0.8, margin: float = DEADLINE_MARGIN,
                 workdir: Path | None = None, progress: Any = None) -> Report:
    """Run `ops` operations (fewer if `time_budget` seconds pass first) and check the invariants."""
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="pvectl-chaos-")) if workdir is None else workdir
    t0 = time.monotonic()
    saved_audit = os.environ.get("PVECTL_AUDIT_LOG")
    os.environ["PVECTL_AUDIT_LOG"] = str(work / "audit.jsonl")   # the library clients' audit log
    try:
        with recording_sim(nodes=3, vms=10, templates=2, time_scale=time_scale, seed=seed) as (sim, recorder):
            env = Env(sim, work, work / "audit.jsonl", margin)
            history = History(injector_tokens=frozenset({INJECTOR_TOKEN}))
            history.initial_vms = env.vms()
            injector = Injector(env, seed, mean_interval=mean_fault_interval)
            injector.start()
            try:
                _run_ops(env, history, seed, ops, clients, t0, time_budget, progress)
            finally:
                injector.stop()
            _settle(sim)
            history.final_vms = env.vms()
            history.tasks = _tasks(sim)
            history.received = list(recorder.received)
            history.audit = _read_audit(env.audit_path)
    finally:
        if saved_audit is None:
            os.environ.pop("PVECTL_AUDIT_LOG", None)
        else:
            os.environ["PVECTL_AUDIT_LOG"] = saved_audit
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
    violations = check_all(history, margin=margin)
    outcomes = Counter(_outcome(op) for op in history.ops)
    return Report(seed, len(history.ops), time.monotonic() - t0, injector.counts, outcomes, violations,
                  history, len(history.received))


def _outcome(op: OpRecord) -> str:
    if op.killed:
        return "killed"
    if op.exit_code == 0:
        return "ok"
    return f"exit{op.exit_code}"


def _run_ops(env: Env, history: History, seed: int, ops: int, clients: int, t0: float,
             time_budget: float | None, progress: Any) -> None:
    lock = threading.Lock()
    counter = iter(range(ops))
    next_op_id = [0]

    def new_record(spec: OpSpec) -> tuple[OpRecord, str]:
        with lock:
            next_op_id[0] += 1
            op_id = next_op_id[0]
        token, secret = env.new_token(op_id)
        rec = OpRecord(op_id, spec.kind, spec.via, token, list(spec.argv), list(spec.names), spec.target_vmid,
                       spec.deadline)
        return rec, secret

    def run_one(spec: OpSpec) -> None:
        records: list[tuple[OpRecord, str]] = [new_record(spec) for _ in range(spec.parallel)]
        threads = []
        for rec, secret in records:
            if spec.via == "lib":
                assert spec.lib is not None
                fn = (lambda r=rec, s=secret: run_lib(env, r, s, spec.lib))  # type: ignore[misc]
            else:
                fn = (lambda r=rec, s=secret: run_cli(env, r, s))  # type: ignore[misc]
            threads.append(threading.Thread(target=fn, daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        taken = time.monotonic()       # before the read: commands still running then may show in it
        snapshot = env.vms()
        with lock:
            for rec, _ in records:
                history.ops.append(rec)
                history.after_op[rec.op_id] = snapshot
                if rec.kind.startswith("clone") and rec.via == "cli" and (rec.exit_code in (4, 130) or rec.killed):
                    with env.lock:
                        env.retry_candidates.append(rec)
                if progress is not None:
                    progress(rec)
            history.snapshots.append((taken, snapshot))

    def client() -> None:
        while True:
            if time_budget is not None and time.monotonic() - t0 > time_budget:
                return
            with lock:
                i = next(counter, None)
            if i is None:
                return
            run_one(choose(random.Random(f"{seed}:{i}"), env))

    workers = [threading.Thread(target=client, name=f"chaos-client-{n}", daemon=True) for n in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _settle(sim: SimCluster, limit: float = 30.0) -> None:
    """Wait (bounded) until no task runs any more, so the final state is the one the clients left."""
    end = time.monotonic() + limit
    engine = sim.backend.engine
    while time.monotonic() < end:
        if all(t.status != "running" for t in engine.records()):
            return
        time.sleep(0.1)


def _tasks(sim: SimCluster) -> dict[str, TaskState]:
    return {t.upid: TaskState(t.upid, t.status, t.exitstatus) for t in sim.backend.engine.records()}


def _read_audit(path: Path) -> list[dict[str, Any]]:
    import json

    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
