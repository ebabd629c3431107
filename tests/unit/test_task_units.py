"""The pure parts of pvectl.tasks: one Deadline for a workflow, and progress lines of task logs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pvectl.tasks import Deadline, TaskResult, TasksApi, TaskStatus, parse_progress

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

    def __init__(self, answers: dict[str, list[dict[str, object]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, object], str | None]] = []

    def get(self, path: str, params: dict[str, object], node: str | None = None) -> list[dict[str, object]]:
        self.calls.append((path, dict(params), node))
        return self.answers[path.split("/")[2]]


def _tasks_api(answers: dict[str, list[dict[str, object]]], online: tuple[str, ...]) -> tuple[TasksApi, _Transport]:
    transport = _Transport(answers)
    nodes = [SimpleNamespace(name=n, status="online" if n in online else "offline") for n in answers]
    cluster = SimpleNamespace(transport=transport, nodes=SimpleNamespace(list=lambda: nodes))
    return TasksApi(cluster), transport  # type: ignore[arg-type]


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
