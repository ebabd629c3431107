"""`VmSummary`: the typed record of one `/cluster/resources?type=vm` entry (converted when read)."""

from __future__ import annotations

from typing import Any

import pytest

from pvectl.vms import VmSummary

# an entry as pve-manager's API2/Cluster.pm::resources returns it for a running VM (pve-semantics §10.2)
RUNNING: dict[str, Any] = {
    "id": "qemu/101", "type": "qemu", "vmid": 101, "node": "pve2", "name": "web-01", "template": 0,
    "status": "running", "cpu": 0.25, "maxcpu": 2, "mem": 1073741824, "maxmem": 4294967296, "disk": 0,
    "maxdisk": 34359738368, "uptime": 3600, "netin": 1, "netout": 2, "tags": "prod;web", "lock": "backup",
}
# a VM on a node that is down: no stats, status unknown, no name set (pvestatd has nothing)
BARE: dict[str, Any] = {"id": "qemu/105", "type": "qemu", "vmid": 105, "node": "pve3"}

FIELDS = ("vmid", "name", "node", "status", "template", "maxcpu", "maxmem", "mem", "cpu", "uptime", "maxdisk",
          "tags", "lock")


def test_fields_are_typed_from_the_entry() -> None:
    vm = VmSummary.from_resource(dict(RUNNING))
    assert (vm.vmid, vm.name, vm.node, vm.status, vm.template) == (101, "web-01", "pve2", "running", False)
    assert (vm.maxcpu, vm.maxmem, vm.mem, vm.cpu, vm.uptime, vm.maxdisk) == (
        2, 4294967296, 1073741824, 0.25, 3600, 34359738368)
    assert vm.tags == ("prod", "web") and vm.lock == "backup"
    for name, kind in (("vmid", int), ("maxmem", int), ("cpu", float), ("template", bool), ("tags", tuple)):
        assert type(getattr(vm, name)) is kind, name


def test_missing_fields_get_their_defaults() -> None:
    vm = VmSummary.from_resource(dict(BARE))
    assert vm.to_dict() == {"vmid": 105, "name": "VM 105", "node": "pve3", "status": "unknown", "template": False,
                            "maxcpu": 0, "maxmem": 0, "mem": 0, "cpu": 0.0, "uptime": 0, "maxdisk": 0,
                            "tags": [], "lock": None}


def test_numbers_sent_as_strings_and_old_tag_separators_are_converted() -> None:
    vm = VmSummary.from_resource({**BARE, "vmid": "105", "maxmem": "2048", "cpu": "0.5", "template": 1,
                                  "tags": "a,b c;d"})
    assert (vm.vmid, vm.maxmem, vm.cpu, vm.template) == (105, 2048, 0.5, True)
    assert vm.tags == ("a", "b", "c", "d")


def test_to_dict_has_every_field_in_order_with_tags_as_a_list() -> None:
    d = VmSummary.from_resource(dict(RUNNING)).to_dict()
    assert tuple(d) == FIELDS
    assert d["tags"] == ["prod", "web"] and "netin" not in d and "id" not in d


def test_built_by_keyword_equals_built_from_the_entry() -> None:
    from_entry = VmSummary.from_resource(dict(RUNNING))
    by_keyword = VmSummary(**{name: getattr(from_entry, name) for name in FIELDS})
    assert by_keyword == from_entry and hash(by_keyword) == hash(from_entry)
    assert by_keyword.to_dict() == from_entry.to_dict()
    assert repr(by_keyword) == repr(from_entry) and repr(from_entry).startswith("VmSummary(vmid=101, name='web-01'")
    moved = from_entry.replace(node="pve1")
    assert moved.node == "pve1" and moved.vmid == 101 and moved != from_entry


def test_keyword_construction_checks_the_fields() -> None:
    with pytest.raises(TypeError, match="missing"):
        VmSummary(vmid=1)
    full = {name: getattr(VmSummary.from_resource(dict(RUNNING)), name) for name in FIELDS}
    with pytest.raises(TypeError, match="unexpected"):
        VmSummary(**full, colour="red")


def test_records_are_frozen() -> None:
    vm = VmSummary.from_resource(dict(RUNNING))
    with pytest.raises(AttributeError):
        vm.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        vm.maxcpu = 8
    assert vm.name == "web-01" and vm.maxcpu == 2


def test_an_entry_without_vmid_or_node_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="vmid or node"):
        VmSummary.from_resource({"type": "qemu", "node": "pve1"})
    with pytest.raises(ValueError, match="vmid or node"):
        VmSummary.from_resource({"type": "qemu", "vmid": 100})
