"""API tokens with limited privileges, through the CLI.

Proxmox filters /cluster/resources by VM.Audit without saying so (pve-manager API2/Cluster.pm
`resources`), so a token that may see no VM gets an empty list from the server. pvectl must report
that as the missing privilege, not as an empty cluster. Where the server itself refuses (403
`Permission check failed (<path>, <priv>)`), the message is Proxmox's, with exit 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cliharness import Run

NO_VM_AUDIT = ("pvectl: error: the API token may not see any VM: it has no VM.Audit privilege (checked on /vms) "
               "(hint: grant it, e.g.: pveum acl modify /vms --tokens 'USER@REALM!TOKEN' --roles PVEAuditor)")
NO_SYS_AUDIT_ROOT = ("pvectl: error: Permission check failed (/, Sys.Audit) (hint: grant Sys.Audit on / to the "
                     "token's user, and to the token itself if it has privilege separation (pveum acl modify / "
                     "--tokens ... --roles ...))")


def test_token_without_any_privilege_vm_list_names_vm_audit(cli: Callable[..., Run], sim: Any,
                                                              run_pvectl: Callable[..., Run],
                                                              token_config: Callable[..., Path]) -> None:
    cfg = str(token_config(sim, "nothing", {}))
    for args in (("vm", "list"), ("vm", "list", "--status", "running"), ("template", "list"),
                 ("vm", "status", "100"), ("vm", "status", "web-01")):
        r = cli("--config", cfg, "-o", "table", *args)
        assert (r.code, r.out, r.err_lines) == (1, "", [NO_VM_AUDIT]), args
    r = cli("--config", cfg, "-o", "json", "vm", "list")
    assert r.code == 1 and r.err == ""
    assert r.json["error"]["type"] == "PermissionDenied"
    assert "VM.Audit" in r.json["error"]["message"] and "/vms" in r.json["error"]["message"]
    r = run_pvectl("--config", cfg, "vm", "list", "-o", "yaml")
    assert (r.code, r.out, r.err_lines) == (1, "", [NO_VM_AUDIT])


def test_token_with_other_privileges_only_still_names_vm_audit(cli: Callable[..., Run], sim: Any,
                                                               token_config: Callable[..., Path]) -> None:
    cfg = str(token_config(sim, "storage", {"/storage": ["Datastore.Audit"], "/nodes": ["Sys.Audit"]}))
    r = cli("--config", cfg, "-o", "table", "vm", "list")
    assert (r.code, r.err_lines) == (1, [NO_VM_AUDIT])
    # what it may read, it reads
    r = cli("--config", cfg, "-o", "json", "node", "status", "pve1")
    assert r.code == 0 and r.json["name"] == "pve1"


def test_token_with_vm_audit_on_one_vm_sees_exactly_that_vm(cli: Callable[..., Run], sim: Any,
                                                           token_config: Callable[..., Path]) -> None:
    cfg = str(token_config(sim, "vm100", {"/vms/100": ["VM.Audit"]}))
    r = cli("--config", cfg, "-o", "json", "vm", "list")
    assert r.code == 0 and [v["vmid"] for v in r.json] == [100]
    assert cli("--config", cfg, "-o", "json", "vm", "status", "web-01").json["vmid"] == 100
    r = cli("--config", cfg, "-o", "table", "vm", "status", "101")
    assert (r.code, r.err_lines) == (1, ["pvectl: error: VM 101 does not exist (or the token may not see it) "
                                         "(hint: list the VMs with: pvectl vm list)"])


def test_auditor_on_root_lists_everything(cli: Callable[..., Run], sim: Any, token_config: Callable[..., Path]) -> None:
    cfg = str(token_config(sim, "auditor", {"/": ["PVEAuditor"]}))
    admin = str(sim.config_path)
    for args in (("vm", "list"), ("template", "list"), ("cluster", "status"), ("node", "list")):
        mine = cli("--config", cfg, "-o", "json", *args)
        theirs = cli("--config", admin, "-o", "json", *args)
        assert mine.code == theirs.code == 0, (args, mine.err)
        key = "vmid" if args[0] in ("vm", "template") else "name"
        rows_m = mine.json["nodes"] if args[0] == "cluster" else mine.json
        rows_t = theirs.json["nodes"] if args[0] == "cluster" else theirs.json
        assert [x[key] for x in rows_m] == [x[key] for x in rows_t] != []
    assert len(cli("--config", cfg, "-o", "json", "vm", "list").json) == 14
    assert cli("--config", cfg, "-o", "json", "node", "status", "pve2").code == 0
    assert cli("--config", cfg, "-o", "json", "vm", "status", "9000").json["template"] is True


def test_cluster_status_without_sys_audit_exit_1(cli: Callable[..., Run], sim: Any,
                                                 token_config: Callable[..., Path]) -> None:
    cfg = str(token_config(sim, "vmsonly", {"/vms": ["VM.Audit"]}))
    r = cli("--config", cfg, "-o", "table", "cluster", "status")
    assert (r.code, r.out, r.err_lines) == (1, "", [NO_SYS_AUDIT_ROOT])
    r = cli("--config", cfg, "-o", "json", "cluster", "status")
    assert r.code == 1 and r.err == ""
    assert r.json["error"]["type"] == "PermissionDenied"
    assert r.json["error"]["message"] == "Permission check failed (/, Sys.Audit)"
    r = cli("--config", cfg, "-o", "table", "node", "status", "pve1")
    assert r.code == 1
    assert r.err_lines[0].startswith("pvectl: error: Permission check failed (/nodes/pve1, Sys.Audit) (hint: grant "
                                     "Sys.Audit on /nodes/pve1")
    # the VM reads work for this token
    assert len(cli("--config", cfg, "-o", "json", "vm", "list").json) == 14


def doctor_lines(r: Run) -> dict[str, str]:
    """`[FAIL] check: detail` lines -> {check: "FAIL detail"}."""
    out = {}
    for ln in r.out.splitlines():
        if ln.startswith("["):
            mark, rest = ln[1:5].strip(), ln[7:]
            check, _, detail = rest.partition(": ")
            out[check] = f"{mark} {detail}"
    return out


def test_doctor_with_limited_token_prints_fail_lines(cli: Callable[..., Run], sim: Any,
                                                     token_config: Callable[..., Path]) -> None:
    cfg = str(token_config(sim, "doc-vms", {"/vms": ["VM.Audit"]}))
    r = cli("--config", cfg, "-o", "table", "doctor")
    assert r.code == 1
    lines = doctor_lines(r)
    assert lines["credentials"].startswith("ok token limited@pve!doc-vms from token_file ")
    assert lines["quorum"] == "FAIL Permission check failed (/, Sys.Audit)"
    assert lines["can cluster status"] == "FAIL missing Sys.Audit on /"
    assert lines["can node list / node status"] == "FAIL missing Sys.Audit on /nodes"
    assert lines["can vm list / vm status / template list"] == "ok privileges present"
    assert lines["can vm start|shutdown|stop|reboot"] == "FAIL missing VM.PowerMgmt on /vms"
    assert lines["can vm delete"] == "FAIL missing VM.Allocate on /vms"
    assert lines["can vm migrate"] == "FAIL missing VM.Migrate on /vms"
    assert r.out.splitlines()[-1] == "verdict: problems found (see FAIL lines)"
    assert "Traceback" not in r.err

    # VM.Audit on one VM only: a warning that names where it is held
    cfg = str(token_config(sim, "doc-one", {"/vms/100": ["VM.Audit"]}))
    r = cli("--config", cfg, "-o", "table", "doctor")
    assert r.code == 1
    assert doctor_lines(r)["can vm list / vm status / template list"] == \
        "warn only partly: VM.Audit on /vms (only on /vms/100)"

    # JSON: the same verdicts as objects
    cfg = str(token_config(sim, "doc-audit", {"/": ["PVEAuditor"]}))
    r = cli("--config", cfg, "-o", "json", "doctor")
    assert r.code == 1 and r.json["ok"] is False
    checks = {c["check"]: (c["status"], c["detail"]) for c in r.json["checks"]}
    assert checks["can vm list / vm status / template list"] == ("ok", "privileges present")
    assert checks["can cluster status"] == ("ok", "privileges present")
    assert checks["can vm delete"] == ("FAIL", "missing VM.Allocate on /vms")
    assert checks["can vm clone"][0] == "FAIL" and "VM.Clone on /vms" in checks["can vm clone"][1] \
        and "Datastore.AllocateSpace on /storage/local-lvm" in checks["can vm clone"][1]


def test_doctor_with_full_token_passes(cli: Callable[..., Run], sim: Any) -> None:
    r = cli("--config", str(sim.config_path), "-o", "table", "doctor")
    assert r.code == 0, r.out
    assert all(v.startswith("ok ") for v in doctor_lines(r).values())
    assert r.out.splitlines()[-1] == "verdict: all checks passed"


def test_wrong_secret_is_exit_5(cli: Callable[..., Run], sim: Any, tmp_path: Path,
                                variant_config: Callable[..., Path]) -> None:
    tf = tmp_path / "token"
    tf.write_text(f"{sim.token_id}\n00000000-0000-4000-8000-000000000000\n")
    tf.chmod(0o600)
    cfg = str(variant_config(sim.config_path, "badtoken.yaml",
                             lambda d: d["credentials"].update(token_file=str(tf))))
    r = cli("--config", cfg, "-o", "table", "vm", "list")
    assert r.code == 5 and r.out == ""
    assert len(r.err_lines) == 1 and r.err_lines[0].startswith("pvectl: error: Authentication failed! (hint: ")
    assert sim.token_secret not in r.err


@pytest.fixture
def empty_sim(start_sim: Callable[..., Any]) -> Any:
    return start_sim(nodes=1, vms=0, templates=0)


def test_an_empty_cluster_is_an_empty_list_not_an_error(cli: Callable[..., Run], empty_sim: Any) -> None:
    r = cli("--config", str(empty_sim.config_path), "-o", "json", "vm", "list")
    assert (r.code, r.json, r.err) == (0, [], "")
    r = cli("--config", str(empty_sim.config_path), "-o", "json", "template", "list")
    assert (r.code, r.json) == (0, [])
