"""Peer ring: the provisioning lifecycle (clone, config, start, delete) against fakepve, an independent
fake Proxmox VE (test-only dependency; its pytest plugin serves it on 127.0.0.1 with a self-signed cert).

fakepve gaps worked around (research/peers.md §3): QEMU resize via REST is generic (the task ends OK but
the size stays), a clone gets no guest agent answers (no --wait-ip here), and config values come back as
strings. Everything asserted below is real Proxmox semantics that fakepve implements.
"""

from __future__ import annotations

import io
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

fakepve_mod = pytest.importorskip("fakepve")

from pvectl.cluster import Cluster  # noqa: E402
from pvectl.errors import GuardRefused  # noqa: E402
from pvectl.provision import CloneSpec, provision  # noqa: E402
from pvectl.tasks import Deadline, Task  # noqa: E402
from pvectl.writes import Write, Writer  # noqa: E402

TOKEN_ID = "root@pam!ci"
TOKEN_SECRET = "6f1d8a52-0000-4000-8000-0000000000c1"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5Zm9ycHZlY3RsdGVzdGluZzAxMjM0NTY3 alice@example.com"


@pytest.fixture
def pve_fake(fakepve: Any) -> Any:
    fakepve.apitokens[TOKEN_ID] = TOKEN_SECRET
    fakepve.add_vm(100, "web1", node="pve1", status="running",
                   config={"cores": 2, "memory": "2048", "scsi0": "local-lvm:vm-100-disk-0,size=16G"})
    fakepve.add_vm(9000, "tmpl-debian12", node="pve1", template=True, config={
        "tags": "template;debian", "cores": 2, "memory": "2048", "agent": "1", "ostype": "l26",
        "scsi0": "local-lvm:base-9000-disk-0,size=8G", "ide2": "local-lvm:vm-9000-cloudinit,media=cdrom",
        "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0", "scsihw": "virtio-scsi-pci"})
    return fakepve


@pytest.fixture
def cluster(pve_fake: Any, fakepve_cafile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tf = tmp_path / "token"
    fd = os.open(tf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{TOKEN_ID}\n{TOKEN_SECRET}\n")
    host, port = pve_fake.host, pve_fake.port
    assert host.startswith("127.")
    doc = {"cluster": {"name": "fake", "nodes": [{"name": "pve1", "host": host, "port": port}]},
           "credentials": {"token_file": str(tf)}, "tls": {"ca_file": fakepve_cafile},
           "defaults": {"storage": "local-lvm", "network_bridge": "vmbr0"}, "tags": {"templates": "template"},
           "vmid_ranges": {"vms": "100-899", "templates": "9000-9999"}, "cloudinit": {"default_user": "ops"}}
    cfg = tmp_path / "cluster-config.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    with Cluster.from_config(str(cfg)) as c:
        yield c


def test_lifecycle_clone_config_start_delete(pve_fake: Any, cluster: Cluster, tmp_path: Path) -> None:
    keys = tmp_path / "k.pub"
    keys.write_text(KEY + "\n")
    writer = Writer(cluster.config, cluster.transport, "peer test", out=io.StringIO())
    res = provision(cluster.session, CloneSpec("tmpl-debian12", "app1", cores=4, memory="4G", ip="dhcp",
                                       ssh_keys_file=str(keys), disk_size="+2G", start=True),
                    deadline=Deadline(60), writer=writer)
    assert (res.result, res.vmid, res.node) == ("created", 101, "pve1")
    vm = pve_fake.vm(101)
    assert vm is not None and vm.status == "running"
    c = vm.config
    assert str(c["cores"]) == "4" and str(c["memory"]) == "4096"
    assert c["ipconfig0"] == "ip=dhcp" and c["ciuser"] == "ops"
    assert c["sshkeys"] == urllib.parse.quote(KEY, safe="")
    assert c["tags"] == "debian"
    assert c["description"].startswith("pvectl: cloned from template 9000 (tmpl-debian12)")
    assert str(c["scsi0"]).startswith("local-lvm:vm-101-disk-")      # a full clone: its own volume
    assert set(res.upids) == {"clone", "resize", "start"}             # resize: task OK (size is a fakepve gap)

    # idempotent re-run: nothing sent
    before = len(pve_fake.requests)
    again = provision(cluster.session, CloneSpec("tmpl-debian12", "app1"), deadline=Deadline(30), writer=writer)
    assert again.result == "exists" and again.vmid == 101
    assert not [r for r in pve_fake.requests[before:] if r[0] != "GET"]

    # a name held by another VM is refused
    with pytest.raises(GuardRefused):
        provision(cluster.session, CloneSpec("tmpl-debian12", "web1"), deadline=Deadline(30), writer=writer)

    # delete (stop first: Proxmox refuses to destroy a running VM)
    upid = writer.send(Write("POST", "/nodes/pve1/qemu/101/status/stop", {}, "pve1", "stop"))
    Task(cluster, upid).wait(30)
    upid = writer.send(Write("DELETE", "/nodes/pve1/qemu/101", {"purge": 1, "destroy-unreferenced-disks": 1},
                             "pve1", "delete"))
    Task(cluster, upid).wait(30)
    assert pve_fake.vm(101) is None


def test_taken_vmid_on_fakepve_moves_on(pve_fake: Any, cluster: Cluster) -> None:
    """fakepve answers `unable to create VM N: config file already exists` for a taken newid; a VM
    that appears between the read and the clone sends the workflow to the next VMID."""
    def on_event(e: Any) -> None:
        if e.step == "plan" and e.state == "done" and pve_fake.vm(e.vmid) is None:
            pve_fake.add_vm(e.vmid, "intruder", node="pve1")

    res = provision(cluster.session, CloneSpec("9000", "app2"), deadline=Deadline(30),
                    writer=Writer(cluster.config, cluster.transport, "peer test", out=io.StringIO()), on_event=on_event)
    assert res.vmid == 102 and pve_fake.vm(101).name == "intruder" and pve_fake.vm(102).name == "app2"
