"""The task list, a task's status and log, stopping a task (pve-manager API2/Tasks.pm, Cluster.pm)."""

from __future__ import annotations

from typing import Any

from ..models import TaskRecord, Token
from ..tasks import DecodedUpid, decode_upid
from .common import param_fail, perm_fail
from .core import BackendCore


class TaskListMixin(BackendCore):
    def task_visible(self, token: Token, node: str, user: str) -> bool:
        # API2/Tasks.pm: own tasks, or Sys.Audit on /nodes/<node>
        return user == token.tokenid or self.has(token, f"/nodes/{node}", "Sys.Audit")

    def tasks_list(self, node: str, token: Token, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        # pve-manager API2/Tasks.pm::node_tasks (pve-semantics §1.3)
        self.node(node)
        source = params.get("source", "archive")
        vmid = params.get("vmid")
        typefilter = params.get("typefilter")
        userfilter = params.get("userfilter")
        errors_only = params.get("errors")
        statusfilter = set(str(params.get("statusfilter", "")).split(",")) - {""}
        items = []
        for rec in self.engine.records():
            if rec.node != node:
                continue
            running = rec.status == "running"
            if (running and source == "archive") or (not running and source == "active"):
                continue
            u = decode_upid(rec.upid)
            if not self.task_visible(token, node, u.user):
                continue
            if vmid is not None and u.id != str(vmid):
                continue
            if typefilter and typefilter not in u.type:
                continue
            if userfilter and userfilter not in u.user:
                continue
            status = "RUNNING" if running else (rec.exitstatus or "unexpected status")
            kind = "ok" if status == "OK" else "warning" if status.startswith("WARNINGS") else \
                "unknown" if status in {"RUNNING", "unexpected status"} else "error"
            if errors_only and kind in {"ok", "warning"}:
                continue
            if statusfilter and kind not in statusfilter:
                continue
            item = self.task_fields(rec.upid)
            item["status"] = status
            if not running:
                item["endtime"] = rec.endtime
            items.append(item)
        items.sort(key=lambda t: t["starttime"], reverse=True)
        total = len(items)
        start = int(params.get("start", 0))
        limit = int(params.get("limit", 50))
        return items[start:start + limit], total

    @staticmethod
    def task_fields(upid: str) -> dict[str, Any]:
        u = decode_upid(upid)
        d: dict[str, Any] = {"upid": upid, "node": u.node, "pid": u.pid, "pstart": u.pstart,
                             "starttime": u.starttime, "type": u.type, "id": u.id, "user": u.user}
        if "!" in u.user:    # Tasks.pm $convert_token_task
            d["user"], d["tokenid"] = u.user.split("!", 1)
        return d

    def _task_record(self, node: str, upid: str) -> tuple[TaskRecord | None, DecodedUpid]:
        try:
            u = decode_upid(upid)
        except ValueError:
            raise param_fail({"upid": "unable to parse worker upid"}) from None
        rec = self.engine.record(upid)
        if rec is None or rec.node != node or u.node != node:
            return None, u
        return rec, u

    def task_status(self, node: str, upid: str, token: Token) -> dict[str, Any]:
        rec, u = self._task_record(node, upid)
        if rec is None:
            raise param_fail({"upid": "no such task"})
        if not self.task_visible(token, node, u.user):
            raise perm_fail(f"/nodes/{node}", ["Sys.Audit"])
        d = self.task_fields(upid)
        d["status"] = rec.status
        if rec.status == "stopped":
            d["exitstatus"] = rec.exitstatus
        return d

    def task_log(self, node: str, upid: str, token: Token, start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        # pve-manager Tasks.pm::read_task_log, pve-common Tools.pm::dump_logfile (row 2)
        rec, u = self._task_record(node, upid)
        if rec is None:
            return [{"n": 1, "t": "unable to open file - No such file or directory"}], 1
        if not self.task_visible(token, node, u.user):
            raise perm_fail(f"/nodes/{node}", ["Sys.Audit"])
        with self.mu:
            lines = list(rec.lines)
        if not lines:
            return [{"n": 1, "t": "no content"}], 1
        end = len(lines) if limit == 0 else start + limit
        return [{"n": i + 1, "t": lines[i]} for i in range(start, min(end, len(lines)))], len(lines)

    def task_stop(self, node: str, upid: str, token: Token) -> None:
        rec, u = self._task_record(node, upid)
        if rec is None:
            raise param_fail({"upid": "no such task"})
        if u.user != token.tokenid and not self.has(token, f"/nodes/{node}", "Sys.Modify"):
            raise perm_fail(f"/nodes/{node}", ["Sys.Modify"])
        self.engine.stop(upid)
        self.bandwidth.wake()
