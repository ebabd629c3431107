from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


# -- every field a caller reads, per kind of response ------------------------------------------------

def test_each_error_keeps_the_request_and_answer() -> None:
    for status, body, cls in [(401, None, E.AuthError), (404, {"message": "Not Found\n"}, E.ApiError),
                              (400, {"errors": {"upid": "no such task"}}, E.NotFound),
                              (400, {"errors": {"vmid": "VM 105 already exists"}}, E.AlreadyExists),
                              (500, {"message": "VM 100 already exists on node 'pve2'\n"}, E.AlreadyExists),
                              (500, {"message": "Configuration file 'nodes/pve1/qemu-server/100.conf' does not "
                                                "exist\n"}, E.NotFound),
                              (500, {"message": "can't lock file '/var/lock/qemu-server/lock-100.conf' - got "
                                                "timeout\n"}, E.Locked),
                              (595, None, E.NodeUnreachable)]:
        e = resp(status, " Reason ", body, method="PUT", path="/nodes/pve2/qemu/100/config", node="pve2")
        assert type(e) is cls, (status, body)
        assert (e.status, e.reason, e.method, e.path, e.node) == (status, "Reason", "PUT",
                                                                  "/nodes/pve2/qemu/100/config", "pve2")


def test_lock_file_timeout_is_a_retryable_lock_without_a_lock_name() -> None:
    e = resp(500, "x", {"message": "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout\n"})
    assert isinstance(e, E.Locked)
    assert (e.lock, e.timeout, e.lock_file, e.retryable) == (None, True, "/var/lock/qemu-server/lock-100.conf", True)
    assert e.hint == "another task holds the VM's lock; retry when it has finished"
    named = resp(500, "x", {"message": "VM is locked (backup)\n"})
    assert isinstance(named, E.Locked) and (named.lock, named.timeout) == ("backup", False)
    assert named.hint == ("a 'backup' operation holds the VM; wait for its task to finish (pvectl task list), "
                          "or run `qm unlock <vmid>` on the node if the lock is stale")


def test_400_detail_joins_every_field_error() -> None:
    e = resp(400, "Parameter verification failed.",
             {"message": "Parameter verification failed.\n", "errors": {"memory": "bad\n", "cores": "too big"}})
    assert isinstance(e, E.ParameterError)
    assert str(e) == "Parameter verification failed: memory: bad; cores: too big"
    plain = resp(400, "Bad Request.", {"message": "Bad Request.\n"})
    assert str(plain) == "Bad Request."                 # no field errors: the text as it is, dot kept


@pytest.mark.parametrize("status,method,uncertain", [(595, "POST", False), (595, "GET", False),
                                                     (596, "POST", True), (596, "GET", False),
                                                     (599, "PUT", True), (596, None, False)])
def test_proxy_status_is_uncertain_only_for_a_write_that_may_have_arrived(status: int, method: str | None,
                                                                         uncertain: bool) -> None:
    # 595: the relaying node could not connect to the target, so nothing reached it; 596/599: the request
    # phase failed after sending, so a write may have been applied (spec/pve-semantics.md §12.5)
    e = E.from_response(status, "Errors during connection establishment", b"", method,
                        "/nodes/pve3/qemu/100/status/start", "pve1")
    assert isinstance(e, E.NodeUnreachable)
    assert e.uncertain is uncertain and e.retryable is (not uncertain)
    assert str(e) == f"node pve3 unreachable (via pve1): {status} Errors during connection establishment"
    assert e.attempts == [("pve3", f"{status} Errors during connection establishment")]


def test_proxy_status_from_the_node_itself_names_no_relay() -> None:
    e = E.from_response(595, "No route", b"", "GET", "/cluster/resources", "pve2")
    assert str(e) == "node pve2 unreachable: 595 No route" and e.attempts == [("pve2", "595 No route")]
    e = E.from_response(595, "No route", b"", "GET", "/cluster/resources", None)
    assert e.attempts == [("?", "595 No route")]


def test_permission_denied_hints() -> None:
    parsed = resp(403, "x", {"message": "Permission check failed (/vms/100, VM.PowerMgmt)\n"})
    assert parsed.hint == ("grant VM.PowerMgmt on /vms/100 to the token's user, and to the token itself if it has "
                           "privilege separation (pveum acl modify /vms/100 --tokens ... --roles ...)")
    unparsed = resp(403, "Forbidden", None)
    assert unparsed.hint == "the API token lacks a privilege for this request (pveum user token permissions)"
    given = E.PermissionDenied("no", acl_path="/vms/1", privilege="VM.Audit", hint="ask the admin")
    assert given.hint == "ask the admin"
    only_path = E.PermissionDenied("no", acl_path="/vms/1")
    assert only_path.hint == "the API token lacks a privilege for this request (pveum user token permissions)"


def test_secrets_of_four_characters_or_more_are_redacted() -> None:
    import uuid

    short, four = "q" + uuid.uuid4().hex[:2], "k" + uuid.uuid4().hex[:3]   # new ones each run
    E.register_secret("")
    E.register_secret(short)                      # too short to be told from ordinary text
    E.register_secret(four)
    assert E.redact(f"a {short} b {four} c") == f"a {short} b <redacted> c"
    e = E.ApiError("x", reason=f"bad {four}", errors={"f": f"{four}!"})
    assert (e.reason, e.errors) == ("bad <redacted>", {"f": "<redacted>!"})


def test_node_unreachable_hint_says_a_write_may_have_arrived_only_when_uncertain() -> None:
    sure = E.NodeUnreachable("down", attempts=[("pve1", "refused")])
    assert sure.hint == E.NodeUnreachable.default_hint and sure.retryable and not sure.uncertain
    maybe = E.NodeUnreachable("down", uncertain=True)
    assert maybe.hint == ("the request may have reached the server before the connection failed; "
                          "check the VM/task state before repeating it")
    assert not maybe.retryable and maybe.attempts == []
    assert E.NodeUnreachable("down", uncertain=True, hint="mine").hint == "mine"


def test_given_hints_and_fields_are_kept() -> None:
    assert E.ConfigError("bad", hint="fix it").hint == "fix it"
    tls = E.TlsError("bad cert", hint="pin it", node="pve2")
    assert (tls.hint, tls.node) == ("pin it", "pve2")
    guard = E.GuardRefused("protected", "unset protection", node="pve3")
    assert (guard.reason, guard.hint, guard.node) == ("protected", "unset protection", "pve3")
    api = E.ApiError("x", path="/nodes/pve1/qemu", status=500)
    assert (api.path, api.retryable) == ("/nodes/pve1/qemu", False)
    assert str(E.ApiError("text")) == "text"
    upid = "UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:"
    assert E.TaskError("t", upid=upid).retryable is False
    assert E.TaskFailed(upid, "exit 1", hint="look").hint == "look"
    assert E.TaskFailed(upid, "exit 1").hint == f"pvectl task log {upid}"
    assert E.TaskTimeout(upid, hint="later").hint == "later"
    assert E.TaskTimeout(upid).hint == f"resume with: pvectl task wait {upid}"


def test_body_text_loses_only_its_trailing_newlines() -> None:
    e = resp(500, "x", {"message": "disk full X\n", "errors": {"size": "too big X\n"}})
    assert str(e) == "disk full X" and e.errors == {"size": "too big X"}
    e = resp(400, "x", {"message": "bad value X.\n", "errors": {"size": "too big"}})
    assert str(e) == "bad value X: size: too big"   # only the final dot goes before the details


def test_a_given_lock_hint_is_kept() -> None:
    assert E.Locked("VM is locked (clone)", lock="clone", hint="mine").hint == "mine"
