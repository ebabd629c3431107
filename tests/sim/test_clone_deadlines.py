"""A library clone ends by its deadline (`timeout=`) also when a node hangs: the deadline bounds every
request of the workflow (planning reads, each bulk worker's requests), not only its task waits, and
the state it left is reported within the reporting grace (DESIGN §5 deadlines).

A hung node accepts connections and answers nothing: without the bound, each read on it waits for
the transport's read timeout (30 s by default) before the deadline is looked at again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from pvectl.cluster import Cluster
from pvectl.errors import PvectlError
from pvectl.sim.cluster import Cluster as SimCluster
from testkit import timed

TEMPLATE = "ubuntu-24.04-cloud"      # VMID 9000 on pve1
READ_TIMEOUT = 8.0                   # far above the deadlines below: a read it bounds shows as late
MARGIN = 1.5                         # scheduling slack on a loaded 2-core machine
REPORT_GRACE = 3.0                   # http.REPORT_GRACE: the reads that report the state left


@pytest.fixture
def pve(sim: SimCluster) -> Iterator[Cluster]:
    with sim.client(audit=False, read_timeout=READ_TIMEOUT) as c:
        yield c


def clone_posts(sim: SimCluster) -> list[dict[str, Any]]:
    return [e for e in sim.requests_log() if e["method"] == "POST" and e["path"].endswith("/clone")]


def test_a_hung_template_node_ends_a_single_clone_by_its_deadline(sim: SimCluster, pve: Cluster) -> None:
    """The template's node hangs before the call: its config read (node-pinned) would wait the read
    timeout; the call ends at its 1 s deadline with a typed error, nothing sent."""
    assert sim.backend.state.vms[9000].node == "pve1"
    sim.hang_node("pve1")
    try:
        took, err = timed(lambda: pve.vms.clone(TEMPLATE, "late-1", timeout=1))
    finally:
        sim.unhang_node("pve1")
    assert isinstance(err, PvectlError) and err.exit_code in (4, 5), err
    assert took <= 1 + MARGIN, took          # nothing to report: no reporting grace either
    assert clone_posts(sim) == []


def test_a_hung_template_node_ends_a_bulk_clone_by_its_deadline(sim: SimCluster, pve: Cluster) -> None:
    """The same for `count`: the call ends by the deadline with typed errors, nothing sent."""
    sim.hang_node("pve1")
    try:
        took, res = timed(lambda: pve.vms.clone(TEMPLATE, "late-{n}", count=2, timeout=1))
    finally:
        sim.unhang_node("pve1")
    # the name check's cluster-wide read may be the one the deadline ends (the call raises), or each
    # VM's plan (its template config read on pve1) fails by it
    errors = [res] if isinstance(res, Exception) else [r.error for r in res]
    assert errors and all(isinstance(e, PvectlError) and e.exit_code in (4, 5) for e in errors), res
    assert took <= 1 + MARGIN, took          # nothing to report: no reporting grace either
    assert clone_posts(sim) == []


def test_a_node_that_hangs_during_a_bulk_clone_ends_each_worker_by_the_deadline(sim: SimCluster) -> None:
    """pve1 (the template's node, where the clone tasks run) hangs as the first clone request goes out:
    every worker's requests (the clone POSTs, the look for an uncertain clone, the task waits) end by
    the deadline, and each VM's result carries its typed error."""
    hung: list[float] = []

    def on_event(ev: dict[str, Any]) -> None:
        if ev.get("event") == "clone" and ev.get("step") == "clone" and ev.get("state") == "start" and not hung:
            hung.append(time.monotonic())
            sim.hang_node("pve1")

    deadline = 3.0
    try:
        with sim.client(audit=False, read_timeout=READ_TIMEOUT, on_event=on_event) as pve:
            took, res = timed(lambda: pve.vms.clone(TEMPLATE, "hang-{n}", count=3, timeout=deadline))
    finally:
        sim.unhang_node("pve1")
    assert hung, "no clone was requested"
    assert not isinstance(res, Exception), res
    assert took <= deadline + REPORT_GRACE + MARGIN, took
    assert len(res) == 3 and all(r.error is not None and r.error.exit_code in (4, 5) for r in res), res
