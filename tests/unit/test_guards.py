"""guards.py: every safety rule as a pure function of observed state (DESIGN §5).

Each refusal is a `GuardRefused` (exit 3) whose message says why and whose hint says what would make
the operation allowed; the texts are asserted exactly because users (and agents) act on them.
"""

from __future__ import annotations

from typing import Any

import pytest

from pvectl.config import VmidRange
from pvectl.errors import GuardRefused, UsageError
from pvectl.guards import (
    check_delete,
    check_disk_resize,
    check_running_change,
    check_stop,
    parse_disk_size,
    require_yes,
)

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4
VMS = VmidRange(start=100, end=899)
TEMPLATES = VmidRange(start=9000, end=9999)


# ------------------------------------------------------------------------------------ parse_disk_size
@pytest.mark.parametrize(("text", "expected"), [
    ("+10G", (True, 10 * G)),
    ("50G", (False, 50 * G)),
    ("1.5G", (False, int(1.5 * G))),
    ("+0.5T", (True, T // 2)),
    ("512", (False, 512)),               # no unit = bytes (pve-semantics §8)
    ("+1", (True, 1)),
    ("100K", (False, 100 * K)),
    ("+256M", (True, 256 * M)),
    ("2T", (False, 2 * T)),
    (" +4G ", (True, 4 * G)),             # surrounding blanks are ignored
    ("0", (False, 0)),
    ("10g", (False, 10 * G)),             # the unit in either case, or written GiB
    ("+10GiB", (True, 10 * G)),
])
def test_parse_disk_size_accepts_the_resize_pattern(text: str, expected: tuple[bool, int]) -> None:
    assert parse_disk_size(text) == expected


@pytest.mark.parametrize("text", ["10GB", "-5G", "ten", "", "+", "G", "1.G", "+-1G", "10 G", "1e3", "0x10"])
def test_parse_disk_size_rejects_malformed_sizes_as_usage_errors(text: str) -> None:
    # a malformed size is a usage error (exit 2), not a guard's refusal (exit 3)
    with pytest.raises(UsageError) as ei:
        parse_disk_size(text)
    assert ei.value.message.startswith(f"invalid disk size '{text}': ")
    assert ei.value.message.endswith("expected +N to grow by N, or N for an absolute size; N is a number (10, 1.5) "
                                     "with K, M, G or T (or KiB, MiB, GiB, TiB: powers of 1024), no unit = bytes")
    assert ei.value.hint == "e.g. --size +10G grows by 10 GiB, --size 50G makes it 50 GiB"
    assert ei.value.exit_code == 2


# ---------------------------------------------------------------------------------------- check_delete
def _delete(**over: Any) -> None:
    kw: dict[str, Any] = dict(vmid=105, name="api-01", status="stopped", config={"name": "api-01"},
                              vm_range=VMS, template_range=TEMPLATES, allow_template=False, yes=True)
    kw.update(over)
    check_delete(**kw)


def test_check_delete_allows_a_stopped_unprotected_unlocked_vm_in_range_with_yes() -> None:
    assert _delete() is None
    assert _delete(config={"protection": 0, "template": 0}) is None


def test_check_delete_allows_a_template_in_the_template_range_only_when_allowed() -> None:
    cfg = {"template": 1}
    with pytest.raises(GuardRefused) as ei:
        _delete(vmid=9000, name="tmpl", config=cfg)
    assert ei.value.message == "VM 9000 (tmpl) is a template"
    assert ei.value.hint == "add --allow-template to delete a template"
    assert _delete(vmid=9000, name="tmpl", config=cfg, allow_template=True) is None
    # a template kept in the VM range is managed too
    assert _delete(vmid=150, name="tmpl", config=cfg, allow_template=True) is None


# (overrides, message, hint): every rule alone, on an otherwise deletable VM
REFUSALS = [
    (dict(status="running"),
     "VM 105 (api-01) is running: Proxmox refuses to destroy a running VM",
     "shut it down first: pvectl vm shutdown 105"),
    (dict(status="paused"),
     "VM 105 (api-01) is paused: Proxmox refuses to destroy a running VM",
     "shut it down first: pvectl vm shutdown 105"),
    (dict(status="unknown"),                       # node offline: state unknown, never delete blind
     "VM 105 (api-01) is unknown: Proxmox refuses to destroy a running VM",
     "shut it down first: pvectl vm shutdown 105"),
    (dict(config={"protection": 1}),
     "VM 105 (api-01) has protection enabled",
     "turn it off first if you mean it: pvectl vm set 105 protection=0"),
    (dict(config={"protection": "1"}),             # PUT values come back as strings
     "VM 105 (api-01) has protection enabled",
     "turn it off first if you mean it: pvectl vm set 105 protection=0"),
    (dict(config={"lock": "backup"}),
     "VM 105 (api-01) is locked (backup): a task is using it",
     "wait for the task (pvectl task list --vm VMID) or diagnose it (pvectl task diagnose VMID)"),
    (dict(config={"lock": "clone"}),
     "VM 105 (api-01) is locked (clone): a task is using it",
     "wait for the task (pvectl task list --vm VMID) or diagnose it (pvectl task diagnose VMID)"),
    (dict(config={"template": 1}, allow_template=False),
     "VM 105 (api-01) is a template",
     "add --allow-template to delete a template"),
    (dict(vmid=950, name="x"),
     "VM 950 (x) is outside the VMID ranges this config manages (vms 100-899, templates 9000-9999)",
     "only VMs in vmid_ranges are deleted; change vmid_ranges if this VM is yours"),
    (dict(vmid=9005, name="x"),                    # a plain VM in the template range is not ours to delete
     "VM 9005 (x) is outside the VMID ranges this config manages (vms 100-899, templates 9000-9999)",
     "only VMs in vmid_ranges are deleted; change vmid_ranges if this VM is yours"),
    (dict(vmid=105, vm_range=None, template_range=None),
     "VM 105 (api-01) is outside the VMID ranges this config manages (none set)",
     "only VMs in vmid_ranges are deleted; change vmid_ranges if this VM is yours"),
    (dict(vmid=105, vm_range=VmidRange(start=200, end=299), template_range=None),
     "VM 105 (api-01) is outside the VMID ranges this config manages (vms 200-299)",
     "only VMs in vmid_ranges are deleted; change vmid_ranges if this VM is yours"),
    (dict(yes=False),
     "deleting VM 105 (api-01) needs confirmation",
     "add --yes (or confirm interactively)"),
]


@pytest.mark.parametrize(("over", "message", "hint"), REFUSALS)
def test_check_delete_refuses(over: dict[str, Any], message: str, hint: str) -> None:
    with pytest.raises(GuardRefused) as ei:
        _delete(**over)
    assert (ei.value.message, ei.value.hint, ei.value.exit_code) == (message, hint, 3)


def test_check_delete_reports_the_state_problem_before_the_missing_confirmation() -> None:
    # without --yes, a running VM is refused for being running (the useful answer), not for --yes
    with pytest.raises(GuardRefused, match="is running"):
        _delete(status="running", yes=False)
    with pytest.raises(GuardRefused, match="protection"):
        _delete(config={"protection": 1, "template": 1}, yes=False)


# ------------------------------------------------------------------------------------ check_disk_resize
@pytest.mark.parametrize(("current", "size", "new"), [
    (32 * G, "+10G", 42 * G),
    (32 * G, "50G", 50 * G),
    (32 * G, "32G", 32 * G),            # same size: allowed (nothing to do)
    (32 * G, "+0", 32 * G),
    (32 * G, str(33 * G), 33 * G),
])
def test_check_disk_resize_grows(current: int, size: str, new: int) -> None:
    assert check_disk_resize(vmid=103, disk="scsi0", current=current, size=size) == new


def test_check_disk_resize_refuses_a_shrink_and_a_missing_disk() -> None:
    with pytest.raises(GuardRefused) as ei:
        check_disk_resize(vmid=103, disk="scsi0", current=50 * G, size="10G")
    assert ei.value.message == ("disk scsi0 of VM 103 is 50.0 GiB; 10G would shrink it and Proxmox cannot "
                                "shrink disks")
    assert ei.value.hint == "give a larger size, or +N to grow by N"
    with pytest.raises(GuardRefused) as ei:
        check_disk_resize(vmid=103, disk="scsi1", current=None, size="+1G")
    assert ei.value.message == "VM 103 has no disk 'scsi1'"
    assert ei.value.hint == "see its disks with: pvectl vm status VM -o json"
    with pytest.raises(UsageError, match="invalid disk size '-1G': disks only grow"):
        check_disk_resize(vmid=103, disk="scsi0", current=50 * G, size="-1G")


# ------------------------------------------------------------------------ running change, stop, --yes
def test_check_running_change() -> None:
    assert check_running_change(vmid=105, running=False, allow_running=False, keys=["cores"]) is None
    assert check_running_change(vmid=105, running=True, allow_running=True, keys=["cores"]) is None
    with pytest.raises(GuardRefused) as ei:
        check_running_change(vmid=105, running=True, allow_running=False, keys=["cores", "memory"])
    assert ei.value.message == ("VM 105 is running: changing cores, memory takes effect only after a restart "
                                "(Proxmox keeps it pending)")
    assert ei.value.hint == ("shut it down first, or add --allow-running to apply it as pending "
                             "(or hot-plugged)")


def test_check_stop_and_require_yes() -> None:
    assert check_stop(vmid=100, yes=True) is None
    with pytest.raises(GuardRefused) as ei:
        check_stop(vmid=100, yes=False)
    assert ei.value.message == "stop is a hard power-off of VM 100 (like pulling the plug): data may be lost"
    assert ei.value.hint == "prefer: pvectl vm shutdown VM; or add --yes to stop it anyway"
    assert require_yes(True, "deleting", "VM 1 (a)") is None
    with pytest.raises(GuardRefused) as ei:
        require_yes(False, "deleting", "VM 1 (a)")
    assert ei.value.message == "deleting VM 1 (a) needs confirmation"
