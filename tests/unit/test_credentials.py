from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pvectl import credentials, errors
from pvectl.config import Config, Credentials, Node
from pvectl.credentials import Token, load_token, prefetch
from pvectl.errors import CredentialError

TID = "root@pam!pvectl"
SECRET = "3f2b1c9e-8d7a-4b6c-9e5f-1a2b3c4d5e6f"


@pytest.fixture(autouse=True)
def _reset() -> None:
    credentials.reset()
    yield
    credentials.reset()


def cfg(**kw: object) -> Config:
    return Config(name="lab", nodes=(Node(name="pve1", host="127.0.0.1"),), credentials=Credentials(**kw))


@pytest.fixture
def fake_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `pass` on PATH that logs its argv and prints $FAKE_PASS_OUT / exits $FAKE_PASS_RC."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "argv.log"
    script = bindir / "pass"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
if [ -n "$FAKE_PASS_ERR" ]; then printf '%s\\n' "$FAKE_PASS_ERR" >&2; fi
if [ -n "$FAKE_PASS_OUT" ]; then printf '%b' "$FAKE_PASS_OUT"; fi
exit ${{FAKE_PASS_RC:-0}}
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    for k in ("PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET", "FAKE_PASS_ERR", "FAKE_PASS_RC"):
        monkeypatch.delenv(k, raising=False)
    return log


def test_token_repr_hides_secret_and_header() -> None:
    t = Token(TID, SECRET)
    assert repr(t) == "Token(token_id='root@pam!pvectl', secret=<redacted>)" == str(t)
    assert SECRET not in repr(t) and SECRET not in f"{t}"
    assert t.header() == f"PVEAPIToken=root@pam!pvectl={SECRET}"
    assert (t.user, t.name) == ("root@pam", "pvectl")
    with pytest.raises(AttributeError):
        t.secret = "x"  # type: ignore[misc]


def test_env_wins(fake_pass: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PVECTL_TOKEN_ID": TID, "PVECTL_TOKEN_SECRET": SECRET}
    t = load_token(cfg(pass_path="proxmox/api-token"), env=env)
    assert (t.token_id, t.secret, t.source) == (TID, SECRET, "environment")
    assert not fake_pass.exists()  # pass never ran


@pytest.mark.parametrize("env,msg", [
    ({"PVECTL_TOKEN_ID": TID}, "PVECTL_TOKEN_ID is set but PVECTL_TOKEN_SECRET is not"),
    ({"PVECTL_TOKEN_SECRET": SECRET}, "PVECTL_TOKEN_SECRET is set but PVECTL_TOKEN_ID is not"),
    ({"PVECTL_TOKEN_ID": "root@pam", "PVECTL_TOKEN_SECRET": SECRET},
     "malformed token id in $PVECTL_TOKEN_ID: expected USER@REALM!TOKENNAME (e.g. root@pam!pvectl); "
     "it has no '!TOKENNAME' (a user's password cannot be used, only an API token)"),
])
def test_env_errors(env: dict[str, str], msg: str) -> None:
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(), env=env)
    assert str(ei.value) == msg and ei.value.exit_code == 2


def test_pass_once_per_process_last_line_secret(fake_pass: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PASS_OUT", f"{TID}\\nurl: https://pve\\n{SECRET}\\n\\n")
    c = cfg(pass_path="proxmox/api-token")
    prefetch(c, env={})
    t1 = load_token(c, env={})
    t2 = load_token(c, env={})
    assert t1 is t2 and (t1.token_id, t1.secret) == (TID, SECRET)
    assert t1.source == "pass entry 'proxmox/api-token'"
    assert fake_pass.read_text() == "show proxmox/api-token\n"  # one run; the secret is never in argv


def test_token_id_in_config_overrides_line_one(fake_pass: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PASS_OUT", f"{SECRET}\\n")
    t = load_token(cfg(pass_path="p", token_id="ops@pve!ci"), env={})
    assert (t.token_id, t.secret) == ("ops@pve!ci", SECRET)


def test_pass_not_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(pass_path="proxmox/api-token"), env={})
    assert str(ei.value) == "`pass` is not installed (needed for credentials.pass_path)"
    assert ei.value.hint == "install pass or set credentials.token_file"


def test_pass_entry_missing(fake_pass: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PASS_RC", "1")
    monkeypatch.setenv("FAKE_PASS_ERR", "Error: proxmox/nope is not in the password store.")
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(pass_path="proxmox/nope"), env={})
    assert str(ei.value) == ("pass entry 'proxmox/nope' not found: "
                             "Error: proxmox/nope is not in the password store.")
    assert "pass insert -m proxmox/nope" in (ei.value.hint or "")


def test_gpg_failure(fake_pass: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PASS_RC", "2")
    monkeypatch.setenv("FAKE_PASS_ERR", "gpg: decryption failed: No secret key")
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(pass_path="proxmox/api-token"), env={})
    assert str(ei.value) == "`pass show proxmox/api-token` failed (exit 2): gpg: decryption failed: No secret key"
    assert "gpg" in (ei.value.hint or "")


def test_swapped_lines_do_not_leak_secret(fake_pass: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PASS_OUT", f"{SECRET}\\n{TID}\\n")
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(pass_path="p"), env={})
    assert str(ei.value) == ("malformed token id in line 1 of pass entry 'p': expected USER@REALM!TOKENNAME "
                             "(e.g. root@pam!pvectl); it looks like a secret (a UUID) - are the lines swapped?")
    assert SECRET not in str(ei.value) + str(ei.value.hint)


@pytest.mark.parametrize("content,msg", [
    (f"{TID}\n", "empty secret in pass entry 'p': expected 2 lines (line 1 token id, last line secret), found 1"),
    ("", "empty secret in pass entry 'p': expected 2 lines (line 1 token id, last line secret), found 0"),
])
def test_empty_secret(fake_pass: Path, monkeypatch: pytest.MonkeyPatch, content: str, msg: str) -> None:
    monkeypatch.setenv("FAKE_PASS_OUT", content.replace("\n", "\\n"))
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(pass_path="p"), env={})
    assert str(ei.value) == msg


def test_token_file(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(f"{TID}\n{SECRET}\n")
    t = load_token(cfg(token_file=str(f), pass_path="ignored"), env={})
    assert (t.token_id, t.secret) == (TID, SECRET)
    f2 = tmp_path / "secret-only"
    f2.write_text(f"{SECRET}\n")
    t2 = load_token(cfg(token_file=str(f2), token_id="ops@pve!ci"), env={})
    assert (t2.token_id, t2.secret) == ("ops@pve!ci", SECRET)


def test_token_file_errors(tmp_path: Path) -> None:
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(token_file=str(tmp_path / "missing")), env={})
    assert str(ei.value) == f"cannot read credentials.token_file {tmp_path / 'missing'}: No such file or directory"
    bad = tmp_path / "bad"
    bad.write_text(f"{TID}\nsecret with space\n")
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(token_file=str(bad)), env={})
    assert str(ei.value).startswith(f"malformed secret in token_file {bad}: it contains whitespace")
    assert "secret with space" not in str(ei.value)


def test_no_source() -> None:
    with pytest.raises(CredentialError, match="^no API token configured$"):
        load_token(cfg(), env={})


def test_prefetch_overlaps_and_is_collected_once(fake_pass: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    # A slow pass: prefetch returns at once, load_token waits for it.
    slow = tmp_path / "bin" / "pass"
    slow.write_text(slow.read_text().replace("#!/bin/sh\n", "#!/bin/sh\nsleep 0.3\n"))
    monkeypatch.setenv("FAKE_PASS_OUT", f"{TID}\\n{SECRET}\\n")
    import time
    c = cfg(pass_path="p")
    t0 = time.monotonic()
    prefetch(c, env={})
    prefetch(c, env={})
    assert time.monotonic() - t0 < 0.25
    assert load_token(c, env={}).secret == SECRET
    assert fake_pass.read_text() == "show p\n"


def test_prefetch_does_nothing_when_env_provides_token(fake_pass: Path) -> None:
    prefetch(cfg(pass_path="p"), env={"PVECTL_TOKEN_ID": TID, "PVECTL_TOKEN_SECRET": SECRET})
    assert not fake_pass.exists()


@pytest.mark.parametrize("secret", ["3f2b1c9e-8d7a-4b6c-9e5f-1a2b3c4d5e6\u20ac", "\u00e9t\u00e9-3f2b1c9e-8d7a",
                                    "3f2b1c9e\u200b8d7a", "\u0663\u0664\u0665\u0666-8d7a-4b6c"])
def test_a_secret_that_is_not_ascii_is_a_credential_error(tmp_path: Path, secret: str) -> None:
    f = tmp_path / "token"
    f.write_text(f"{TID}\n{secret}\n", encoding="utf-8")
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(token_file=str(f)), env={})
    assert str(ei.value) == (f"malformed secret in token_file {f}: it contains characters other than printable "
                             "ASCII (a Proxmox token secret is a UUID)")
    assert ei.value.exit_code == 2
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(), env={"PVECTL_TOKEN_ID": TID, "PVECTL_TOKEN_SECRET": secret})
    assert secret not in str(ei.value) and secret not in repr(ei.value)


def test_a_token_id_that_cannot_go_into_a_header_is_a_credential_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialError) as ei:
        load_token(cfg(), env={"PVECTL_TOKEN_ID": "\u7528\u6237@pam!t", "PVECTL_TOKEN_SECRET": SECRET})
    assert str(ei.value) == ("malformed token id in $PVECTL_TOKEN_ID: expected USER@REALM!TOKENNAME "
                             "(e.g. root@pam!pvectl); it has characters an HTTP header cannot carry")


def test_every_accepted_token_makes_an_encodable_header() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(tid=st.one_of(st.just(TID), st.builds("{}@pam!t".format, st.text(min_size=1, max_size=8)),
                         st.text(max_size=30)),
           secret=st.one_of(st.text(max_size=40), st.builds(SECRET.__add__, st.text(max_size=3))))
    def check(tid: str, secret: str) -> None:
        credentials.reset()
        try:
            tok = load_token(cfg(), env={"PVECTL_TOKEN_ID": tid or "x", "PVECTL_TOKEN_SECRET": secret or "x"})
        except CredentialError as e:
            assert secret.strip() not in str(e) or len(secret.strip()) < 4
            return
        tok.header().encode("latin-1")

    # every Token registers its secret for redaction process-wide: a generated "0000" would then be
    # cut out of every later error message, so the registry is put back afterwards
    saved = set(errors._SECRETS)
    try:
        check()
    finally:
        errors._SECRETS.clear()
        errors._SECRETS.update(saved)


def test_a_token_source_reads_once_and_a_failed_reload_keeps_the_token(tmp_path: Path) -> None:
    from pvectl.credentials import TokenSource

    f = tmp_path / "token"
    f.write_text(f"{TID}\n{SECRET}\n")
    source = TokenSource(cfg(token_file=str(f)), env={})
    assert source() == f"PVEAPIToken={TID}={SECRET}"
    rotated = "5c1f9e7d-8a2b-4c3d-9e0f-1a2b3c4d5e6f"
    f.write_text(f"{TID}\n{rotated}\n")
    assert source.token().secret == SECRET                 # read once: the file is not read again
    assert source.reload().secret == rotated
    f.unlink()
    with pytest.raises(CredentialError, match="cannot read credentials.token_file"):
        source.reload()
    assert source.token().secret == rotated                # the token read before stays
    assert SECRET not in repr(source) and rotated not in repr(source)


def test_closing_a_token_source_stops_a_pass_it_started(fake_pass: Path, tmp_path: Path) -> None:
    from pvectl.credentials import TokenSource

    slow = tmp_path / "bin" / "pass"
    slow.write_text(slow.read_text().replace("#!/bin/sh\n", "#!/bin/sh\nsleep 30\n"))
    source = TokenSource(cfg(pass_path="p"), env={})
    source.start()
    pending = source._pending
    assert pending is not None and not isinstance(pending, BaseException) and pending.poll() is None
    source.close()
    assert pending.poll() is not None                      # stopped and reaped, not left running
