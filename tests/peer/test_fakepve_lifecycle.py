"""The lifecycle scenario (start, shutdown, resize, set, delete with its guards) run by the pvectl CLI
against fakepve, an independent fake Proxmox VE (test-only dependency, AGPL; never imported by src/).

fakepve's own pytest plugin serves it on 127.0.0.1 with a self-signed certificate, which is used as
the CA file. Known deviations of fakepve from Proxmox (research/peers.md §3) are tested around and
named where they matter:
- `PUT .../resize` is generic there: it returns a UPID that ends OK but the size stays the same;
- values written with PUT come back as strings.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pvectl import credentials
from pvectl.cli.main import main

pytestmark = [pytest.mark.peer, pytest.mark.fakepve(time_scale=0)]

TOKEN_ID = "root@pam!ci"
SECRET = "5d1f0c0e-7c2b-4d43-9d56-0a7d2f3b9e11"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "PVECTL_CONFIG", "PVECTL_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    credentials.reset()


@pytest.fixture
def pve(fakepve: Any) -> Any:
    disk = "local-lvm:vm-{0}-disk-0,size=8G"
    fakepve.add_node("pve2")
    fakepve.add_vm(100, "web1", node="pve1", status="running",
                   config={"cores": 2, "memory": 2048, "scsi0": disk.format(100)})
    fakepve.add_vm(101, "db1", node="pve2", status="stopped",
                   config={"cores": 2, "memory": 2048, "scsi0": disk.format(101), "protection": 1})
    fakepve.add_vm(102, "app1", node="pve1", status="stopped",
                   config={"cores": 1, "memory": 1024, "scsi0": disk.format(102)})
    fakepve.add_vm(9000, "tmpl-debian12", node="pve1", template=True,
                   config={"template": 1, "cores": 2, "memory": 2048, "scsi0": "local-lvm:base-9000-disk-0,size=8G",
                           "tags": "template"})
    fakepve.apitokens[TOKEN_ID] = SECRET
    return fakepve


@pytest.fixture
def config(pve: Any, fakepve_cafile: str, tmp_path: Path) -> Path:
    host, port = pve.url.removeprefix("https://").rsplit(":", 1)
    assert host == "127.0.0.1"
    tf = tmp_path / "token"
    fd = os.open(tf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{TOKEN_ID}\n{SECRET}\n")
    doc = {"cluster": {"name": "fake", "nodes": [{"name": "pve1", "host": host, "port": int(port)}]},
           "credentials": {"token_file": str(tf)},
           "tls": {"ca_file": fakepve_cafile},
           "vmid_ranges": {"vms": "100-899", "templates": "9000-9999"}}
    path = tmp_path / "cluster-config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        *args: str) -> tuple[int, Any, str]:
    argv = ["--config", str(config), "-o", "json", *args]
    monkeypatch.setattr(sys, "argv", ["pvectl", *argv])
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = out
    return code, data, err


def writes(pve: Any, since: int) -> list[tuple[str, str]]:
    return [(m, p) for m, p, *_ in pve.requests[since:] if m != "GET"]


def test_lifecycle_against_fakepve(pve: Any, config: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def pv(*args: str) -> tuple[int, Any, str]:
        return run(config, capsys, monkeypatch, *args)

    # start a stopped VM; a second start is "already" and sends nothing
    code, data, err = pv("vm", "start", "app1")
    assert code == 0, err
    assert (data[0]["vmid"], data[0]["outcome"], data[0]["exitstatus"]) == (102, "done", "OK")
    assert pve.vm(102).status == "running"
    n = len(pve.requests)
    code, data, _ = pv("vm", "start", "102")
    assert code == 0 and data[0]["outcome"] == "already" and writes(pve, n) == []

    # shutdown (through pve1, for a VM on pve1) and the stop guard
    code, data, _ = pv("vm", "stop", "100")
    assert code == 3 and data["error"]["type"] == "GuardRefused"
    code, data, err = pv("vm", "shutdown", "100", "--shutdown-timeout", "30")
    assert code == 0, err
    assert data[0]["exitstatus"] == "OK" and pve.vm(100).status == "stopped"

    # resize: the shrink guard is ours and holds; growth is accepted by fakepve as a task but its
    # resize endpoint is generic (the size stays 8G there; Proxmox would record size=12G)
    n = len(pve.requests)
    code, data, _ = pv("vm", "resize", "102", "--disk", "scsi0", "--size", "4G")
    assert code == 3 and "would shrink it" in data["error"]["message"]
    assert writes(pve, n) == []
    code, data, err = pv("vm", "resize", "102", "--disk", "scsi0", "--size", "+4G")
    assert code == 0, err
    assert data["disk"] == {"disk": "scsi0", "from": 8 * 1024**3, "to": 12 * 1024**3} and data["exitstatus"] == "OK"
    assert any(m == "PUT" and p.endswith("/nodes/pve1/qemu/102/resize") for m, p in writes(pve, n))
    assert pve.vm(102).config["scsi0"].endswith("size=8G")              # fakepve deviation (peers.md §3)

    # cores/memory on the running VM: refused without --allow-running, pending with it
    code, data, _ = pv("vm", "resize", "102", "--cores", "4")
    assert code == 3 and data["error"]["message"].startswith("VM 102 is running: changing cores")
    code, data, err = pv("vm", "resize", "102", "--cores", "4", "--allow-running")
    assert code == 0, err
    assert data["applied"] == {"cores": "pending until the next start"}
    assert str(pve.vm(102).pending.get("cores")) == "4"

    # set: applied with the digest; an invalid value is refused before sending
    code, data, err = pv("vm", "set", "100", "onboot=1", "description=peer run = ok")
    assert code == 0, err
    assert str(pve.vm(100).config["onboot"]) == "1" and pve.vm(100).config["description"] == "peer run = ok"
    n = len(pve.requests)
    code, data, _ = pv("vm", "set", "100", "cores=abc")
    assert code == 2 and writes(pve, n) == []

    # delete guards: running, protected, template, no --yes; each leaves the VM in place
    n = len(pve.requests)
    for args, message in [
        (("102", "--yes"), "VM 102 (app1) is running: Proxmox refuses to destroy a running VM"),
        (("101", "--yes"), "VM 101 (db1) has protection enabled"),
        (("9000", "--yes"), "VM 9000 (tmpl-debian12) is a template"),
        (("100",), "deleting VM 100 (web1) needs confirmation"),
    ]:
        code, data, _ = pv("vm", "delete", *args)
        assert (code, data["error"]["message"]) == (3, message)
    assert writes(pve, n) == []
    assert all(pve.vm(v) is not None for v in (100, 101, 102, 9000))

    # a locked VM is refused too (fakepve's snapshot lock)
    pve.snapshot_lock(100)
    code, data, _ = pv("vm", "delete", "100", "--yes")
    assert code == 3 and data["error"]["message"] == "VM 100 (web1) is locked (snapshot): a task is using it"
    pve.unlock(100)

    # dry run, then the real delete
    n = len(pve.requests)
    code, data, _ = pv("--dry-run", "vm", "delete", "100", "--yes")
    assert code == 0 and writes(pve, n) == [] and pve.vm(100) is not None
    code, data, err = pv("vm", "delete", "100", "--yes")
    assert code == 0, err
    assert data["exitstatus"] == "OK" and data["disks"] == ["local-lvm:vm-100-disk-0"]
    assert pve.vm(100) is None

    # Proxmox's own refusal text comes through when our guard is bypassed (library call, no guard)
    from pvectl.cluster import Cluster
    from pvectl.errors import ApiError

    with Cluster.from_config(str(config)) as c:
        with pytest.raises(ApiError) as ei:
            c.transport.request("DELETE", "/nodes/pve2/qemu/101", {"purge": 1}, node="pve1")
    assert ei.value.message == "can't remove VM 101 - protection mode enabled"
