"""The write commands and task commands of the CLI against the simulator: exit codes, exact texts,
what the simulated cluster holds afterwards, dry-run curl lines, and the audit log.

`sys.argv` is set to what a shell would have given the process, since the audit log records the
command line from it.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cliharness import Run, token_config, variant_config

from pvectl.sim.cluster import Cluster as SimCluster

GIB = 1024**3


@pytest.fixture(autouse=True)
def _audit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(path))
    return path


@pytest.fixture
def pv(cli: Callable[..., Run], fresh_sim: SimCluster, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """`pvectl --config <sim config> ARGS` in this process (JSON output unless -o is given)."""

    def run(*args: str, config: Path | None = None) -> Run:
        argv = ["--config", str(config or fresh_sim.config_path), *args]
        monkeypatch.setattr(sys, "argv", ["pvectl", *argv])
        return cli(*argv)

    return run


def vm(sim: SimCluster, vmid: int) -> Any:
    return sim.backend.state.vms[vmid]


def tasks_on(sim: SimCluster, node: str) -> int:
    return sum(1 for r in sim.backend.engine.records() if r.node == node)


def error(r: Run) -> dict[str, Any]:
    assert r.out.count("\n") == 1, r.out
    return json.loads(r.out)["error"]


def writes_since(sim: SimCluster, seq: int) -> list[dict[str, Any]]:
    return [e for e in sim.requests_log(since=seq) if e["method"] != "GET"]


def snapshot(sim: SimCluster) -> dict[str, Any]:
    """The cluster's state without what changes by itself (task history, run-time counters)."""
    with sim.backend.mu:
        d = sim.backend.state.to_json()
    d.pop("tasks")
    return d


# ------------------------------------------------------------------------------------------ power
def test_start_stopped_vm_then_already_running(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    r = pv("vm", "start", "103")
    assert r.code == 0, r.err
    [row] = r.json
    assert (row["vmid"], row["action"], row["outcome"], row["exitstatus"], row["detail"]) == \
        (103, "start", "done", "OK", "running")
    assert vm(fresh_sim, 103).status == "running"

    before = tasks_on(fresh_sim, "pve1")
    seq = fresh_sim.server.requests.last_seq
    r = pv("-o", "table", "vm", "start", "103")
    assert r.code == 0
    assert "already running (qmpstatus running)" in r.out
    assert tasks_on(fresh_sim, "pve1") == before and writes_since(fresh_sim, seq) == []


def test_shutdown_and_stop_needs_yes(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    r = pv("vm", "shutdown", "100", "--shutdown-timeout", "30")
    assert r.code == 0 and r.json[0]["detail"] == "stopped" and vm(fresh_sim, 100).status == "stopped"

    seq = fresh_sim.server.requests.last_seq
    r = pv("vm", "stop", "102")
    assert r.code == 3
    assert error(r) == {"type": "GuardRefused",
                        "message": "stop is a hard power-off of VM 102 (like pulling the plug): data may be lost",
                        "hint": "prefer: pvectl vm shutdown VM; or add --yes to stop it anyway"}
    assert writes_since(fresh_sim, seq) == [] and vm(fresh_sim, 102).status == "running"
    r = pv("-o", "table", "vm", "stop", "102")
    assert r.code == 3 and r.out == ""
    assert r.err == ("pvectl: error: stop is a hard power-off of VM 102 (like pulling the plug): data may be lost "
                     "(hint: prefer: pvectl vm shutdown VM; or add --yes to stop it anyway)\n")

    r = pv("vm", "stop", "102", "--yes")
    assert r.code == 0 and r.json[0]["detail"] == "stopped (hard power-off)"
    assert vm(fresh_sim, 102).status == "stopped"


def test_reboot_stopped_vm_is_refused(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    seq = fresh_sim.server.requests.last_seq
    r = pv("vm", "reboot", "104")
    assert r.code == 3
    assert error(r)["message"] == "VM 104 (mq-01) is stopped: only a running VM can be rebooted"
    assert writes_since(fresh_sim, seq) == []


def test_several_vms_in_one_command(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    r = pv("vm", "start", "103", "104", "web-01")
    assert r.code == 0, r.err
    assert [(x["vmid"], x["outcome"]) for x in r.json] == [(103, "done"), (104, "done"), (100, "already")]
    assert vm(fresh_sim, 103).status == vm(fresh_sim, 104).status == "running"

    # all or nothing: a refusal for the last VM means no task for the first one
    seq = fresh_sim.server.requests.last_seq
    r = pv("vm", "reboot", "100", "106")
    assert r.code == 3 and error(r)["message"] == "VM 106 (worker-01) is stopped: only a running VM can be rebooted"
    assert writes_since(fresh_sim, seq) == []
    r = pv("vm", "start", "106", "no-such-vm")
    assert r.code == 1 and error(r)["message"] == "no VM named 'no-such-vm'"
    assert writes_since(fresh_sim, seq) == [] and vm(fresh_sim, 106).status == "stopped"


def test_no_wait_prints_upids_and_exits_while_the_task_runs(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    fresh_sim.backend.hold_lock(103, kind="")      # the start has to wait for the VM's flock
    try:
        r = pv("--no-wait", "vm", "start", "103")
        assert r.code == 0
        [row] = r.json
        assert row["outcome"] == "started" and row["exitstatus"] is None
        upid = row["upid"]
        assert upid.startswith("UPID:pve1:") and ":qmstart:103:" in upid
        st = pv("task", "status", upid)
        assert st.code == 0 and st.json["status"] == "running"
        r = pv("-o", "table", "--no-wait", "vm", "start", "104")
        assert r.code == 0 and ":qmstart:104:" in r.out
    finally:
        fresh_sim.backend.release_lock(103)


def test_failing_start_task_exits_1_with_the_error(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    fresh_sim.backend.fail_task(type="qmstart", message="start failed: QEMU exited with code 1")
    r = pv("vm", "start", "106")
    assert r.code == 1
    [row] = r.json
    assert (row["outcome"], row["exitstatus"], row["detail"]) == \
        ("failed", "start failed: QEMU exited with code 1", "start failed: QEMU exited with code 1")
    assert vm(fresh_sim, 106).status == "stopped"


def test_node_down_mid_workflow(pv: Callable[..., Run], fresh_sim: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The VM's node goes down right after the shutdown was accepted: the task's outcome is unknown.
    pvectl says so, names the node and the UPID to resume with, and exits 5 (node unreachable)."""
    from pvectl.http import Transport
    from pvectl.tasks import Task

    orig = Transport.request

    def request(self: Transport, method: str, path: str, params: Any = None, **kw: Any) -> Any:
        res = orig(self, method, path, params, **kw)
        if method == "POST" and path.endswith("/qemu/102/status/shutdown"):
            fresh_sim.stop_node("pve3")
        return res

    monkeypatch.setattr(Transport, "request", request)
    monkeypatch.setattr(Task, "LOST_GRACE", 0.5)       # how long the wait keeps polling a silent node
    r = pv("vm", "shutdown", "102")
    assert r.code == 5
    e = error(r)
    upid = e["upid"]
    assert upid.startswith("UPID:pve3:") and ":qmshutdown:102:" in upid
    assert e["type"] == "NodeUnreachable" and e["node"] == "pve3"
    assert e["message"].startswith(f"lost contact with pve3 while waiting for task {upid}: ")
    assert "node pve3 is not answering (595 Connection refused via " in e["message"]
    assert e["hint"] == f"the task's outcome is unknown; once pve3 answers again: pvectl task wait {upid}"


def test_permission_denied_on_power(pv: Callable[..., Run], fresh_sim: SimCluster, tmp_path: Path) -> None:
    cfg = token_config(fresh_sim, tmp_path, "audit103", {"/vms/103": ["VM.Audit"]})
    r = pv("-o", "table", "vm", "start", "103", config=cfg)
    assert r.code == 1
    assert r.err.startswith("pvectl: error: Permission check failed (/vms/103, VM.PowerMgmt) "
                            "(hint: grant VM.PowerMgmt on /vms/103 to the token's user")
    assert vm(fresh_sim, 103).status == "stopped"


# ------------------------------------------------------------------------------------------ delete
def _refused(pv: Callable[..., Run], sim: SimCluster, vmid: int, message: str, *args: str,
             config: Path | None = None) -> None:
    seq = sim.server.requests.last_seq
    r = pv("vm", "delete", str(vmid), *args, config=config)
    assert r.code == 3, (r.out, r.err)
    assert error(r)["message"] == message
    assert writes_since(sim, seq) == [] and vmid in sim.backend.state.vms


def test_delete_guards(pv: Callable[..., Run], fresh_sim: SimCluster, tmp_path: Path) -> None:
    _refused(pv, fresh_sim, 100, "VM 100 (web-01) is running: Proxmox refuses to destroy a running VM", "--yes")
    assert pv("vm", "stop", "101", "--yes").code == 0
    _refused(pv, fresh_sim, 101, "VM 101 (db-01) has protection enabled", "--yes")
    fresh_sim.backend.hold_lock(103)
    try:
        _refused(pv, fresh_sim, 103, "VM 103 (cache-01) is locked (backup): a task is using it", "--yes")
    finally:
        fresh_sim.backend.release_lock(103)
    _refused(pv, fresh_sim, 9000, "VM 9000 (ubuntu-24.04-cloud) is a template", "--yes")
    narrow = variant_config(fresh_sim.config_path, tmp_path / "narrow.yaml",
                            lambda d: d.update(vmid_ranges={"vms": "100-103", "templates": "9000-9999"}))
    _refused(pv, fresh_sim, 104, "VM 104 (mq-01) is outside the VMID ranges this config manages "
                                 "(vms 100-103, templates 9000-9999)", "--yes", config=narrow)
    _refused(pv, fresh_sim, 104, "deleting VM 104 (mq-01) needs confirmation")     # stdin is not a terminal


def test_delete_success_lists_the_disks(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    r = pv("-o", "table", "vm", "delete", "104", "--yes")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[:6] == ["VM 104 (mq-01) on pve2: deleted",
                         "  disk local-lvm:vm-104-cloudinit",
                         "  disk local-lvm:vm-104-disk-0",
                         '  Logical volume "vm-104-cloudinit" successfully removed.',
                         '  Logical volume "vm-104-disk-0" successfully removed.',
                         "  purging VM 104 from related configurations.."]
    assert lines[6].startswith("  task UPID:pve2:") and ":qmdestroy:104:" in lines[6]
    assert 104 not in fresh_sim.backend.state.vms
    assert not any(v.vmid == 104 for v in fresh_sim.backend.state.volumes.values())

    r = pv("vm", "delete", "9001", "--yes", "--allow-template")
    assert r.code == 0 and r.json["disks"] == ["local-lvm:vm-9001-cloudinit", "local-lvm:base-9001-disk-0"]
    assert 9001 not in fresh_sim.backend.state.vms


# ------------------------------------------------------------------------------------------ resize
def test_resize_disk(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    r = pv("-o", "table", "vm", "resize", "103", "--disk", "scsi0", "--size", "+14G")
    assert r.code == 0, r.err
    assert r.out == ("VM 103 (cache-01) on pve1:\n"
                     "  scsi0: 50.0 GiB -> 64.0 GiB (the guest must grow its filesystem)\n")
    assert vm(fresh_sim, 103).config["scsi0"] == "local-lvm:vm-103-disk-0,iothread=1,size=64G"

    seq = fresh_sim.server.requests.last_seq
    r = pv("vm", "resize", "103", "--disk", "scsi0", "--size", "32G")
    assert r.code == 3
    assert error(r)["message"] == ("disk scsi0 of VM 103 is 64.0 GiB; 32G would shrink it and Proxmox cannot "
                                   "shrink disks")
    assert writes_since(fresh_sim, seq) == []
    assert vm(fresh_sim, 103).config["scsi0"].endswith("size=64G")


def test_resize_cpu_memory(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    seq = fresh_sim.server.requests.last_seq
    r = pv("vm", "resize", "105", "--cores", "2", "--memory", "2G")
    assert r.code == 3
    assert error(r)["message"] == ("VM 105 is running: changing cores, memory takes effect only after a restart "
                                   "(Proxmox keeps it pending)")
    assert writes_since(fresh_sim, seq) == []

    r = pv("-o", "table", "vm", "resize", "105", "--cores", "2", "--memory", "2G", "--allow-running")
    assert r.code == 0
    assert r.out == ("VM 105 (api-01) on pve3:\n  cores: pending until the next start\n"
                     "  memory: pending until the next start\n")
    assert {k: str(v) for k, v in vm(fresh_sim, 105).pending.items()} == {"cores": "2", "memory": "2048"}

    r = pv("-o", "table", "vm", "resize", "104", "--cores", "3", "--memory", "1024")
    assert r.code == 0 and r.out == "VM 104 (mq-01) on pve2:\n  cores: applied\n  memory: applied\n"
    assert (str(vm(fresh_sim, 104).config["cores"]), str(vm(fresh_sim, 104).config["memory"])) == ("3", "1024")


# ------------------------------------------------------------------------------------------ set
def test_set(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    r = pv("-o", "table", "vm", "set", "104", "onboot=1", "description=db & cache = 1+1", "--delete", "agent")
    assert r.code == 0, r.err
    assert r.out == "VM 104 (mq-01) on pve2:\n  onboot: applied\n  description: applied\n  agent: applied\n"
    conf = vm(fresh_sim, 104).config
    assert (str(conf["onboot"]), conf["description"], "agent" in conf) == ("1", "db & cache = 1+1", False)

    seq = fresh_sim.server.requests.last_seq
    r = pv("vm", "set", "104", "cores=abc", "net0=bogus")
    assert r.code == 2
    e = error(r)
    assert e["type"] == "UsageError"
    assert e["message"].startswith("invalid config for VM 104: cores: type check ('integer') failed - got 'abc'; "
                                   "net0: invalid format")
    assert e["hint"] == "nothing was sent; see the key's format in the Proxmox API viewer (qemu config)"
    r = pv("vm", "set", "104", "onboot")
    assert r.code == 2 and "'onboot' is not KEY=VALUE" in error(r)["message"]
    assert writes_since(fresh_sim, seq) == []


def test_set_digest_conflict_keeps_the_other_change(pv: Callable[..., Run], fresh_sim: SimCluster,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pvectl.http import Transport

    orig = Transport.request

    def request(self: Transport, method: str, path: str, params: Any = None, **kw: Any) -> Any:
        if method == "PUT" and path.endswith("/qemu/104/config"):
            with fresh_sim.backend.mu:          # another admin saves the config in between
                vm(fresh_sim, 104).config["description"] = "changed in the web UI"
                fresh_sim.backend.changed()
        return orig(self, method, path, params, **kw)

    monkeypatch.setattr(Transport, "request", request)
    r = pv("-o", "table", "vm", "set", "104", "onboot=1")
    assert r.code == 1
    assert r.err.startswith("pvectl: error: checksum mismatch (file change by other user?)")
    conf = vm(fresh_sim, 104).config
    assert conf["description"] == "changed in the web UI" and "onboot" not in conf


# ------------------------------------------------------------------------------------------ dry-run
DRY_RUNS = [
    ("vm", "start", "103"),
    ("vm", "shutdown", "100", "--shutdown-timeout", "30", "--force-stop"),
    ("vm", "stop", "100", "--yes"),
    ("vm", "reboot", "100"),
    ("vm", "start", "103", "104"),
    ("vm", "delete", "104", "--yes"),
    ("vm", "delete", "9001", "--yes", "--allow-template", "--no-purge", "--keep-unreferenced-disks"),
    ("vm", "resize", "103", "--disk", "scsi0", "--size", "+10G"),
    ("vm", "resize", "104", "--cores", "2", "--memory", "4G"),
    ("vm", "resize", "105", "--cores", "2", "--allow-running"),
    ("vm", "set", "104", "description=a b=c+d&e 'q'", "ipconfig0=ip=10.0.0.5/24,gw=10.0.0.1", "--delete", "agent"),
]


@pytest.mark.parametrize("args", DRY_RUNS, ids=lambda a: " ".join(a[:2]) + ("+" if len(a) > 3 else ""))
def test_dry_run_changes_nothing_and_prints_curl(pv: Callable[..., Run], fresh_sim: SimCluster,
                                                 args: tuple[str, ...], _audit: Path) -> None:
    before = snapshot(fresh_sim)
    tasks = len(fresh_sim.backend.engine.records())
    seq = fresh_sim.server.requests.last_seq
    r = pv("--dry-run", *args)
    assert r.code == 0, (r.out, r.err)
    assert writes_since(fresh_sim, seq) == []
    assert snapshot(fresh_sim) == before and len(fresh_sim.backend.engine.records()) == tasks
    assert not _audit.exists()
    out = r.out
    assert fresh_sim.token_secret not in out + r.err
    curls = [ln for ln in out.splitlines() if ln.startswith("curl ")]
    comments = [ln for ln in out.splitlines() if ln.startswith("# ")]
    assert curls and len(comments) == len(curls) and len(out.splitlines()) == 2 * len(curls)
    for line in curls:
        argv = shlex.split(line)
        assert argv[:4] == ["curl", "-s", "--cacert", str(fresh_sim.ca_path)]
        auth = argv[argv.index("-H") + 1]
        lines = r"tr '\r\v\f' '\n\n\n'"
        assert auth == (f"Authorization: PVEAPIToken=$({lines} < {fresh_sim.token_path} | awk 'NF {{print $1; exit}}')="
                        f"$({lines} < {fresh_sim.token_path} | awk 'NF {{s = $1}} END {{print s}}')")
        assert "$(" in line
        method = argv[argv.index("-X") + 1]
        data = [argv[i + 1] for i, a in enumerate(argv) if a == "--data-urlencode"]
        assert "-d" not in argv
        if method in ("POST", "PUT"):
            assert all("=" in d for d in data)
        else:
            assert data == []
        assert argv[-1].startswith("https://127.0.0.1:")


def test_dry_run_texts(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    r = pv("--dry-run", "vm", "set", "104", "description=a b=c+d&e", "ipconfig0=ip=10.0.0.5/24,gw=10.0.0.1")
    argv = shlex.split(r.out.splitlines()[1])
    data = [argv[i + 1] for i, a in enumerate(argv) if a == "--data-urlencode"]
    assert data[:2] == ["description=a b=c+d&e", "ipconfig0=ip=10.0.0.5/24,gw=10.0.0.1"]
    assert data[2].startswith("digest=") and len(data) == 3
    assert argv[-1] == f"{fresh_sim.url('pve2')}/api2/json/nodes/pve2/qemu/104/config"

    r = pv("--dry-run", "vm", "delete", "104", "--yes")
    assert r.out.splitlines()[0] == ("# delete VM 104 (mq-01) on pve2 and its disks: local-lvm:vm-104-cloudinit, "
                                     "local-lvm:vm-104-disk-0")
    assert shlex.split(r.out.splitlines()[1])[-1] == \
        f"{fresh_sim.url('pve2')}/api2/json/nodes/pve2/qemu/104?purge=1&destroy-unreferenced-disks=1"

    r = pv("--dry-run", "vm", "start", "100", "103")
    lines = r.out.splitlines()
    assert r.code == 0 and len(lines) == 3
    assert lines[0] == "# start VM 103 (cache-01) on pve1"
    assert lines[1].startswith("curl -s --cacert ") and lines[1].endswith("/api2/json/nodes/pve1/qemu/103/status/start")
    assert lines[2] == "# start VM 100 (web-01): already running (qmpstatus running), nothing to send"

    # guards still apply in a dry run
    r = pv("--dry-run", "vm", "delete", "100", "--yes")
    assert r.code == 3 and r.out.count("curl") == 0


# ------------------------------------------------------------------------------------------ audit
def test_audit_records_every_write(pv: Callable[..., Run], fresh_sim: SimCluster, _audit: Path) -> None:
    assert pv("vm", "start", "103").code == 0
    assert pv("vm", "set", "104", "ciuser=ops", "cipassword=hunter2 x").code == 0
    assert pv("vm", "start", "100").code == 0          # already running: nothing written, nothing recorded
    fresh_sim.backend.fail_task(type="qmstart", message="start failed: boom")
    assert pv("vm", "start", "106").code == 1

    text = _audit.read_text()
    assert "hunter2" not in text and fresh_sim.token_secret not in text
    entries = [json.loads(x) for x in text.splitlines()]
    assert [(e["event"], e.get("method"), e.get("path"), e["result"]) for e in entries] == [
        ("write", "POST", "/nodes/pve1/qemu/103/status/start", "task started"),
        ("task", None, None, "OK"),
        ("write", "PUT", "/nodes/pve2/qemu/104/config", "ok"),
        ("write", "POST", "/nodes/pve1/qemu/106/status/start", "task started"),
        ("task", None, None, "start failed: boom"),
    ]
    for e in entries:
        assert e["cluster"] == fresh_sim.summary()["cluster"]
        assert e["token_id"] == "root@pam!pvectl" and e["time"]
    assert entries[0]["command"] == f"pvectl --config {fresh_sim.config_path} vm start 103"
    assert entries[0]["upid"] == entries[1]["upid"] and ":qmstart:103:" in entries[0]["upid"]
    assert entries[2]["params"]["ciuser"] == "ops" and entries[2]["params"]["cipassword"] == "<hidden>"
    assert entries[2]["params"]["digest"] and "upid" not in entries[2]
    assert entries[2]["command"] == f"pvectl --config {fresh_sim.config_path} vm set 104 ciuser=ops cipassword=<hidden>"
    assert entries[0]["node"] == "pve1" and entries[0]["params"] == {}

    r = pv("-o", "json", "audit")
    assert r.code == 0 and r.json == entries
    r = pv("-o", "json", "audit", "--limit", "2")
    assert r.json == entries[-2:]
    r = pv("-o", "table", "audit")
    assert r.out.splitlines()[0] == f"# {_audit}"


# ------------------------------------------------------------------------------------------ task CLI
def test_task_status_wait_log(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    upid = pv("--no-wait", "vm", "start", "103").json[0]["upid"]
    r = pv("task", "wait", upid)
    assert r.code == 0 and r.json == {"upid": upid, "exitstatus": "OK", "warnings": []}
    r = pv("-o", "table", "task", "wait", upid)
    assert r.code == 0 and r.out == f"{upid}: OK\n"
    st = pv("task", "status", upid).json
    assert {k: st[k] for k in ("upid", "node", "type", "id", "user", "status", "exitstatus")} == {
        "upid": upid, "node": "pve1", "type": "qmstart", "id": "103", "user": "root@pam!pvectl",
        "status": "stopped", "exitstatus": "OK"}

    fresh_sim.backend.fail_task(type="qmstart", message="start failed: boom")
    bad = pv("--no-wait", "vm", "start", "104").json[0]["upid"]
    r = pv("task", "wait", bad)
    assert r.code == 1
    e = error(r)
    assert (e["type"], e["message"], e["upid"]) == ("TaskFailed", f"task {bad} failed: start failed: boom", bad)

    held = fresh_sim.backend.hold_lock(106)
    try:
        r = pv("-o", "table", "--timeout", "0.2", "task", "wait", held)
        assert r.code == 4
        assert r.err == (f"pvectl: error: task vzdump on pve1 is still running at the deadline "
                         f"(hint: resume with: pvectl task wait {held})\n")
        r = pv("--timeout", "0.1", "task", "wait", held)
        assert r.code == 4 and error(r)["upid"] == held

        r = pv("-o", "table", "task", "log", held)
        assert r.code == 0 and r.out.splitlines() == ["INFO: starting new backup job: vzdump 106 --mode snapshot "
                                                      "--storage local", "INFO: Starting Backup of VM 106 (qemu)"]
    finally:
        fresh_sim.backend.release_lock(106)
    r = pv("-o", "table", "task", "log", held, "--limit", "2")
    assert r.out.splitlines() == ["INFO: Finished Backup of VM 106", "TASK OK"]
    r = pv("task", "log", held)
    assert r.json["total"] == 4 and r.json["lines"][-1] == "TASK OK" and r.json["upid"] == held

    r = pv("task", "status", "UPID:nonsense")
    assert r.code == 2


def test_task_log_follow_stops_at_the_deadline(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    # a hung task: --follow prints what there is, then exits 4 at --timeout with the resume hint
    held = fresh_sim.backend.hold_lock(106)
    try:
        r = pv("-o", "table", "--timeout", "0.3", "task", "log", held, "--follow")
        assert r.code == 4
        assert r.out.splitlines() == ["INFO: starting new backup job: vzdump 106 --mode snapshot --storage local",
                                      "INFO: Starting Backup of VM 106 (qemu)"]
        assert r.err == (f"pvectl: error: task vzdump on pve1 is still running at the deadline "
                         f"(hint: resume with: pvectl task wait {held})\n")
    finally:
        fresh_sim.backend.release_lock(106)


def test_task_log_follow_prints_every_line_of_a_running_clone(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    from pvectl.cluster import Cluster

    with Cluster.from_config(str(fresh_sim.config_path)) as c:
        upid = c.transport.request("POST", "/nodes/pve1/qemu/9000/clone",
                                   {"newid": 160, "name": "follow-me", "full": 1}, node="pve1")
    assert pv("task", "status", upid).json["status"] == "running"
    r = pv("-o", "table", "task", "log", upid, "--follow")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0] == "creating a clone of VM 9000 with ID 160"
    assert lines[-1] == "TASK OK"
    full = pv("task", "log", upid).json
    assert lines == full["lines"] and len(lines) == full["total"]
    assert sum(1 for ln in lines if ln.startswith("transferred ")) == 101


def test_task_list(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    a = pv("--no-wait", "vm", "start", "103").json[0]["upid"]
    b = pv("--no-wait", "vm", "start", "104").json[0]["upid"]
    assert pv("task", "wait", a).code == 0 and pv("task", "wait", b).code == 0
    held = fresh_sim.backend.hold_lock(106)
    try:
        r = pv("task", "list")
        assert r.code == 0 and {a, b, held} <= {t["upid"] for t in r.json}
        r = pv("task", "list", "--node", "pve2")
        assert [t["upid"] for t in r.json] == [b]
        r = pv("task", "list", "--running")
        assert [(t["upid"], t["status"]) for t in r.json] == [(held, "RUNNING")]
        r = pv("task", "list", "--vm", "cache-01")
        assert [(t["upid"], t["type"], t["status"], t["node"]) for t in r.json] == [(a, "qmstart", "OK", "pve1")]
        r = pv("-o", "table", "task", "list", "--vm", "103")
        assert r.out.splitlines()[0].split() == ["STARTED", "NODE", "TYPE", "ID", "USER", "STATUS", "UPID"]
        assert a in r.out
    finally:
        fresh_sim.backend.release_lock(106)


def test_shutdown_timeout_is_the_guests_time_to_power_off(pv: Callable[..., Run], fresh_sim: SimCluster) -> None:
    # `vm shutdown --timeout S` is sent as Proxmox's `timeout`: a guest that needs longer fails with
    # PVE's text, and with --force-stop it is stopped hard and the task ends OK (pve-semantics §5.1)
    r = pv("vm", "shutdown", "100", "--timeout", "2")
    assert r.code == 1, r.err
    assert r.json[0]["outcome"] == "failed" and r.json[0]["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert vm(fresh_sim, 100).status == "running"
    r = pv("vm", "shutdown", "100", "--timeout", "2", "--force-stop")
    assert r.code == 0, r.err
    assert r.json[0]["exitstatus"] == "OK" and vm(fresh_sim, 100).status == "stopped"
