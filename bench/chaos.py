"""The chaos campaign as one command (tests/chaos/): seeded random operations from CLI and library clients
against an in-process simulated cluster under random faults; prints the summary and every violation.

    .venv/bin/python bench/chaos.py --seed 1 --ops 300          # the long run
    .venv/bin/python bench/chaos.py --seed 1 --seed 2 --seed 3 --ops 40 --budget 20   # what CI runs

Exit status 1 when an invariant broke.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tests.chaos.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
