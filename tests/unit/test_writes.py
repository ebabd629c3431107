"""writes.py: the dry-run curl line and the Writer (send + audit, or print and send nothing).

The curl lines are checked the way a shell reads them (`shlex.split`), and each `--data-urlencode`
value is run through curl's encoding and Proxmox's form decoder (pve-semantics C15: a value ends at
its first raw `=`, `+` becomes a space), so a value with spaces, `=`, `+`, `&` or quotes arrives
unchanged. No network: the Writer talks to a recording transport.
"""

from __future__ import annotations

import json
import os
import shlex
import urllib.parse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pvectl import audit, credentials
from pvectl.config import loads_config
from pvectl.errors import ApiError
from pvectl.writes import Write, Writer, curl_line, secret_expression

TOKEN_ID = "ops@pve!pvectl"
# how a dry-run line reads a token file or pass entry: like pvectl (CR/VT/FF end a line, blank lines skipped)
LINES = r"tr '\r\v\f' '\n\n\n'"
FIRST = "awk 'NF {print $1; exit}'"
LAST = "awk 'NF {s = $1} END {print s}'"
SECRET = "0b7e4a36-1111-4c1e-9c55-5a1f00d5e0c1"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "PVECTL_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    credentials.reset()


def config(tmp_path: Path, *, credentials_yaml: str, tls_yaml: str = "") -> Any:
    text = f"""
cluster:
  name: lab
  nodes:
    - {{name: pve1, host: 127.0.0.1, port: 18006}}
    - {{name: pve2, host: 127.0.0.2}}
credentials: {credentials_yaml}
{tls_yaml}
vmid_ranges: {{vms: 100-899, templates: 9000-9999}}
"""
    return loads_config(text, base_dir=str(tmp_path))


def token_file(tmp_path: Path, name: str = "token") -> Path:
    path = tmp_path / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{TOKEN_ID}\n{SECRET}\n")
    return path


def cluster_with(cfg: Any, transport: Any = None) -> Any:
    return SimpleNamespace(config=cfg, transport=transport)


def curl_argv(line: str) -> list[str]:
    """The argv a POSIX shell builds from the line (command substitutions stay as text)."""
    return shlex.split(line)


def data_values(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--data-urlencode"]


def as_proxmox_reads_it(data_urlencode_arg: str) -> tuple[str, str]:
    """curl `--data-urlencode name=content` -> body `name=<percent-encoded content>` -> pveproxy's
    decode_urlencoded (split at `=` keeping two fields, `+` -> space, one %XX decode)."""
    name, _, content = data_urlencode_arg.partition("=")
    body = name + "=" + urllib.parse.quote(content, safe="-._~")        # curl_easy_escape
    k, v = (body.split("=") + [""])[:2]
    return urllib.parse.unquote(k.replace("+", " ")), urllib.parse.unquote(v.replace("+", " "))


# ---------------------------------------------------------------------------------- secret sources
def test_token_file_source_reads_the_secret_at_run_time(tmp_path: Path) -> None:
    tf = token_file(tmp_path, "my token")
    (tmp_path / "pve root ca.pem").write_text("")
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}",
                 tls_yaml=f"tls: {{ca_file: '{tmp_path}/pve root ca.pem'}}")
    w = Write("POST", "/nodes/pve1/qemu/103/status/start", {}, "pve1", "start VM 103")
    line = curl_line(cfg, w)
    q = shlex.quote(str(tf))
    assert line == (f"curl -s --cacert {shlex.quote(str(tmp_path / 'pve root ca.pem'))} -X POST "
                    f'-H "Authorization: PVEAPIToken=$({LINES} < {q} | {FIRST})=$({LINES} < {q} | {LAST})" '
                    f"https://127.0.0.1:18006/api2/json/nodes/pve1/qemu/103/status/start")
    assert SECRET not in line and "$(" in line
    argv = curl_argv(line)
    assert argv[:4] == ["curl", "-s", "--cacert", str(tmp_path / "pve root ca.pem")]


def test_token_file_with_a_configured_token_id(tmp_path: Path) -> None:
    tf = token_file(tmp_path)
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}', token_id: '{TOKEN_ID}'}}")
    assert secret_expression(cfg) == (TOKEN_ID, f"$({LINES} < {tf} | {LAST})")


def test_pass_source(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("")
    cfg = config(tmp_path, credentials_yaml="{pass_path: proxmox/api-token}",
                 tls_yaml=f"tls: {{ca_file: '{tmp_path}/ca.pem'}}")
    line = curl_line(cfg, Write("DELETE", "/nodes/pve2/qemu/104", {"purge": 1}, "pve2", "delete"))
    assert (f'-H "Authorization: PVEAPIToken=$(pass show proxmox/api-token | {LINES} | {FIRST})='
            f'$(pass show proxmox/api-token | {LINES} | {LAST})"') in line
    # the VM's node is addressed (port 8006 by default); DELETE parameters go in the query string
    assert line.endswith("'https://127.0.0.2:8006/api2/json/nodes/pve2/qemu/104?purge=1'")
    assert "--data-urlencode" not in line

    # an entry path with a space stays one word inside the command substitution
    cfg2 = config(tmp_path, credentials_yaml="{pass_path: 'lab store/pve token'}")
    tid, sec = secret_expression(cfg2)
    assert (tid, sec) == (f"$(pass show 'lab store/pve token' | {LINES} | {FIRST})",
                          f"$(pass show 'lab store/pve token' | {LINES} | {LAST})")


def test_environment_source_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tf = token_file(tmp_path)
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}")
    monkeypatch.setenv("PVECTL_TOKEN_ID", TOKEN_ID)
    monkeypatch.setenv("PVECTL_TOKEN_SECRET", SECRET)
    line = curl_line(cfg, Write("POST", "/nodes/pve1/qemu/103/status/stop", {}, "pve1", "stop"))
    assert '-H "Authorization: PVEAPIToken=$PVECTL_TOKEN_ID=$PVECTL_TOKEN_SECRET"' in line
    assert SECRET not in line and TOKEN_ID not in line


# ------------------------------------------------------------------------------------------- TLS
def test_insecure_uses_k_and_a_ca_file_wins_over_insecure(tmp_path: Path) -> None:
    tf = token_file(tmp_path)
    w = Write("POST", "/nodes/pve1/qemu/103/status/start", {}, "pve1", "start")
    insecure = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}", tls_yaml="tls: {insecure: true}")
    argv = curl_argv(curl_line(insecure, w))
    assert argv[:4] == ["curl", "-s", "-k", "-X"] and "--cacert" not in argv
    system = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}")
    argv = curl_argv(curl_line(system, w))
    assert argv[:3] == ["curl", "-s", "-X"] and "-k" not in argv and "--cacert" not in argv


# ----------------------------------------------------------------------------------------- quoting
AWKWARD = {
    "description": "two words & more = 100% + 'quotes' \"too\"",
    "ipconfig0": "ip=10.0.0.5/24,gw=10.0.0.1",
    "net0": "virtio,bridge=vmbr0,tag=20",
    "size": "+10G",
    "tags": "prod;web",
    "sshkeys": "ssh-ed25519%20AAAAC3Nz%2B%2F%3D%3D%20me%40host",   # already url-encoded, as PVE wants
    "onboot": True,
    "protection": False,
}


def test_every_value_is_data_urlencoded_and_arrives_unchanged(tmp_path: Path) -> None:
    tf = token_file(tmp_path)
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}", tls_yaml="tls: {insecure: true}")
    line = curl_line(cfg, Write("PUT", "/nodes/pve1/qemu/103/config", AWKWARD, "pve1", "set"))
    argv = curl_argv(line)
    assert argv[argv.index("-X") + 1] == "PUT"
    assert argv[-1] == "https://127.0.0.1:18006/api2/json/nodes/pve1/qemu/103/config"
    values = data_values(argv)
    assert len(values) == len(AWKWARD) and "-d" not in argv and "--data" not in argv
    expected = {k: ("1" if v is True else "0" if v is False else v) for k, v in AWKWARD.items()}
    assert dict(as_proxmox_reads_it(v) for v in values) == expected
    # the seed's `-d 'k=v'` would not survive: this is what the decoder makes of the raw pairs
    assert as_proxmox_reads_it("x=y")[1] == "y"
    raw = "ipconfig0=ip=10.0.0.5/24".split("=")[:2]
    assert raw[1] == "ip"


def test_none_values_are_left_out_and_lists_repeat_the_key(tmp_path: Path) -> None:
    tf = token_file(tmp_path)
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}")
    params = {"newid": 150, "pool": None, "name": "a b", "tags": ["x", "y"]}
    w = Write("POST", "/nodes/pve1/qemu/9000/clone", params, "pve1", "clone")
    values = data_values(curl_argv(curl_line(cfg, w)))
    assert values == ["newid=150", "name=a b", "tags=x", "tags=y"]
    # exactly the pairs the transport would send
    from pvectl.http import encode_params

    assert urllib.parse.parse_qsl(encode_params(params)) == [tuple(v.split("=", 1)) for v in values]
    w = Write("DELETE", "/nodes/pve1/qemu/150", {"purge": 1, "skiplock": None}, "pve1", "delete")
    assert curl_argv(curl_line(cfg, w))[-1].endswith("/nodes/pve1/qemu/150?purge=1")


def test_unknown_node_falls_back_to_the_first_configured_node(tmp_path: Path) -> None:
    tf = token_file(tmp_path)
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}")
    w = Write("POST", "/nodes/pve9/qemu/103/status/start", {}, "pve9", "start")
    assert curl_argv(curl_line(cfg, w))[-1] == \
        "https://127.0.0.1:18006/api2/json/nodes/pve9/qemu/103/status/start"


# ------------------------------------------------------------------------------------------ Writer
class RecordingTransport:
    def __init__(self, reply: Any = None, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.reply = reply
        self.error = error

    def request(self, method: str, path: str, params: Any = None, *, node: str | None = None, **_: Any) -> Any:
        self.calls.append((method, path, dict(params or {}), node))
        if self.error is not None:
            raise self.error
        return self.reply


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


UPID = "UPID:pve1:00001234:00ABCDEF:66F1E2D3:qmstart:103:ops@pve!pvectl:"


def test_writer_dry_run_prints_and_sends_nothing(tmp_path: Path) -> None:
    import io

    tf = token_file(tmp_path)
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}", tls_yaml="tls: {insecure: true}")
    t = RecordingTransport(UPID)
    out = io.StringIO()
    w = Writer(cfg, t, command="pvectl vm start 103", dry_run=True, out=out)
    assert w.send(Write("POST", "/nodes/pve1/qemu/103/status/start", {}, "pve1", "start VM 103 (x) on pve1")) is None
    w.task_done(UPID, "OK")
    assert t.calls == [] and audit_lines(tmp_path) == []
    text = out.getvalue().splitlines()
    assert text[0] == "# start VM 103 (x) on pve1" and text[1].startswith("curl -s -k -X POST ")
    assert len(w.planned) == 1


def test_writer_sends_and_audits_without_secrets(tmp_path: Path) -> None:
    tf = token_file(tmp_path)
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}")
    t = RecordingTransport(UPID)
    w = Writer(cfg, t, command="pvectl vm set 103 cipassword=hunter2 ciuser=ops")
    params = {"cipassword": "hunter2", "ciuser": "ops", "digest": "abc"}
    assert w.send(Write("PUT", "/nodes/pve1/qemu/103/config", params, "pve1", "set")) == UPID
    w.task_done(UPID, "OK")
    assert t.calls == [("PUT", "/nodes/pve1/qemu/103/config", params, "pve1")]
    first, second = audit_lines(tmp_path)
    assert {k: first[k] for k in ("cluster", "token_id", "event", "method", "path", "node", "upid", "result")} == {
        "cluster": "lab", "token_id": TOKEN_ID, "event": "write", "method": "PUT",
        "path": "/nodes/pve1/qemu/103/config", "node": "pve1", "upid": UPID, "result": "task started"}
    assert first["params"] == {"cipassword": "<hidden>", "ciuser": "ops", "digest": "abc"}
    assert "time" in first
    assert (second["event"], second["upid"], second["result"]) == ("task", UPID, "OK")
    text = (tmp_path / "audit.jsonl").read_text()
    assert "hunter2" not in text and SECRET not in text
    assert first["command"] == "pvectl vm set 103 cipassword=<hidden> ciuser=ops"
    assert oct(os.stat(tmp_path / "audit.jsonl").st_mode & 0o777) == "0o600"


def test_writer_audits_a_failed_write_and_reraises(tmp_path: Path) -> None:
    tf = token_file(tmp_path)
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}")
    err = ApiError("VM 105 is running - destroy failed", status=500)
    w = Writer(cfg, RecordingTransport(error=err), command="pvectl vm delete 105 --yes")
    with pytest.raises(ApiError):
        w.send(Write("DELETE", "/nodes/pve3/qemu/105", {"purge": 1}, "pve3", "delete"))
    [entry] = audit_lines(tmp_path)
    assert entry["result"] == "error: VM 105 is running - destroy failed"
    assert "upid" not in entry


def test_a_write_cut_short_by_ctrl_c_leaves_an_audit_line_saying_its_outcome_is_unknown(tmp_path: Path) -> None:
    tf = token_file(tmp_path)
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}")
    t = RecordingTransport(error=KeyboardInterrupt())    # type: ignore[arg-type]
    w = Writer(cfg, t, command="pvectl vm start 105")
    with pytest.raises(KeyboardInterrupt):
        w.send(Write("POST", "/nodes/pve3/qemu/105/status/start", {}, "pve3", "start"))
    [entry] = audit_lines(tmp_path)
    assert (entry["event"], entry["method"], entry["path"]) == ("write", "POST", "/nodes/pve3/qemu/105/status/start")
    assert entry["result"].startswith("outcome unknown: interrupted (KeyboardInterrupt)")
    assert "upid" not in entry


def test_an_unwritable_audit_log_does_not_fail_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    tf = token_file(tmp_path)
    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{tf}'}}")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(blocker / "audit.jsonl"))
    w = Writer(cfg, RecordingTransport(None), command="pvectl vm set 103 onboot=1")
    assert w.send(Write("PUT", "/nodes/pve1/qemu/103/config", {"onboot": 1}, "pve1", "set")) is None
    assert "pvectl: warning: could not append to the audit log:" in capsys.readouterr().err


def test_audit_clean_params_and_read(tmp_path: Path) -> None:
    assert audit.clean_params({"cipassword": "x", "password": "y", "token": "z", "cores": 2}) == {
        "cipassword": "<hidden>", "password": "<hidden>", "token": "<hidden>", "cores": 2}
    assert audit.read() == []
    assert audit.clean_command("pvectl vm set web 'cipassword=two words' --password=x 'description=a b'") == \
        "pvectl vm set web cipassword=<hidden> --password=<hidden> 'description=a b'"
    for i in range(3):
        audit.record(cluster="lab", token_id=TOKEN_ID, command=f"pvectl vm start {i}", event="write", result="ok")
    with (tmp_path / "audit.jsonl").open("a") as audit_file:
        audit_file.write("not json\n")
    assert [e["command"] for e in audit.read()] == ["pvectl vm start 0", "pvectl vm start 1", "pvectl vm start 2"]
    assert [e["command"] for e in audit.read(limit=2)] == ["pvectl vm start 2"]   # the last 2 lines, one bad


def test_a_write_with_a_secret_parameter_hides_it_in_repr_summary_and_curl(tmp_path: Path) -> None:
    from pvectl.errors import ApiError as _ApiError
    from pvectl.writes import hide_secrets

    cfg = config(tmp_path, credentials_yaml=f"{{token_file: '{token_file(tmp_path)}'}}")
    pw = "pw-Canary-77a1"
    w = Write("PUT", "/nodes/pve1/qemu/103/config", {"cipassword": pw, "ciuser": "ops"}, "pve1",
              f"set cipassword={pw}, ciuser=ops on VM 103")
    assert pw not in repr(w) and "'cipassword': '<hidden>'" in repr(w)
    assert hide_secrets(w.summary, w.params) == "set cipassword=<hidden>, ciuser=ops on VM 103"
    line = curl_line(cfg, w)
    assert pw not in line
    assert '--data-urlencode "cipassword=${PVECTL_CIPASSWORD:?set PVECTL_CIPASSWORD to the cipassword}"' in line
    assert "--data-urlencode ciuser=ops" in line
    # once a write carrying it was made, no error message can show it
    w.register_secrets()
    assert pw not in _ApiError(f"value '{pw}' rejected").message


def test_an_ipv6_node_is_bracketed_in_the_curl_url(tmp_path: Path) -> None:
    cfg = loads_config("cluster: {name: lab, nodes: [{name: pve1, host: '[fd00::10]', port: 8006}]}\n"
                       f"credentials: {{token_file: '{token_file(tmp_path)}'}}\n")
    line = curl_line(cfg, Write("POST", "/nodes/pve1/qemu/103/status/start", {}, "pve1", "start"))
    assert curl_argv(line)[-1] == "https://[fd00::10]:8006/api2/json/nodes/pve1/qemu/103/status/start", line
