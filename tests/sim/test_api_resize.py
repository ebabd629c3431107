"""Resize: a task since qemu-server 8.0.2, every check inside it.

Spec: pve-semantics row 8 and §8, Appendix A.
"""

from __future__ import annotations

from apiharness import Client

from pvectl.sim.backend import Backend


def test_grow_updates_size(client: Client, backend: Backend) -> None:
    upid = client.ok("PUT", "/nodes/pve1/qemu/103/resize", {"disk": "scsi0", "size": "+10G"})
    assert upid.split(":")[5:7] == ["resize", "103"]
    assert client.wait(upid)["exitstatus"] == "OK"
    assert "size=60G" in client.get("/nodes/pve1/qemu/103/config")["scsi0"]
    assert backend.state.volumes["pve1/local-lvm:vm-103-disk-0"].size == 60 * 2**30
    status, _ = client.run("PUT", "/nodes/pve1/qemu/103/resize", {"disk": "scsi0", "size": "64G"})
    assert status == "OK"
    assert "size=64G" in client.get("/nodes/pve1/qemu/103/config")["scsi0"]
    assert client.get("/nodes/pve1/qemu/103/status/current")["maxdisk"] == 64 * 2**30


def test_grow_running_vm(client: Client) -> None:
    status, _ = client.run("PUT", "/nodes/pve1/qemu/100/resize", {"disk": "scsi0", "size": "+512M"})
    assert status == "OK"
    assert "size=66048M" in client.get("/nodes/pve1/qemu/100/config")["scsi0"]


def test_same_size_is_noop(client: Client) -> None:
    status, lines = client.run("PUT", "/nodes/pve1/qemu/103/resize", {"disk": "scsi0", "size": "50G"})
    assert (status, lines) == ("OK", ["TASK OK"])


def test_shrink_fails_in_task(client: Client) -> None:
    status, lines = client.run("PUT", "/nodes/pve1/qemu/103/resize", {"disk": "scsi0", "size": "10G"})
    assert status == "shrinking disks is not supported"
    assert lines[-1] == "TASK ERROR: shrinking disks is not supported"


def test_missing_disk_fails_in_task(client: Client) -> None:
    status, _ = client.run("PUT", "/nodes/pve1/qemu/103/resize", {"disk": "scsi5", "size": "+1G"})
    assert status == "disk 'scsi5' does not exist"


def test_cdrom_and_digest_in_task(client: Client) -> None:
    status, _ = client.run("PUT", "/nodes/pve1/qemu/103/resize", {"disk": "ide2", "size": "+1G"})
    assert status == "you can't resize a cdrom"
    status, _ = client.run("PUT", "/nodes/pve1/qemu/103/resize", {"disk": "scsi0", "size": "+1G", "digest": "0" * 40})
    assert status == "checksum mismatch (file change by other user?)"


def test_missing_vm_fails_in_task(client: Client) -> None:
    status, _ = client.run("PUT", "/nodes/pve1/qemu/555/resize", {"disk": "scsi0", "size": "+1G"})
    assert status == "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist"


def test_bad_size_and_disk_are_400(client: Client) -> None:
    for size in ("10GB", "-5G"):
        r = client.fail("PUT", "/nodes/pve1/qemu/103/resize", {"disk": "scsi0", "size": size})
        assert r.status == 400 and r.json["errors"] == {"size": "value does not match the regex pattern"}
    r = client.fail("PUT", "/nodes/pve1/qemu/103/resize", {"disk": "unused0", "size": "+1G"})
    assert r.status == 400 and r.json["errors"]["disk"].startswith("value 'unused0' does not have a value in the enumeration")
