"""The tool list per tier, every tool's annotations, and the privilege filter (pure, no cluster)."""

from __future__ import annotations

import pytest

from pvectl.mcp.catalog import BY_NAME, TOOLS, missing_privileges, select

READ = {"cluster_status", "node_list", "node_status", "vm_list", "vm_status", "template_list", "migration_check",
        "task_status", "task_log", "task_wait", "task_diagnose", "drain_plan"}
WRITE = {"vm_provision", "vm_set_config", "vm_start", "vm_shutdown", "vm_reboot", "vm_resize"}
DESTRUCTIVE = {"vm_stop", "vm_delete", "vm_migrate", "node_drain"}

# (readOnlyHint, destructiveHint, idempotentHint, openWorldHint), decided per tool:
# - reads send no write; repeating them changes nothing;
# - set_config overwrites or removes config values (destructive), the same call again changes nothing;
# - start/shutdown leave VMs and disks in place and a second call finds the state already reached;
# - reboot and resize (+10G is relative) act again on every call;
# - stop loses the guest's memory state (destructive), a stopped VM stays stopped;
# - delete, migrate and drain remove or move VMs; every call is its own two-phase plan;
# - nothing reaches beyond the configured cluster (openWorldHint false everywhere).
ANNOTATIONS = {
    **{name: (True, False, True, False) for name in READ},
    "vm_provision": (False, False, False, False),
    "vm_set_config": (False, True, True, False),
    "vm_start": (False, False, True, False),
    "vm_shutdown": (False, False, True, False),
    "vm_reboot": (False, False, False, False),
    "vm_resize": (False, False, False, False),
    "vm_stop": (False, True, True, False),
    "vm_delete": (False, True, False, False),
    "vm_migrate": (False, True, False, False),
    "node_drain": (False, True, False, False),
}


def names(tier: str, **kw: object) -> set[str]:
    chosen, _ = select(tier, **kw)  # type: ignore[arg-type]
    return {t.name for t in chosen}


def test_tool_list_per_tier() -> None:
    assert names("read") == READ
    assert names("write") == READ | WRITE
    assert names("destructive") == READ | WRITE | DESTRUCTIVE
    assert 20 <= len(TOOLS) <= 24


def test_read_only_tier_has_no_write_tool() -> None:
    chosen, _ = select("read")
    assert chosen and all(t.read_only and not t.destructive for t in chosen)


def test_every_annotation_is_pinned() -> None:
    assert set(ANNOTATIONS) == set(BY_NAME)
    for name, expected in ANNOTATIONS.items():
        t = BY_NAME[name]
        assert (t.read_only, t.destructive, t.idempotent, t.open_world) == expected, name


def test_tiers_match_the_hints() -> None:
    for t in TOOLS:
        assert t.read_only == (t.tier == "read"), t.name
        if t.tier == "destructive":
            assert t.destructive, t.name


def test_named_tools_only_and_above_tier_reported() -> None:
    chosen, left = select("read", only=["vm_list", "vm_delete"])
    assert [t.name for t in chosen] == ["vm_list"]
    assert left == [("vm_delete", "needs --allow-destructive")]
    with pytest.raises(ValueError, match="unknown tool"):
        select("read", only=["vm_nuke"])
    with pytest.raises(ValueError, match="unknown tier"):
        select("admin")


def test_privileges_leave_out_what_the_token_cannot_do() -> None:
    perms = {"/vms/100": {"VM.Audit": 1, "VM.PowerMgmt": 1}}
    chosen, left = select("destructive", permissions=perms)
    got = {t.name for t in chosen}
    assert {"vm_list", "vm_status", "vm_start", "vm_shutdown", "vm_stop", "node_list", "task_log"} <= got
    assert not got & {"vm_delete", "vm_migrate", "vm_provision", "cluster_status", "node_drain"}
    why = dict(left)
    assert why["vm_delete"] == "the API token lacks VM.Allocate"
    assert "VM.Clone" in why["vm_provision"]
    # any one VM.Config.* privilege is enough for set_config (PUT .../config checks them with "any")
    assert missing_privileges(BY_NAME["vm_set_config"], {"/": {"VM.Config.Options": 1}}) == []
    # a privilege listed as 0 is not held
    assert missing_privileges(BY_NAME["vm_delete"], {"/": {"VM.Allocate": 0}}) == ["VM.Allocate"]


def test_privileges_count_only_where_the_check_can_pass() -> None:
    # GET /cluster/status checks Sys.Audit on `/` exactly; /nodes/N status on /nodes/N
    on_nodes = {"/nodes": {"Sys.Audit": 1}}
    assert missing_privileges(BY_NAME["cluster_status"], on_nodes) == ["Sys.Audit"]
    assert missing_privileges(BY_NAME["node_status"], on_nodes) == []
    assert missing_privileges(BY_NAME["cluster_status"], {"/": {"Sys.Audit": 1}}) == []
    # VM privileges on a pool count; on a node they do not
    assert missing_privileges(BY_NAME["vm_delete"], {"/pool/lab": {"VM.Allocate": 1}}) == []
    assert missing_privileges(BY_NAME["vm_delete"], {"/nodes/pve1": {"VM.Allocate": 1}}) == ["VM.Allocate"]
