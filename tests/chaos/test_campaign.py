"""The chaos campaign in CI: three seeds, briefly (about a minute in all), and not one violation.

The long run is one command: `.venv/bin/python bench/chaos.py --seed 1 --ops 300`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .campaign import run_campaign

SEEDS = (1, 2, 3)


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos_campaign_finds_no_violation(seed: int, tmp_path: Path) -> None:
    # its work directory (the CLI clients' config, audit log) stays under pytest's: the session's
    # canary check reads every file in it
    report = run_campaign(seed, ops=40, clients=3, time_budget=15.0, workdir=tmp_path)
    print(report.summary())
    assert report.ops >= 10, report.summary()
    assert sum(report.faults.values()) >= 3, report.summary()      # faults were injected
    assert report.violations == [], report.summary()
