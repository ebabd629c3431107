from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pvectl import errors as E
from pvectl.upid import Upid


def _fixtures() -> Path:
    """spec/fixtures/errors of the shared project folder, which sits beside the repository."""
    repo = Path(__file__).resolve().parents[2]
    for base in (repo.parent / "shared", Path("/work/shared")):
        if (base / "spec" / "fixtures" / "errors").is_dir():
            return base / "spec" / "fixtures" / "errors"
    raise RuntimeError(f"spec/fixtures/errors not found beside {repo}: the shared/ folder is needed")


FIXTURES = _fixtures()


def resp(status: int, reason: str, body: object = None, method: str = "POST",
         path: str = "/nodes/pve1/qemu/100/status/start", node: str = "pve1") -> E.ApiError:
    raw = b"" if body is None else json.dumps(body).encode()
    return E.from_response(status, reason, raw, method, path, node)


def test_tree_and_exit_codes() -> None:
    assert issubclass(E.AuthError, E.ApiError) and issubclass(E.ApiError, E.PvectlError)
    assert issubclass(E.TaskFailed, E.TaskError) and issubclass(E.TaskTimeout, E.TaskError)
    codes = {E.ConfigError: 2, E.CredentialError: 2, E.ApiError: 1, E.AuthError: 5, E.PermissionDenied: 1,
             E.NotFound: 1, E.AlreadyExists: 1, E.Locked: 1, E.ParameterError: 1, E.NodeUnreachable: 5,
             E.TaskFailed: 1, E.TaskTimeout: 4, E.GuardRefused: 3, E.TlsError: 5}
    for cls, code in codes.items():
        assert cls.exit_code == code, cls


def test_permission_denied_parses_path_and_privilege() -> None:
    e = resp(403, "Permission check failed (/vms/100, VM.PowerMgmt)",
             {"data": None, "message": "Permission check failed (/vms/100, VM.PowerMgmt)\n"})
    assert isinstance(e, E.PermissionDenied)
    assert (e.acl_path, e.privilege, e.status) == ("/vms/100", "VM.PowerMgmt", 403)
    assert str(e) == "Permission check failed (/vms/100, VM.PowerMgmt)"
    assert "VM.PowerMgmt on /vms/100" in (e.hint or "")
    anyof = resp(403, "Permission check failed (/vms/100, VM.Config.Disk|VM.Config.CPU)")
    assert anyof.privilege == "VM.Config.Disk|VM.Config.CPU"
    bare = resp(403, "Permission check failed (pool 'GOAD' does not exist)", {"data": None})
    assert isinstance(bare, E.PermissionDenied) and bare.acl_path is None and bare.privilege is None


def test_fixture_files_map_to_types() -> None:
    expected = {"400_parameter_verification_failed.json": E.ParameterError,
                "403_permission_check_failed.json": E.PermissionDenied,
                "500_cant_lock_file_timeout.json": E.Locked,
                "500_config_does_not_exist.json": E.NotFound,
                "500_vm_locked.json": E.Locked}
    for name, cls in expected.items():
        doc = json.loads((FIXTURES / name).read_text())
        for ex in doc["examples"]:
            r = ex.get("response")
            if not r or "status" not in r:
                continue
            body = r.get("body")
            e = E.from_response(r["status"], r.get("reason", ""),
                                json.dumps(body).encode() if body is not None else b"",
                                "POST", "/x", "pve")
            if "already exists" in str((body or {}).get("errors", {}).get("vmid", "")):
                assert isinstance(e, E.AlreadyExists)  # /cluster/nextid?vmid=<used> (VMID allocation)
                continue
            assert isinstance(e, cls), (name, r)
    doc = json.loads((FIXTURES / "500_already_exists.json").read_text())
    for ex in doc["examples"]:
        r = ex["response"]
        assert isinstance(resp(r["status"], r["reason"]), E.AlreadyExists)


def test_message_field_wins_over_reason_and_loses_newline() -> None:
    e = resp(500, "something else", {"data": None, "message": "no such user ('ghost@pve')\n"})
    assert str(e) == "no such user ('ghost@pve')" and isinstance(e, E.NotFound)
    e = resp(500, "VM 100 is running - destroy failed", {"data": None})
    assert str(e) == "VM 100 is running - destroy failed" and type(e) is E.ApiError


def test_locked_variants() -> None:
    e = resp(500, "VM is locked (clone)")
    assert isinstance(e, E.Locked) and e.lock == "clone" and not e.timeout and e.retryable
    e = resp(500, "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout")
    assert isinstance(e, E.Locked) and e.lock is None and e.timeout
    assert e.lock_file == "/var/lock/qemu-server/lock-100.conf" and e.retryable
    assert resp(500, "CT is locked (disk)").lock == "disk"


def test_not_found_variants() -> None:
    assert isinstance(resp(500, "Configuration file 'nodes/pve1/qemu-server/117.conf' does not exist"), E.NotFound)
    assert isinstance(resp(500, "unable to find configuration file for VM 8000 on node 'pve02'"), E.NotFound)
    e = resp(400, "Parameter verification failed.", {"data": None, "errors": {"upid": "no such task"}},
             method="GET", path="/nodes/pve1/tasks/UPID:x/status")
    assert isinstance(e, E.NotFound) and str(e) == "Parameter verification failed: upid: no such task"


def test_already_exists_variants() -> None:
    assert isinstance(resp(500, "unable to create VM 101: config file already exists"), E.AlreadyExists)
    e = resp(400, "Parameter verification failed.", {"data": None, "errors": {"vmid": "VM 105 already exists"}},
             method="GET", path="/cluster/nextid")
    assert isinstance(e, E.AlreadyExists) and e.errors == {"vmid": "VM 105 already exists"}


def test_parameter_error_keeps_errors_and_builds_message() -> None:
    e = resp(400, "Parameter verification failed.",
             {"data": None, "message": "Parameter verification failed.\n",
              "errors": {"sshkeys": "invalid format - invalid urlencoded string: ssh-ed25519 AAAA\n",
                         "newid": "property is missing and it is not optional"}})
    assert isinstance(e, E.ParameterError)
    assert e.errors == {"sshkeys": "invalid format - invalid urlencoded string: ssh-ed25519 AAAA",
                        "newid": "property is missing and it is not optional"}
    assert str(e) == ("Parameter verification failed: sshkeys: invalid format - invalid urlencoded string: "
                      "ssh-ed25519 AAAA; newid: property is missing and it is not optional")


def test_auth_error_with_empty_body() -> None:
    e = E.from_response(401, "Authentication failed!", b"", "GET", "/version", "pve1")
    assert isinstance(e, E.AuthError) and str(e) == "Authentication failed!" and e.exit_code == 5
    assert "token" in (e.hint or "")
    assert str(E.from_response(401, "No ticket", b"", "GET", "/version", "pve1")) == "No ticket"


def test_proxy_statuses_are_node_unreachable() -> None:
    e = resp(595, "Connection refused", None, method="GET", path="/nodes/pve2/status", node="pve1")
    assert isinstance(e, E.NodeUnreachable) and e.retryable and not e.uncertain
    assert str(e) == "node pve2 unreachable (via pve1): 595 Connection refused"
    e = resp(596, "Connection timed out", None, method="POST", path="/nodes/pve2/qemu/100/clone", node="pve1")
    assert e.uncertain and not e.retryable  # the write may have happened on pve2


def test_other_statuses_are_plain_api_errors() -> None:
    e = resp(501, "Method 'GET /nodes/pve1/foo' not implemented",
             {"data": None, "message": "Method 'GET /nodes/pve1/foo' not implemented"})
    assert type(e) is E.ApiError and e.status == 501
    assert type(resp(500, "checksum mismatch (file change by other user?)")) is E.ApiError
    assert type(E.from_response(500, "", b"not json", "GET", "/x", "pve1")) is E.ApiError
    assert str(E.from_response(502, "", b"", "GET", "/x", "pve1")) == "HTTP 502"


def test_to_dict_shapes() -> None:
    e = resp(500, "VM is locked (clone)")
    d = e.to_dict()
    assert d == {"error": {"type": "Locked", "message": "VM is locked (clone)", "hint": e.hint, "node": "pve1"}}
    u = Upid.parse("UPID:pve2:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:")
    t = E.TaskTimeout(u)
    assert t.to_dict() == {"error": {"type": "TaskTimeout",
                                     "message": f"task {u} still running at the deadline",
                                     "hint": f"resume with: pvectl task wait {u}",
                                     "upid": str(u), "node": "pve2"}}
    f = E.TaskFailed(u, "clone failed: can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout",
                     ["trying to acquire lock...", "TASK ERROR: clone failed: ..."])
    assert f.exit_code == 1 and f.log_tail[-1].startswith("TASK ERROR")
    assert f.to_dict()["error"]["message"].startswith(f"task {u} failed: clone failed")
    g = E.GuardRefused("VM 100 is running", "stop it first: pvectl vm shutdown 100")
    assert g.to_dict() == {"error": {"type": "GuardRefused", "message": "VM 100 is running",
                                     "hint": "stop it first: pvectl vm shutdown 100"}}
    assert json.dumps(E.ConfigError("x").to_dict())


def test_registered_secret_never_appears() -> None:
    secret = "5e1f0c7a-9d1b-4a8e-b6b4-2f9c3e0d8a71"
    E.register_secret(secret)
    errs = [
        E.from_response(401, f"Authentication failed! {secret}", b"", "GET", "/version", "pve1"),
        E.from_response(500, "x", json.dumps({"message": f"boom {secret}\n"}).encode(), "GET", "/", "pve1"),
        E.from_response(400, "Parameter verification failed.",
                        json.dumps({"errors": {"p": f"bad {secret}"}}).encode(), "POST", "/", "pve1"),
        E.CredentialError(f"bad {secret}", hint=f"h {secret}"),
        E.TaskFailed("UPID:x", f"err {secret}", [f"line {secret}"]),
    ]
    for e in errs:
        blob = str(e) + repr(e.to_dict()) + repr(getattr(e, "errors", "")) + repr(getattr(e, "log_tail", ""))
        blob += str(getattr(e, "exitstatus", "")) + str(e.args)
        assert secret not in blob, blob


def test_import_is_light() -> None:
    code = ("import sys, pvectl.errors, pvectl.upid; "
            "print(sorted(m for m in ('re','json','typing','dataclasses') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
