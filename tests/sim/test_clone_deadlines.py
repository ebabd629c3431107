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
from testkit import delay_requests, timed

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


@pytest.fixture
def late_clone_answer(sim: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """pve1 carries out a clone POST at once, and its answer takes 2 s more (a slow way back)."""
    delay_requests(sim, monkeypatch, "POST", "/clone", 2.0)


def test_a_clone_answer_after_the_deadline_names_the_vm_and_its_task(sim: SimCluster, pve: Cluster,
                                                                     late_clone_answer: None) -> None:
    """The clone request is carried out and its answer comes after the 1 s deadline: one look within the
    reporting grace finds the VM and its clone task, so exit 4 says what to wait for (it used to end with
    "cannot tell whether the clone started", no task named)."""
    took, err = timed(lambda: pve.vms.clone(TEMPLATE, "late-answer", timeout=1))
    assert isinstance(err, PvectlError) and err.exit_code == 4, err
    assert took <= 1 + REPORT_GRACE + MARGIN, took
    vm = err.result                                               # type: ignore[attr-defined]
    assert vm.vmid in sim.backend.state.vms                       # the VM it reports was made
    upid = vm.upids["clone"]
    assert upid.startswith("UPID:pve1:") and ":qmclone:9000:" in upid and upid in err.message
    assert "cannot be told" not in err.message and "cannot tell" not in err.message
    assert err.hint and (f"pvectl task wait {upid}" in err.hint or "resume with" in err.hint)
    end = time.monotonic() + 10
    while not clone_posts(sim) and time.monotonic() < end:        # logged once its answer is written
        time.sleep(0.1)
    assert len(clone_posts(sim)) == 1                             # sent once


def test_a_clone_request_held_past_the_deadline_says_no_vm_of_this_run_is_there_yet(
        sim: SimCluster, pve: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The clone request waits 2.5 s on pve1 before it is carried out (a node that accepts but does not
    get to it): at the 1 s deadline no VM is there. Exit 4 says so, names the VMID that request would
    make and how to check; when the request is carried out late after all, the next run finds that VM
    and finishes it instead of making a second one."""
    original = sim.server._handle
    delay_requests(sim, monkeypatch, "POST", "/clone", 2.5, after=False)
    took, err = timed(lambda: pve.vms.clone(TEMPLATE, "held-1", timeout=1))
    assert isinstance(err, PvectlError) and err.exit_code == 4, err
    assert took <= 1 + REPORT_GRACE + MARGIN, took
    vmid = err.result.vmid                                        # type: ignore[attr-defined]
    assert f"the clone request for VM {vmid} (held-1) got no answer before the deadline" in err.message
    assert "nothing changed so far" in err.message and err.hint and f"pvectl vm status {vmid}" in err.hint
    end = time.monotonic() + 20
    while vmid not in sim.backend.state.vms and time.monotonic() < end:       # carried out late
        time.sleep(0.1)
    monkeypatch.setattr(sim.server, "_handle", original)
    again = pve.vms.clone(TEMPLATE, "held-1", timeout=30)
    assert again.vmid == vmid and again.result == "exists"                    # one VM for the name
    assert len(clone_posts(sim)) == 1


def test_a_clone_answered_after_the_deadline_whose_task_failed_names_that_task(
        sim: SimCluster, pve: Cluster, late_clone_answer: None) -> None:
    """As above, and the clone task fails (Proxmox removes what it made): at the deadline no VM is there,
    and the report names the clone task that ended, not only "no VM" (chaos seed 7, 300 operations)."""
    sim.fail_task(type="qmclone", message="storage full")
    took, err = timed(lambda: pve.vms.clone(TEMPLATE, "late-failed", timeout=1))
    assert isinstance(err, PvectlError) and err.exit_code == 4, err
    assert took <= 1 + REPORT_GRACE + MARGIN, took
    assert "clone" in err.result.upids, (err.message, err.result.to_dict())  # type: ignore[attr-defined]
    upid = err.result.upids["clone"]                              # type: ignore[attr-defined]
    assert ":qmclone:9000:" in upid and f"its clone task {upid} has ended" in err.message, err.message
    assert "nothing was created" in err.message and err.hint and f"pvectl task log {upid}" in err.hint
