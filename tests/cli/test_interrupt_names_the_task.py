"""Ctrl-C while a command waits for the task it started: exit 130 with that task's UPID and the command
that follows it (the task goes on on the node), also when the node's task list cannot be read.

The Ctrl-C is a KeyboardInterrupt raised by the task wait itself (what Python raises there on SIGINT),
so the test does not depend on timing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

UPID_RE = r"UPID:pve\d:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:{kind}:{vmid}:[^\s]+:"


@pytest.fixture
def interrupt_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    from pvectl import taskwrites, tasks

    def wait(self: Any, *a: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks.Task, "wait", wait)
    # the nodes' task lists cannot tell (a node that does not answer): the command must know its task
    monkeypatch.setattr(taskwrites, "tasks_started_since", lambda *a, **kw: [])


@pytest.mark.parametrize("argv, kind, vmid", [
    (["vm", "delete", "106", "--yes"], "qmdestroy", 106),
    (["vm", "resize", "104", "--disk", "scsi0", "--size", "+1G", "--yes"], "resize", 104),
    (["vm", "migrate", "104", "pve3", "--with-local-disks"], "qmigrate", 104),
])
def test_ctrl_c_during_the_wait_names_the_task_and_how_to_follow_it(
        fresh_sim: Any, cli: Callable[..., Any], interrupt_wait: None, argv: list[str], kind: str, vmid: int) -> None:
    r = cli("--config", str(fresh_sim.config_path), *argv)
    assert r.code == 130, r.out + r.err
    upid = re.search(UPID_RE.replace("{kind}", kind).replace("{vmid}", str(vmid)), r.err)
    assert upid is not None, r.err
    assert f"pvectl task wait {upid.group(0)}" in r.err
    with fresh_sim.backend.mu:
        assert upid.group(0) in {t.upid for t in fresh_sim.backend.engine.records()}
