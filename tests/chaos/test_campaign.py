"""The chaos campaign in CI: three seeds, briefly (about a minute in all), and not one violation.

The long run is one command: `.venv/bin/python bench/chaos.py --seed 1 --ops 300`.
"""

from __future__ import annotations

import pytest

from .campaign import run_campaign

SEEDS = (1, 2, 3)


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos_campaign_finds_no_violation(seed: int) -> None:
    report = run_campaign(seed, ops=40, clients=3, time_budget=15.0)
    print(report.summary())
    assert report.ops >= 10, report.summary()
    assert sum(report.faults.values()) >= 3, report.summary()      # faults were injected
    assert report.violations == [], report.summary()
