"""The generated starting cluster: VMIDs, templates and seeded containers."""

from __future__ import annotations

import pytest

from pvectl.sim.models import TEMPLATE_VMIDS, generate_state


def test_ten_thousand_vms_keep_their_templates() -> None:
    # VMIDs 100.. used to run straight through 9000-9999 and overwrite the templates from 8900 VMs on
    state = generate_state(nodes=2, vms=10_000, templates=2)
    templates = sorted(v.vmid for v in state.vms.values() if v.is_template)
    assert templates == [9000, 9001]
    assert [state.vms[t].config["name"] for t in templates] == ["ubuntu-24.04-cloud", "debian-12-cloud"]
    plain = [v.vmid for v in state.vms.values() if not v.is_template]
    assert len(plain) == 10_000
    assert not [vmid for vmid in plain if vmid in TEMPLATE_VMIDS]
    assert max(plain) == 100 + 10_000 + len(TEMPLATE_VMIDS) - 1


def test_vm_disks_belong_to_their_own_vmid() -> None:
    state = generate_state(nodes=1, vms=9_000, templates=1)
    base = state.volumes["pve1/local-lvm:base-9000-disk-0"]
    assert base.vmid == 9000
    assert "base-9000-disk-0" in state.vms[9000].config["scsi0"]


def test_more_templates_than_the_range_holds_is_refused() -> None:
    with pytest.raises(ValueError, match="templates"):
        generate_state(nodes=1, vms=0, templates=len(TEMPLATE_VMIDS) + 1)
