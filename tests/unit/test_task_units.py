"""The pure parts of pvectl.tasks: one Deadline for a workflow, and progress lines of task logs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pvectl.errors import TaskFailed
from pvectl.tasks import Deadline, Task, TaskResult, TasksApi, TaskStatus, parse_progress

GIB = 1024**3


def test_no_deadline_never_expires() -> None:
    d = Deadline(None)
    assert d.remaining() is None and not d.expired()


def test_a_deadline_counts_down_and_expires() -> None:
    d = Deadline(60)
    assert 59 < d.remaining() <= 60 and not d.expired()      # type: ignore[operator]
    gone = Deadline(0)
    assert gone.expired() and gone.remaining() <= 0          # type: ignore[operator]
    assert Deadline(-1).expired()


def test_of_keeps_a_deadline_and_makes_one_from_seconds() -> None:
    d = Deadline(5)
    assert Deadline.of(d) is d
    assert 4 < Deadline.of(5).remaining() <= 5               # type: ignore[operator]
    assert Deadline.of(None).remaining() is None


@pytest.mark.parametrize("line,parsed", [
    # a unit the table does not know counts as bytes
    ("transferred 100 bytes of 400 bytes (25.00%)", (0.25, 100, 400, "copy")),
    ("migration active, transferred 10 foo of 40 foo VM-state, 1 foo/s", (0.25, 10, 40, "migrate")),
    # a migration that sent more than the VM's state (dirty pages sent again) is at most done
    ("migration active, transferred 5.0 GiB of 4.0 GiB VM-state, 399.1 MiB/s", (1.0, 5 * GIB, 4 * GIB, "migrate")),
    ("migration active, transferred 1.0 GiB of 0 B VM-state, 1 B/s", (0.0, GIB, 0, "migrate")),
])
def test_progress_units_and_limits(line: str, parsed: tuple[float, int, int, str]) -> None:
    assert parse_progress(line) == parsed


class _Transport:
    """Answers GET /nodes/{node}/tasks from a dict; records each call."""

    def __init__(self, answers: dict[str, list[dict[str, object]]], online: tuple[str, ...] = ()) -> None:
        self.answers = answers
        self.online = online
        self.calls: list[tuple[str, dict[str, object], str | None]] = []

    def get(self, path: str, params: dict[str, object], node: str | None = None) -> list[dict[str, object]]:
        if path == "/cluster/resources":        # the node list
            return [{"type": "node", "node": n, "status": "online" if n in self.online else "offline"}
                    for n in self.answers]
        self.calls.append((path, dict(params), node))
        return self.answers[path.split("/")[2]]


def _tasks_api(answers: dict[str, list[dict[str, object]]], online: tuple[str, ...]) -> tuple[TasksApi, _Transport]:
    transport = _Transport(answers, online)
    return TasksApi(SimpleNamespace(transport=transport)), transport  # type: ignore[arg-type]


UPID1 = "UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam!pvectl:"
UPID2 = "UPID:pve2:000C1A2C:03B4C5D7:66F1E2D4:qmstart:100:root@pam:"


def test_task_list_asks_every_online_node_and_sorts_newest_first() -> None:
    api, transport = _tasks_api({
        "pve1": [{"upid": UPID1, "node": "pve1", "type": "qmclone", "id": 9000, "user": "root@pam",
                  "tokenid": "pvectl", "status": "OK", "starttime": 100, "endtime": 130}],
        "pve2": [{"upid": UPID2, "starttime": "200"}],
        "pve3": [],
    }, online=("pve1", "pve2"))
    tasks = api.list()
    assert transport.calls == [("/nodes/pve1/tasks", {"source": "all", "limit": 50}, "pve1"),
                               ("/nodes/pve2/tasks", {"source": "all", "limit": 50}, "pve2")]
    assert [t.to_dict() for t in tasks] == [
        {"upid": UPID2, "node": "pve2", "type": "", "id": "", "user": "", "status": "", "starttime": 200,
         "endtime": None},
        {"upid": UPID1, "node": "pve1", "type": "qmclone", "id": "9000", "user": "root@pam!pvectl", "status": "OK",
         "starttime": 100, "endtime": 130},
    ]


def test_task_list_filters_go_to_the_one_node_asked() -> None:
    api, transport = _tasks_api({"pve3": []}, online=())
    assert api.list(node="pve3", running=True, vmid=100, limit=5) == []
    assert transport.calls == [("/nodes/pve3/tasks", {"source": "active", "limit": 5, "vmid": 100}, "pve3")]


def test_status_and_result_records() -> None:
    st = TaskStatus(upid=UPID1, node="pve1", type="qmclone", id="9000", user="root@pam!pvectl", status="stopped",
                    exitstatus="WARNINGS: 2", starttime=100)
    assert st.to_dict() == {"upid": UPID1, "node": "pve1", "type": "qmclone", "id": "9000",
                            "user": "root@pam!pvectl", "status": "stopped", "exitstatus": "WARNINGS: 2",
                            "starttime": 100}
    assert st.ok and not st.running
    res = TaskResult(UPID1, "OK", ["WARN: slow"], polls=3)
    assert res.to_dict() == {"upid": UPID1, "exitstatus": "OK", "warnings": ["WARN: slow"]}
    assert TaskResult(UPID1, "OK").to_dict()["warnings"] == []


class _TaskTransport:
    """GET .../status answers `status`; GET .../log serves `log` lines by start/limit like pvedaemon."""

    def __init__(self, status: dict[str, object], log: list[str]) -> None:
        self.status, self.lines, self.calls = status, log, []  # type: ignore[var-annotated]

    def get(self, path: str, params: object = None, node: str | None = None) -> dict[str, object]:
        self.calls.append(("GET", path, params, node))
        return self.status

    def request(self, method: str, path: str, params: dict[str, int], node: str | None = None,
                raw: bool = False) -> SimpleNamespace:
        self.calls.append((method, path, dict(params), node))
        start, limit = params["start"], params["limit"]
        chunk = self.lines[start:start + limit] if limit else self.lines[start:]
        return SimpleNamespace(data=[{"n": start + i + 1, "t": t} for i, t in enumerate(chunk)],
                               total=len(self.lines))


QUOTED1 = "UPID%3Apve1%3A000C1A2B%3A03B4C5D6%3A66F1E2D3%3Aqmclone%3A9000%3Aroot%40pam%21pvectl%3A"


def test_task_status_reads_the_upids_node_and_falls_back_to_the_upid() -> None:
    t = _TaskTransport({"status": "stopped", "exitstatus": "OK", "type": "qmclone", "id": "9000",
                        "starttime": 1727128275}, [])
    task = Task(SimpleNamespace(transport=t), UPID1)  # type: ignore[arg-type]
    assert str(task) == UPID1
    assert task.status().to_dict() == {"upid": UPID1, "node": "pve1", "type": "qmclone", "id": "9000",
                                       "user": "root@pam!pvectl", "status": "stopped", "exitstatus": "OK",
                                       "starttime": 1727128275}
    assert t.calls == [("GET", f"/nodes/pve1/tasks/{QUOTED1}/status", None, "pve1")]
    t.status = {}                        # nothing but the status: the rest comes from the UPID
    assert task.status().to_dict() == {"upid": UPID1, "node": "pve1", "type": "qmclone", "id": "9000",
                                       "user": "root@pam!pvectl", "status": "running", "exitstatus": None,
                                       "starttime": 0x66F1E2D3}


def test_task_log_is_read_incrementally_and_tail_reads_it_once() -> None:
    t = _TaskTransport({}, ["line 1", "line 2", "line 3"])
    task = Task(SimpleNamespace(transport=t), UPID1)  # type: ignore[arg-type]
    assert task.log(start=1, limit=1) == (["line 2"], 3)
    assert task.read_new_lines() == ["line 1", "line 2", "line 3"]
    t.lines.append("line 4")
    assert task.read_new_lines() == ["line 4"]
    assert task.tail(2) == ["line 3", "line 4"]
    assert [c[2] for c in t.calls] == [{"start": 1, "limit": 1}, {"start": 0, "limit": 0}, {"start": 3, "limit": 0}]
    fresh = Task(SimpleNamespace(transport=_TaskTransport({}, ["a", "b", "c"])), UPID1)  # type: ignore[arg-type]
    assert fresh.tail(2) == ["b", "c"] and fresh.tail() == ["a", "b", "c"]


def test_an_empty_log_says_no_content_and_gives_no_new_lines() -> None:
    # pvedaemon answers a log read past the end with one line "no content" and total 1
    task = Task(SimpleNamespace(transport=_TaskTransport({}, ["no content"])), UPID1)  # type: ignore[arg-type]
    assert task.read_new_lines() == []


def _status(exitstatus: str | None) -> TaskStatus:
    return TaskStatus(upid=UPID1, node="pve1", type="qmclone", id="9000", user="root@pam", status="stopped",
                      exitstatus=exitstatus, starttime=1)


def test_finish_collects_warnings_and_reads_no_log_for_a_clean_ok() -> None:
    t = _TaskTransport({}, ["WARN: disk slow", "copying", "WARN: no agent", "TASK WARNINGS: 2"])
    task = Task(SimpleNamespace(transport=t), UPID1)  # type: ignore[arg-type]
    assert task._finish(_status("OK"), 4).to_dict() == {"upid": UPID1, "exitstatus": "OK", "warnings": []}
    assert t.calls == []
    res = task._finish(_status("WARNINGS: 2"), 5)
    assert (res.exitstatus, res.warnings, res.polls) == ("WARNINGS: 2", ["WARN: disk slow", "WARN: no agent"], 5)


def test_finish_raises_with_the_last_eight_log_lines_but_not_the_task_line() -> None:
    lines = [f"step {i}" for i in range(10)] + ["TASK ERROR: clone failed"]
    task = Task(SimpleNamespace(transport=_TaskTransport({}, lines)), UPID1)  # type: ignore[arg-type]
    with pytest.raises(TaskFailed) as ei:
        task._finish(_status("clone failed"), 3)
    assert ei.value.log_tail == [f"step {i}" for i in range(2, 10)]
    assert (ei.value.exitstatus, ei.value.node, ei.value.upid) == ("clone failed", "pve1", UPID1)
    with pytest.raises(TaskFailed) as ei:
        task._finish(_status(None), 3)
    assert ei.value.exitstatus == "unexpected status"
