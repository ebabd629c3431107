"""Planning a large bulk clone: `pvectl --dry-run vm clone 9000 b --count N --name-pattern 'b-{n}'` against
the in-process simulator, with a config without `vmid_ranges` (every VMID from 100 up is a candidate).
Prints the wall time and exit status per N; a dry run sends no write, so the cluster is left as it was.

    .venv/bin/python bench/bench_bulk_plan.py 4000 16000 100000
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import yaml

from pvectl.sim.cluster import Cluster


def main(counts: list[int]) -> None:
    pvectl = os.path.join(os.path.dirname(sys.executable), "pvectl")
    with Cluster(nodes=3, vms=12, templates=2, bind="127.0.0.1", port=0, time_scale=0.02) as sim:
        doc = yaml.safe_load(sim.config_path.read_text())
        doc.pop("vmid_ranges", None)
        cfg = sim.state_dir / "no-ranges.yaml"
        cfg.write_text(yaml.safe_dump(doc))
        for n in counts:
            t0 = time.monotonic()
            r = subprocess.run([pvectl, "--config", str(cfg), "-o", "json", "--dry-run", "vm", "clone", "9000", "b",
                                "--count", str(n), "--name-pattern", "b-{n}"], capture_output=True, text=True)
            print(f"count {n}: exit {r.returncode}, {time.monotonic() - t0:.1f} s, {len(r.stdout) / 1e6:.1f} MB of JSON")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [4000, 16000])
