"""The campaign harness itself: a short run records every operation, request, task and audit line it
needs, and the summary counts them. (Whether the run finds violations is test_campaign.py's job.)"""

from __future__ import annotations

from .campaign import run_campaign
from .history import WRITE_METHODS


def test_a_short_run_records_what_the_invariants_need() -> None:
    report = run_campaign(11, ops=6, clients=2, mean_fault_interval=1000.0)   # (seeded: no fault in time)
    h = report.history
    assert report.ops == len(h.ops) >= 6
    assert all(op.killed or op.exit_code is not None for op in h.ops)
    assert all(op.ended >= op.started > 0 for op in h.ops)
    assert {op.token for op in h.ops} == {f"root@pam!op{op.op_id}" for op in h.ops}
    assert h.received and {r.token for r in h.received} <= {op.token for op in h.ops} | h.injector_tokens
    assert h.initial_vms and h.final_vms and h.snapshots
    writes = [r for r in h.received if r.method in WRITE_METHODS and r.ok and r.token not in h.injector_tokens]
    if writes:
        assert {line["token_id"] for line in h.audit} >= {r.token for r in writes}
    assert sum(report.faults.values()) == 0
    text = report.summary()
    assert f"chaos seed 11: {report.ops} operations" in text and f"violations: {len(report.violations)}" in text
