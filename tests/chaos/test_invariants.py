"""The chaos invariants catch what they are meant to: each fed a crafted history with one defect."""

from __future__ import annotations

import json
from typing import Any

from .history import History, OpRecord, Received, TaskState, VmState
from .invariants import (
    check_all,
    check_audit,
    check_clones_finished,
    check_double_writes,
    check_duplicate_names,
    check_lost_vms,
    check_outcomes,
    check_state_reported,
    check_vmid_claims,
)

UPID_CLONE = "UPID:pve1:00001000:00000001:6B000000:qmclone:9000:root@pam!op1:"
UPID_DEL = "UPID:pve1:00001001:00000002:6B000001:qmdestroy:120:root@pam!op2:"
CLONE_PATH = "/nodes/pve1/qemu/9000/clone"


def vm(vmid: int, name: str | None, *, template: bool = False) -> VmState:
    return VmState(vmid, name, "pve1", None, template)


def op(op_id: int, kind: str = "clone", *, exit_code: int = 0, names: list[str] | None = None,
       result: Any = None, stdout: str = "", stderr: str = "", deadline: float | None = 10.0,
       elapsed: float = 1.0, target: int | None = None, **kw: Any) -> OpRecord:
    rec = OpRecord(op_id, kind, "cli", f"root@pam!op{op_id}", ["vm", kind], names or [], target, deadline,
                   started=100.0, ended=100.0 + elapsed, exit_code=exit_code, stdout=stdout, stderr=stderr,
                   result=result, **kw)
    if stdout == "" and result is not None:
        rec.stdout = json.dumps(result)
    return rec


def recv(seq: int, token: int, method: str, path: str, params: dict[str, Any] | None = None, *,
         status: int = 200, upid: str | None = None) -> Received:
    return Received(seq, 0.0, "pve1", method, path, params or {}, f"root@pam!op{token}", status, upid)


def audit_line(token: int, method: str, path: str, *, result: str = "ok", upid: str | None = None) -> dict[str, Any]:
    line = {"token_id": f"root@pam!op{token}", "event": "write", "method": method, "path": path, "result": result}
    if upid:
        line["upid"] = upid
    return line


def clean_history() -> History:
    """One clone that made VM 120 and reported it, then one delete of it that succeeded."""
    created = {"vmid": 120, "name": "cx-1", "result": "created"}
    h = History(
        ops=[op(1, names=["cx-1"], result=created), op(2, "delete", target=120, result={"outcome": "done"},
                                                       stdout=f'{{"upid": "{UPID_DEL}"}}')],
        received=[recv(1, 1, "POST", CLONE_PATH, {"newid": 120, "name": "cx-1"}, upid=UPID_CLONE),
                  recv(2, 2, "DELETE", "/nodes/pve1/qemu/120", upid=UPID_DEL)],
        audit=[audit_line(1, "POST", CLONE_PATH, result="task started", upid=UPID_CLONE),
               {"token_id": "root@pam!op1", "event": "task", "upid": UPID_CLONE, "result": "OK"},
               audit_line(2, "DELETE", "/nodes/pve1/qemu/120", result="task started", upid=UPID_DEL)],
        initial_vms={100: vm(100, "web-01"), 9000: vm(9000, "tpl", template=True)},
        final_vms={100: vm(100, "web-01"), 9000: vm(9000, "tpl", template=True)},
        snapshots=[(1.0, {100: vm(100, "web-01"), 120: vm(120, "cx-1")})],
        tasks={UPID_CLONE: TaskState(UPID_CLONE, "stopped", "OK"), UPID_DEL: TaskState(UPID_DEL, "stopped", "OK")},
    )
    return h


def test_a_clean_history_has_no_violation() -> None:
    assert check_all(clean_history()) == []


def test_two_vms_with_one_name_are_found_once_with_every_vmid() -> None:
    h = clean_history()
    h.snapshots.append((2.0, {120: vm(120, "cx-1"), 121: vm(121, "cx-1")}))
    h.snapshots.append((3.0, {120: vm(120, "cx-1"), 121: vm(121, "cx-1"), 122: vm(122, "cx-1")}))
    found = check_duplicate_names(h)
    assert [v.kind for v in found] == ["duplicate-name"]
    assert "[120, 121, 122]" in found[0].detail and "'cx-1'" in found[0].detail


def test_a_race_seen_while_its_commands_run_is_not_a_duplicate_but_one_left_after_them_is() -> None:
    """Op 1 (asking for cx-1) runs from 100 to 101: both racing clones exist for a moment then."""
    h = clean_history()
    h.snapshots.append((100.5, {120: vm(120, "cx-1"), 121: vm(121, "cx-1")}))
    assert check_duplicate_names(h) == []
    h.snapshots.append((101.5, {120: vm(120, "cx-1"), 121: vm(121, "cx-1")}))     # left after it ended
    assert "[120, 121]" in check_duplicate_names(h)[0].detail
    h.snapshots.pop()
    h.final_vms.update({120: vm(120, "cx-1"), 121: vm(121, "cx-1")})               # and at the end
    assert "[120, 121]" in check_duplicate_names(h)[0].detail


def test_names_not_made_by_the_campaign_are_not_counted() -> None:
    h = clean_history()
    h.final_vms.update({130: vm(130, "web-01"), 131: vm(131, "web-01")})
    assert check_duplicate_names(h) == []


def test_a_vm_gone_without_a_successful_delete_is_lost() -> None:
    h = clean_history()
    h.ops[1].exit_code = 1          # the delete said it failed, and printed no UPID
    h.ops[1].stdout = '{"error": {"type": "TaskFailed", "message": "boom"}}'
    found = check_lost_vms(h)
    assert [v.kind for v in found] == ["lost-vm"] and "VM 120" in found[0].detail and found[0].op_id == 2


def test_a_vm_destroyed_by_a_failing_command_is_lost_even_when_its_vmid_is_used_again() -> None:
    h = clean_history()
    h.ops[1].exit_code, h.ops[1].stdout = 5, '{"error": {"type": "NodeUnreachable", "message": "m"}}'
    h.final_vms[120] = vm(120, "cx-9")          # a later clone took VMID 120 again
    assert [(v.kind, v.op_id) for v in check_lost_vms(h)] == [("lost-vm", 2)]
    h.tasks[UPID_DEL] = TaskState(UPID_DEL, "stopped", "can't lock file")   # the destroy failed: nothing lost
    assert check_lost_vms(h) == []


def test_a_vm_that_vanished_with_no_delete_at_all_is_lost() -> None:
    h = clean_history()
    h.initial_vms[101] = vm(101, "db-01")
    found = check_lost_vms(h)
    assert [(v.kind, v.op_id) for v in found] == [("lost-vm", None)] and "VM 101" in found[0].detail


def test_a_delete_still_running_at_its_deadline_accounts_for_the_vm_when_it_names_the_upid() -> None:
    h = clean_history()
    h.ops[1].exit_code = 4          # stdout names the UPID
    assert check_lost_vms(h) == []


def test_a_write_carried_out_twice_is_found_unless_the_first_failed() -> None:
    h = clean_history()
    h.received.insert(1, recv(3, 1, "POST", CLONE_PATH, {"newid": 120, "name": "cx-1"}, status=500))
    found = check_double_writes(h)
    assert [v.kind for v in found] == ["double-write"] and found[0].op_id == 1
    h = clean_history()
    h.received.insert(0, recv(0, 1, "POST", CLONE_PATH, {"newid": 120, "name": "cx-1"}, status=596))
    assert check_double_writes(h) == []


def test_the_same_write_from_two_commands_is_not_a_double_write() -> None:
    h = clean_history()
    h.received.append(recv(5, 3, "POST", "/nodes/pve1/qemu/100/status/start"))
    h.received.append(recv(6, 4, "POST", "/nodes/pve1/qemu/100/status/start"))
    assert check_double_writes(h) == []


def test_a_command_past_its_deadline_beyond_the_margin_is_late() -> None:
    h = clean_history()
    h.ops[0].deadline, h.ops[0].ended = 2.0, h.ops[0].started + 5.5
    found = check_outcomes(h, margin=3.0)
    assert [(v.kind, v.op_id) for v in found] == [("late", 1)]
    h.ops[0].ended = h.ops[0].started + 4.9
    assert check_outcomes(h, margin=3.0) == []


def test_tracebacks_untyped_failures_odd_exit_codes_and_exit_4_without_upid_are_found() -> None:
    h = clean_history()
    h.ops = [op(1, exit_code=1, stderr="Traceback (most recent call last):\n  ...\nKeyError: 'x'\n"),
             op(2, exit_code=1, stderr="pvectl: internal error: TypeError\n"),
             op(3, exit_code=7, stdout='{"error": {"type": "ApiError", "message": "m"}}'),
             op(4, exit_code=4, stdout='{"error": {"type": "TaskTimeout", "message": "still running"}}'),
             op(5, exit_code=130, stderr="pvectl: interrupted\n"),
             op(6, exit_code=130, stderr="pvectl: interrupted\n", interrupted=True),
             op(7, exit_code=-2, interrupted=True),                        # killed by the SIGINT at start-up
             op(8, exit_code=-2, interrupted=True, stderr=(
                 'Traceback (most recent call last):\n  File "/x/src/pvectl/cli/main.py", line 10, in <module>\n'
                 '    import argparse\nKeyboardInterrupt\n')),
             # the interpreter's own start-up, before any pvectl code ran: nothing pvectl can catch
             op(9, exit_code=1, interrupted=True, stderr=(
                 'Traceback (most recent call last):\n  File "/venv/bin/pvectl", line 3, in <module>\n'
                 '    import re\n  File "/usr/lib/python3.11/re/__init__.py", line 124, in <module>\n'
                 'KeyboardInterrupt\n')),
             op(10, exit_code=1, stderr=('Traceback (most recent call last):\n  File "/venv/bin/pvectl", line 3, '
                                         'in <module>\nKeyboardInterrupt\n'))]
    kinds = [(v.kind, v.op_id) for v in check_outcomes(h)]
    assert ("traceback", 1) in kinds and ("untyped-error", 1) in kinds
    assert ("internal-error", 2) in kinds
    assert ("exit-code", 3) in kinds
    assert ("exit-4-without-upid", 4) in kinds
    assert ("exit-code", 5) in kinds and not any(o in (6, 7) for _, o in kinds)
    assert ("traceback", 8) in kinds and ("exit-code", 8) not in kinds
    assert not any(o == 9 for _, o in kinds)
    assert ("traceback", 10) in kinds                     # 10 was never sent a SIGINT


def test_exit_4_names_the_task_and_its_resume_command_or_says_nothing_changed_and_how_to_re_run() -> None:
    h = clean_history()
    upid = "UPID:pve1:00001000:00000001:6B000000:qmclone:9000:root@pam!op1:"
    h.ops = [op(1, exit_code=4, stdout=f'{{"error": {{"type": "TaskTimeout", "message": "{upid} still running"}}}}'),
             op(2, exit_code=4, stdout=f'{{"error": {{"type": "TaskTimeout", "message": "still running", '
                                       f'"hint": "resume with: pvectl task wait {upid}"}}}}'),
             op(3, exit_code=4, stdout='{"error": {"type": "TaskTimeout", "message": "the deadline passed before '
                                       'the clone started", "hint": "run the command again"}}'),
             op(4, exit_code=4, stdout='{"error": {"type": "TaskTimeout", "message": "deadline reached before the '
                                       'request was sent; nothing changed", "hint": "run it again: pvectl vm '
                                       'reboot 100"}}'),
             op(5, exit_code=4, stdout='{"error": {"type": "DeadlineExceeded", "message": "GET /cluster/resources: '
                                       'no answer", "hint": "nothing was changed by it; retry with a longer '
                                       '--timeout"}}'),
             op(6, exit_code=4, stdout='{"error": {"type": "DeadlineExceeded", "message": "POST ...: no answer", '
                                       '"hint": "the request may have been applied: check the state"}}'),
             # the task, and the command that resumes (a re-run finishes what is left)
             op(7, exit_code=4, stdout=f'{{"error": {{"type": "ProvisionFailed", "message": "VM 120 cloned (task '
                                       f'{upid})", "hint": "run the command again once that clone is done"}}}}'),
             # the clone's node did not answer the task list: the VM in flight, and the re-run
             op(8, exit_code=4, stdout='{"error": {"type": "ProvisionFailed", "message": "VM 120 is still being '
                                       'cloned at the deadline", "hint": "run the command again once the clone is '
                                       'done (pvectl vm status 120)"}}'),
             op(9, exit_code=4, stdout='{"error": {"type": "ProvisionFailed", "message": "VM 120 is still being '
                                       'cloned at the deadline"}}')]
    flagged = sorted(o for k, o in ((v.kind, v.op_id) for v in check_outcomes(h)) if k == "exit-4-without-upid")
    assert flagged == [1, 3, 6, 9]


def test_a_killed_client_is_a_hang() -> None:
    h = clean_history()
    h.ops[0].killed, h.ops[0].exit_code = True, None
    assert [(v.kind, v.op_id) for v in check_outcomes(h)] == [("hang", 1)]


def test_a_failed_clone_that_made_a_vm_must_report_it() -> None:
    h = clean_history()
    h.final_vms[120] = vm(120, "cx-1")
    h.ops = [op(1, exit_code=5, names=["cx-1"], stdout='{"error": {"type": "NodeUnreachable", "message": "m"}}',
                stderr="pvectl: cx-1 [120]: clone 50%\n")]   # a progress line is not a report
    found = check_state_reported(h)
    assert [(v.kind, v.op_id) for v in found] == [("state-not-reported", 1)]
    h.ops[0].stdout = '{"error": {"type": "ProvisionFailed", "message": "VM 120 made; nothing was created"}}'
    assert "says nothing was created" in check_state_reported(h)[0].detail
    h.ops[0].stdout = '{"error": {"type": "ProvisionFailed", "message": "VM 120 (cx-1) left locked"}}'
    assert check_state_reported(h) == []


def test_a_task_a_command_started_must_be_reported_unless_a_hung_node_held_it_past_the_command() -> None:
    """Op 2 (a delete) failed and its DELETE started a task: the report must name it. When the node
    carried the DELETE out only after op 2 had ended (held by a hang), op 2 could not know it: its
    "may or may not have been applied" is then the report."""
    h = clean_history()
    h.ops[1].exit_code = 5
    h.ops[1].stdout = ('{"error": {"type": "NodeUnreachable", "message": "DELETE /nodes/pve1/qemu/120: no answer; '
                       'it may or may not have been applied"}}')
    h.ops[1].started, h.ops[1].ended = 102.0, 103.0
    h.received[1].carried_out = 102.5                 # carried out while op 2 waited: it must say so
    assert [v.kind for v in check_state_reported(h)] == ["state-not-reported"]
    h.received[1].carried_out = 104.0                 # carried out after op 2 ended
    assert check_state_reported(h) == []
    h.ops[1].stdout = '{"error": {"type": "NodeUnreachable", "message": "DELETE: connection refused"}}'
    assert [v.kind for v in check_state_reported(h)] == ["state-not-reported"]     # and it must say it may


def test_a_vmid_reported_created_twice_without_a_delete_between() -> None:
    h = clean_history()
    h.ops.append(op(3, names=["cx-2"], result={"vmid": 120, "name": "cx-2", "result": "created"}))
    assert check_vmid_claims(h) == []         # VM 120 was destroyed between the two
    h.received.pop(1)                         # ... and now it was not
    assert [v.kind for v in check_vmid_claims(h)] == ["vmid-claimed-twice"]


def test_audit_must_match_what_the_cluster_carried_out() -> None:
    h = clean_history()
    h.audit.pop(2)                                             # the delete is not audited
    found = check_audit(h)
    assert [(v.kind, v.op_id) for v in found] == [("audit", 2)] and "audited 0" in found[0].detail
    h = clean_history()
    h.audit.append(audit_line(2, "PUT", "/nodes/pve1/qemu/120/config"))   # audited as sent, never received
    assert "the cluster carried it out 0" in check_audit(h)[0].detail
    h = clean_history()
    h.audit[1]["result"] = "clone failed"                     # task result differs from the cluster's
    assert "ended 'clone failed'" in check_audit(h)[0].detail
    h.audit[1]["result"] = "still running at the deadline"   # no claim about how it ended
    assert check_audit(h) == []


def test_a_successful_clone_must_leave_a_finished_vm() -> None:
    h = clean_history()
    h.ops[1].started, h.ops[1].ended = 102.0, 103.0       # the delete of VM 120 came after the clone
    assert check_clones_finished(h) == []
    h.ops[0].argv += ["--start"]
    h.ops[0].result = {"vmid": 120, "name": "cx-1", "result": "exists", "status": "stopped"}
    h.after_op[1] = {120: VmState(120, "cx-1", "pve1", None, False, "ubuntu;template", "stopped")}
    details = [v.detail for v in check_clones_finished(h)]
    assert len(details) == 2
    assert "VM 120 stopped, though --start" in details[0] and "template's tag 'template'" in details[1]
    h.ops[0].result["status"] = "running"
    h.after_op[1][120].tags = "ubuntu"
    assert check_clones_finished(h) == []
    # deleted right after, and its VMID already taken by another clone in flight: not this op's VM
    h.after_op[1] = {120: VmState(120, "cx-9", "pve1", "clone", False, "ubuntu;template", "stopped")}
    assert check_clones_finished(h) == []
    h.after_op[1][120].lock = None
    assert "is named 'cx-9', not 'cx-1'" in check_clones_finished(h)[0].detail
    # ... unless a delete of it succeeded while the clone command ran (its VMID was used again since)
    h.ops.append(op(3, "delete", target=120, elapsed=0.5))
    assert check_clones_finished(h) == []
    h.ops[-1].exit_code = 1                       # a delete that failed removed nothing
    assert "is named 'cx-9', not 'cx-1'" in check_clones_finished(h)[0].detail
    h.ops.pop()
    # another command's delete already under way (its config is gone, the lock is `destroyed`)
    h.after_op[1] = {120: VmState(120, None, "pve1", "destroyed", False, "", "stopped")}
    assert check_clones_finished(h) == []
    h.after_op[1] = {120: VmState(120, "cx-1", "pve1", "clone", False, "ubuntu;template", "stopped")}
    assert "is still being cloned" in check_clones_finished(h)[0].detail
