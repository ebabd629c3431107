"""`python -m tests.chaos --seed N --ops 300`: one seeded chaos run; exit 1 when an invariant broke."""

from __future__ import annotations

import argparse
import sys

from .campaign import run_campaign
from .invariants import DEADLINE_MARGIN


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    p.add_argument("--seed", type=int, action="append", help="seed (repeat for several runs; default 1)")
    p.add_argument("--ops", type=int, default=300, help="operations per run (default 300)")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    p.add_argument("--budget", type=float, default=None, help="stop starting operations after S seconds")
    p.add_argument("--time-scale", type=float, default=0.02, help="simulated task durations x this")
    p.add_argument("--fault-interval", type=float, default=0.8, help="mean seconds between faults")
    p.add_argument("--margin", type=float, default=DEADLINE_MARGIN,
                   help=f"seconds past a deadline still accepted (default {DEADLINE_MARGIN})")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per finished operation")
    a = p.parse_args(argv)

    def progress(op: object) -> None:
        print(f"  {op.op_id:4d} {op.via:3s} {op.kind:11s} exit={op.exit_code} "  # type: ignore[attr-defined]
              f"{op.elapsed:5.1f}s {' '.join(op.argv)}", flush=True)  # type: ignore[attr-defined]

    total = 0
    for seed in a.seed or [1]:
        report = run_campaign(seed, a.ops, clients=a.clients, time_budget=a.budget, time_scale=a.time_scale,
                              mean_fault_interval=a.fault_interval, margin=a.margin, progress=progress if a.verbose else None)
        print(report.summary(), flush=True)
        total += len(report.violations)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
