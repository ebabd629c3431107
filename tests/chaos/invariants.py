"""The invariants of a chaos run, each a pure function of a `History` that returns the violations.

- duplicate-name: two VMs carry a name pvectl was asked to make;
- vmid-claimed-twice: two commands report the same VMID created with no successful delete between;
- lost-vm: a VM is gone and no command that reported success (or the delete's UPID) removed it;
- outcome: a command failed without a typed error, with an undocumented exit code, with a traceback
  or `internal error`, or ran past its deadline by more than the margin; exit 4 ("still running at the
  deadline") without either a UPID and the command that resumes it, or the plain statement that nothing
  changed (the deadline came before anything was sent, or a read had no answer) and how to re-run;
- state-not-reported: a command that failed or was interrupted does not name a VM it made;
- double-write: one command's write reached the cluster twice although the first was carried out;
- audit: the audit log disagrees with what the cluster carried out (writes, UPIDs, task results);
- clone-unfinished: a clone that exits 0 leaves its VM unfinished (not started though `--start` was
  asked for, still tagged as a template, or not under its name).
"""

from __future__ import annotations

import json
import re
import signal
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .history import History, OpRecord, Received

DOCUMENTED_EXIT_CODES = frozenset({0, 1, 2, 3, 4, 5})   # DESIGN §3
INTERRUPTED_EXIT = 130
DEADLINE_MARGIN = 3.0     # seconds past --timeout still accepted (process start-up, last answer)
_CLONE_PATH = re.compile(r"^/nodes/[^/]+/qemu/\d+/clone$")
_VM_PATH = re.compile(r"^/nodes/[^/]+/qemu/(\d+)$")
_NOTHING_MADE = re.compile(r"nothing (was )?created", re.IGNORECASE)
_UNCERTAIN = "may or may not have been applied"
_RESUME = re.compile(r"pvectl task (wait|status) UPID:|resume with", re.IGNORECASE)
_NOTHING_CHANGED = re.compile(r"nothing (was )?changed", re.IGNORECASE)
_IN_FLIGHT = re.compile(r"\bVM \d+ is still being cloned at the deadline")
_RERUN = re.compile(r"\bretry\b|\brun (it|the command|the same command) again\b|\bre-run\b", re.IGNORECASE)


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str
    op_id: int | None = None

    def __str__(self) -> str:
        where = f" [op {self.op_id}]" if self.op_id is not None else ""
        return f"{self.kind}{where}: {self.detail}"


def check_all(h: History, *, margin: float = DEADLINE_MARGIN) -> list[Violation]:
    checks: list[Callable[[History], list[Violation]]] = [
        check_duplicate_names, check_vmid_claims, check_lost_vms,
        lambda hist: check_outcomes(hist, margin=margin), check_state_reported, check_double_writes,
        check_audit, check_clones_finished,
    ]
    out: list[Violation] = []
    for check in checks:
        out.extend(check(h))
    return out


# ------------------------------------------------------------------------------------------ names
SNAPSHOT_READ = 0.5      # seconds a snapshot's read may take after the time it is recorded with


def check_duplicate_names(h: History) -> list[Violation]:
    """One violation per name, with the most VMs ever seen holding it at once. While two commands race
    for one name, both clones exist for a moment (names protocol step 2: the lower VMID keeps it, the
    other command removes its own and reports that): a snapshot read while a command asking for the
    name still ran does not count; one read after they all ended, and the final state, do."""
    worst: dict[str, set[int]] = {}
    views: list[tuple[float | None, dict[int, Any]]] = [(t, vms) for t, vms in h.snapshots] + [(None, h.final_vms)]
    for taken, vms in views:
        by_name: dict[str, set[int]] = defaultdict(set)
        for vm in vms.values():
            if vm.name and vm.name.startswith(h.name_prefix):
                by_name[vm.name].add(vm.vmid)
        for name, ids in by_name.items():
            if taken is not None and any(name in op.names and op.started <= taken + SNAPSHOT_READ
                                         and op.ended >= taken for op in h.ops):
                continue
            if len(ids) > 1 and len(ids) > len(worst.get(name, ())):
                worst[name] = ids
    out: list[Violation] = []
    for name, ids in sorted(worst.items()):
        makers = sorted({op.op_id for op in h.ops if name in op.names})
        out.append(Violation("duplicate-name", f"VMs {sorted(ids)} are all named {name!r} "
                             f"(asked for by ops {makers})"))
    return out


# ---------------------------------------------------------------------------------------- VMIDs
def created_claims(op: OpRecord) -> list[tuple[int, str]]:
    """(vmid, name) of every VM a command reports as `created`."""
    items: Iterable[Any]
    r = op.result
    if isinstance(r, dict) and isinstance(r.get("results"), list):
        items = r["results"]
    elif isinstance(r, list):
        items = r
    else:
        items = [r]
    return [(int(i["vmid"]), str(i.get("name"))) for i in items
            if isinstance(i, dict) and i.get("result") == "created" and isinstance(i.get("vmid"), int)]


def _deletes_carried_out(h: History) -> Counter[int]:
    """VMID -> how many destroys the cluster carried out for it (whatever the command reported)."""
    out: Counter[int] = Counter()
    for r in h.received:
        m = _VM_PATH.match(r.path)
        if r.method == "DELETE" and r.ok and m:
            task = h.tasks.get(r.upid or "")
            if task is None or task.exitstatus in (None, "OK"):
                out[int(m.group(1))] += 1
    return out


def check_vmid_claims(h: History) -> list[Violation]:
    claims: dict[int, list[tuple[OpRecord, str]]] = defaultdict(list)
    for op in h.ops:
        for vmid, name in created_claims(op):
            claims[vmid].append((op, name))
    deletes = _deletes_carried_out(h)
    out: list[Violation] = []
    for vmid, cl in claims.items():
        if len(cl) > deletes[vmid] + 1:
            out.append(Violation("vmid-claimed-twice", f"VM {vmid} reported created by ops "
                                 f"{[op.op_id for op, _ in cl]} ({[n for _, n in cl]}) with "
                                 f"{deletes[vmid]} delete(s) between", cl[-1][0].op_id))
        op, name = cl[-1]
        vm = h.final_vms.get(vmid)
        if vm is not None and vm.name is not None and vm.name != name and not deletes[vmid]:
            out.append(Violation("vmid-claimed-twice", f"op reports VM {vmid} created as {name!r}, "
                                 f"but VM {vmid} is {vm.name!r}", op.op_id))
    return out


# ------------------------------------------------------------------------------------------ lost
def _ops_by_token(h: History) -> dict[str, OpRecord]:
    return {op.token: op for op in h.ops}


def clones_made(h: History) -> list[tuple[int, Received]]:
    """(VMID, the clone request that made it) for every clone the cluster accepted whose task ended OK
    or is still running. A VMID can appear more than once: it is free again after a delete."""
    made: list[tuple[int, Received]] = []
    for r in h.received:
        if r.method == "POST" and r.ok and _CLONE_PATH.match(r.path) and "newid" in r.params:
            task = h.tasks.get(r.upid or "")
            if task is None or task.status != "stopped" or task.exitstatus == "OK" \
                    or (task.exitstatus or "").startswith("WARNINGS"):
                made.append((int(r.params["newid"]), r))
    return made


def check_lost_vms(h: History) -> list[Violation]:
    """Each VM that existed is still there, or a command deleted it and said so (exit 0, or the UPID of
    the destroy task). Judged per destroy the cluster carried out, since VMIDs are reused after it."""
    existed: set[int] = {v for v, vm in h.initial_vms.items() if not vm.template}
    for _, vms in h.snapshots:
        existed.update(v for v, vm in vms.items() if not vm.template)
    existed.update(vmid for vmid, _ in clones_made(h))
    by_token = _ops_by_token(h)
    deleted: set[int] = set()
    out: list[Violation] = []
    for r in h.received:
        m = _VM_PATH.match(r.path)
        if r.method != "DELETE" or not r.ok or not m:
            continue
        vmid = int(m.group(1))
        deleted.add(vmid)
        task = h.tasks.get(r.upid or "")
        if task is not None and task.status == "stopped" and task.exitstatus != "OK":
            continue                                    # the destroy failed: the VM was not removed
        op = by_token.get(r.token or "")
        if op is not None and op.exit_code != 0 and not (r.upid and r.upid in op.output):
            out.append(Violation("lost-vm", f"VM {vmid} was destroyed by {op.summary()}, which exited "
                                 f"{op.exit_code} without the destroy task's UPID", op.op_id))
    for vmid in sorted(existed - set(h.final_vms) - deleted):
        out.append(Violation("lost-vm", f"VM {vmid} is gone and no command deleted it"))
    return out


# -------------------------------------------------------------------------------------- outcomes
def error_object(op: OpRecord) -> dict[str, Any] | None:
    """The `{"error": {...}}` a failed CLI command prints: all of stdout, or one line of either stream."""
    candidates = [op.stdout] + [ln for ln in (op.stdout + "\n" + op.stderr).splitlines()
                                if ln.lstrip().startswith("{") and '"error"' in ln]
    for text in candidates:
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return doc["error"]
    return None


def has_typed_report(op: OpRecord) -> bool:
    if op.error_type:
        return True
    err = error_object(op)
    if err is not None and err.get("type") and err.get("message"):
        return True
    # bulk commands report per VM: a result list where each failed item carries its error
    return isinstance(op.result, (dict, list)) and bool(op.result)


def check_outcomes(h: History, *, margin: float = DEADLINE_MARGIN) -> list[Violation]:
    out: list[Violation] = []
    for op in h.ops:
        v = lambda kind, detail, op=op: out.append(Violation(kind, f"{op.summary()}: {detail}", op.op_id))  # noqa: E731
        if op.untyped:
            v("untyped-error", op.untyped.strip().splitlines()[-1])
        if interrupted_before_pvectl_ran(op):
            continue                    # it never ran (and the interpreter's exit status is its own)
        if "Traceback (most recent call last)" in op.output:
            v("traceback", "printed a traceback")
        if "internal error" in op.output.lower():
            v("internal-error", _first_line_with(op.output, "internal error"))
        if op.killed:
            v("hang", f"still running {op.elapsed:.1f} s after start (deadline {op.deadline} s): killed")
        elif op.deadline is not None and op.elapsed > op.deadline + margin:
            v("late", f"ended after {op.elapsed:.1f} s, deadline {op.deadline} s + {margin} s margin")
        if op.killed or op.exit_code is None:
            continue
        # killed by the SIGINT itself (before Python's handler was in place): what a shell shows as 130
        allowed = DOCUMENTED_EXIT_CODES | ({INTERRUPTED_EXIT, -signal.SIGINT} if op.interrupted else set())
        if op.exit_code not in allowed:
            v("exit-code", f"exit {op.exit_code}")
        if op.exit_code not in (0, INTERRUPTED_EXIT, -signal.SIGINT) and not has_typed_report(op):
            v("untyped-error", f"exit {op.exit_code} without a typed error: {op.output.strip()[-200:]!r}")
        if op.exit_code == 4 and not exit_4_reported(op.output):
            v("exit-4-without-upid", "exit 4 with neither a UPID and the command to resume it, nor the "
                                     "statement that nothing changed and how to re-run")
    return out


_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+', re.MULTILINE)


def interrupted_before_pvectl_ran(op: OpRecord) -> bool:
    """A SIGINT that reached the interpreter's own start-up (its `site` import, the console script's
    imports) before any of pvectl's code ran: the KeyboardInterrupt traceback has no frame in pvectl's
    package. Nothing pvectl can catch; everything from its first line on must be one line, exit 130."""
    if not op.interrupted or not op.stderr.rstrip().endswith("KeyboardInterrupt"):
        return False
    return not any("/pvectl/" in f for f in _FRAME.findall(op.stderr))


def exit_4_reported(text: str) -> bool:
    """Exit 4 says "still running at the deadline": the output names the task (UPID) and how to resume,
    or - when nothing was sent, or only reads went unanswered - says that nothing changed and how to
    re-run the command; a clone whose task could not be read names the VM still being cloned and how to
    re-run."""
    if "UPID:" in text and (_RESUME.search(text) or _RERUN.search(text)):
        return True
    if _IN_FLIGHT.search(text) and _RERUN.search(text):
        return True         # the VM whose clone runs on, when its node did not answer the task list
    return bool(_NOTHING_CHANGED.search(text) and _RERUN.search(text))


def _first_line_with(text: str, needle: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if needle in ln.lower()), needle)


_PROGRESS = re.compile(r"^pvectl: [^\s:]+ \[\d+\]: ")


def report_text(op: OpRecord) -> str:
    """What a command reported when it ended: stdout, and stderr without its progress lines (which
    name VMs as the work goes on, not what was left at the end) unless they say FAILED or name a UPID."""
    keep = [ln for ln in op.stderr.splitlines()
            if not _PROGRESS.match(ln) or "FAILED" in ln or "UPID:" in ln]
    return op.stdout + "\n" + "\n".join(keep)


def _item_for(op: OpRecord, name: str) -> str | None:
    """The JSON text of a bulk result's item for VM `name`, if the result has items."""
    r = op.result
    items = r.get("results") if isinstance(r, dict) else r if isinstance(r, list) else None
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            return json.dumps(item)
    return None


def check_state_reported(h: History) -> list[Violation]:
    """A command that did not succeed reports every task it started (by UPID, or the VM its clone
    made by VMID), and never says "nothing was created" about a VM its clone made. A write a hung node
    held and carried out only after the command had ended cannot be reported by it: saying that the
    write may or may not have been applied is then the report."""
    by_token = _ops_by_token(h)
    made = {id(r): vmid for vmid, r in clones_made(h)}
    out: list[Violation] = []
    for r in h.received:
        op = by_token.get(r.token or "")
        if op is None or op.exit_code == 0 or op.killed or not (r.is_write and r.ok and r.upid):
            continue
        text = report_text(op)
        vmid = made.get(id(r))
        if vmid is not None:
            said = r.upid in text or re.search(rf"(?<![\d:]){vmid}(?![\d:])", text) is not None
            item = _item_for(op, str(r.params.get("name")))
            if not said:
                out.append(Violation("state-not-reported", f"{op.summary()} exited {op.exit_code} but does not "
                                     f"report VM {vmid} that its clone made", op.op_id))
            elif _NOTHING_MADE.search(item if item is not None else text):
                out.append(Violation("state-not-reported", f"{op.summary()} says nothing was created, but "
                                     f"its clone made VM {vmid} ({r.upid})", op.op_id))
        elif r.upid not in text:
            if _UNCERTAIN in text and r.carried_out > op.ended:
                continue      # held by a hung node until after the command ended, which said it may apply
            why = ("left its write uncertain (\"may or may not have been applied\") without re-reading the "
                   "state" if _UNCERTAIN in text else f"exited {op.exit_code}")
            out.append(Violation("state-not-reported", f"{op.summary()} {why}, and does not report task "
                                 f"{r.upid} it started ({r.method} {r.path})", op.op_id))
    return out


# --------------------------------------------------------------------------------------- writes
def check_double_writes(h: History) -> list[Violation]:
    groups: dict[tuple[Any, ...], list[Received]] = defaultdict(list)
    for r in h.received:
        if r.is_write and r.token and r.token not in h.injector_tokens:
            groups[r.identity()].append(r)
    by_token = _ops_by_token(h)
    out: list[Violation] = []
    for ident, rs in groups.items():
        if len(rs) > 1 and any(r.ok for r in rs[:-1]):
            op = by_token.get(rs[0].token or "")
            out.append(Violation("double-write", f"{rs[0].method} {rs[0].path} {dict(ident[3])} carried out "
                                 f"{len(rs)} times (statuses {[r.status for r in rs]})"
                                 + (f" by {op.summary()}" if op else ""), op.op_id if op else None))
    return out


# ---------------------------------------------------------------------------------------- audit
def check_audit(h: History) -> list[Violation]:
    by_token = _ops_by_token(h)
    got: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    upids: set[str] = set()
    for r in h.received:
        if r.is_write and r.ok and r.token and r.token not in h.injector_tokens:
            got[r.token][(r.method, r.path)] += 1
            if r.upid:
                upids.add(r.upid)
    audited: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    audited_ok: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    out: list[Violation] = []

    def op_id(token: str) -> int | None:
        op = by_token.get(token)
        return op.op_id if op else None

    for line in h.audit:
        token = str(line.get("token_id"))
        if line.get("event") == "write":
            key = (str(line.get("method")), str(line.get("path")))
            audited[token][key] += 1
            if line.get("result") in ("ok", "task started"):
                audited_ok[token][key] += 1
            upid = line.get("upid")
            if upid and upid not in upids:
                out.append(Violation("audit", f"audit names task {upid} that no carried-out write started",
                                     op_id(token)))
        elif line.get("event") == "task":
            upid = str(line.get("upid"))
            task = h.tasks.get(upid)
            said = str(line.get("result"))
            if "still running" in said:      # the command stopped waiting: no claim about the end
                continue
            if task is not None and task.status == "stopped" and task.exitstatus != said:
                out.append(Violation("audit", f"audit says task {upid} ended {line.get('result')!r}, "
                                     f"the cluster says {task.exitstatus!r}", op_id(token)))
    for token in sorted(set(got) | set(audited_ok)):
        for key in sorted(set(got[token]) | set(audited_ok[token])):
            n_got, n_aud, n_ok = got[token][key], audited[token][key], audited_ok[token][key]
            if n_got > n_aud:
                out.append(Violation("audit", f"{key[0]} {key[1]} carried out {n_got} time(s) for {token}, "
                                     f"audited {n_aud} time(s)", op_id(token)))
            if n_ok > n_got:
                out.append(Violation("audit", f"audit says {key[0]} {key[1]} succeeded {n_ok} time(s) for "
                                     f"{token}, the cluster carried it out {n_got} time(s)", op_id(token)))
    return out


# ------------------------------------------------------------------------------------ clones done
def deleted_during(h: History, clone: OpRecord) -> set[int]:
    """VMIDs removed by delete commands that succeeded and ran while `clone` ran."""
    return {op.target_vmid for op in h.ops if op.kind.startswith("delete") and op.exit_code == 0
            and op.target_vmid is not None and op.started < clone.ended and op.ended > clone.started}


def check_clones_finished(h: History, template_tag: str = "template") -> list[Violation]:
    """A clone that succeeded (created, or found it already made) reports a finished VM: started when
    `--start` was asked for, and - right after the command - under its name, without the template's tag."""
    out: list[Violation] = []
    for op in h.ops:
        if not op.kind.startswith("clone") or op.exit_code != 0:
            continue
        r = op.result
        items = r.get("results") if isinstance(r, dict) and "results" in r else r if isinstance(r, list) else [r]
        after = h.after_op.get(op.op_id, {})
        for item in items or []:
            if not isinstance(item, dict) or item.get("result") not in ("created", "exists"):
                continue
            vmid, name = item.get("vmid"), item.get("name")
            if "--start" in op.argv and item.get("status") != "running":
                out.append(Violation("clone-unfinished", f"{op.summary()} exited 0 ({item.get('result')}) "
                                     f"with VM {vmid} {item.get('status')}, though --start was asked for", op.op_id))
            vm = after.get(vmid) if isinstance(vmid, int) else None
            if vm is None or vm.lock == "destroyed" or (vm.lock == "clone" and vm.name != name):
                continue          # gone, being deleted by another command, or its VMID taken again by a clone
            if vmid in deleted_during(h, op):
                continue          # deleted by another command meanwhile (its VMID may be in use again)
            if vm.lock == "clone":
                out.append(Violation("clone-unfinished", f"{op.summary()} exited 0 ({item.get('result')}) but "
                                     f"VM {vmid} is still being cloned", op.op_id))
                continue
            if vm.name != name:
                out.append(Violation("clone-unfinished", f"{op.summary()} exited 0 ({item.get('result')}) but "
                                     f"VM {vmid} is named {vm.name!r}, not {name!r}", op.op_id))
            elif template_tag in re.split(r"[;, ]", vm.tags):
                out.append(Violation("clone-unfinished", f"{op.summary()} exited 0 ({item.get('result')}) but "
                                     f"VM {vmid} still carries the template's tag {template_tag!r}", op.op_id))
    return out
