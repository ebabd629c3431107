"""Dry-run curl lines read the token the way pvectl does, and show no secret parameter.

Each printed line is run as it stands (bash, curl) against the in-process simulator: a token file
with CRLF line ends or trailing blank lines, which pvectl accepts, must work there too.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cliharness import Run

CANARY_PASSWORD = "cipw-Canary-8c1d5e"


def _stopped_vmid(sim: Any) -> int:
    return next(v.vmid for v in sorted(sim.backend.state.vms.values(), key=lambda v: v.vmid)
                if v.status == "stopped" and not v.is_template)


def _curl_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("curl ")]


def _run_line(line: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line + " --fail-with-body"], capture_output=True, text=True, timeout=60,
                          env=env if env is not None else dict(os.environ), stdin=subprocess.DEVNULL)


TOKEN_LAYOUTS = {
    "crlf": "{id}\r\n{secret}\r\n",
    "trailing-blank-lines": "{id}\n{secret}\n\n\n",
    "crlf-blank-lines-and-blanks": "\r\n  {id}  \r\n\r\n\t{secret} \r\n\r\n",
    "cr-only": "{id}\r{secret}\r",
    "no-final-newline": "{id}\n{secret}",
}


@pytest.mark.parametrize("layout", list(TOKEN_LAYOUTS), ids=list(TOKEN_LAYOUTS))
def test_the_dry_run_line_works_with_every_token_file_pvectl_accepts(
        cli: Callable[..., Run], fresh_sim: Any, variant_config: Callable[..., Path], tmp_path: Path,
        layout: str) -> None:
    token = tmp_path / "token"
    token.write_bytes(TOKEN_LAYOUTS[layout].format(id=fresh_sim.token_id, secret=fresh_sim.token_secret).encode())
    token.chmod(0o600)                       # a secret store: owner only
    cfg = variant_config(fresh_sim.config_path, "layout.yaml", lambda d: d["credentials"].update(token_file=str(token)))
    assert cli("--config", str(cfg), "-o", "json", "vm", "list").code == 0     # pvectl accepts the file
    vmid = _stopped_vmid(fresh_sim)
    r = cli("--config", str(cfg), "-o", "json", "--dry-run", "vm", "start", str(vmid))
    assert r.code == 0, r.err
    [line] = _curl_lines(r.out)
    assert fresh_sim.token_secret not in r.out + r.err
    done = _run_line(line)
    assert done.returncode == 0, (line, done.stdout, done.stderr)
    assert '"data":"UPID:' in done.stdout.replace(" ", ""), done.stdout


def test_the_dry_run_line_reads_a_pass_entry_like_pvectl(cli: Callable[..., Run], fresh_sim: Any,
                                                         variant_config: Callable[..., Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # a `pass` whose entry has CRLF line ends, a URL line and a trailing blank line
    bindir = tmp_path / "bin"
    bindir.mkdir()
    entry = tmp_path / "entry"
    entry.write_bytes(f"{fresh_sim.token_id}\r\nurl: https://pve\r\n{fresh_sim.token_secret}\r\n\r\n".encode())
    entry.chmod(0o600)
    fake = bindir / "pass"
    fake.write_text(f"#!/bin/sh\n[ \"$1 $2\" = 'show proxmox/api-token' ] || exit 1\ncat {entry}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    cfg = variant_config(fresh_sim.config_path, "pass.yaml",
                         lambda d: d.__setitem__("credentials", {"pass_path": "proxmox/api-token"}))
    vmid = _stopped_vmid(fresh_sim)
    r = cli("--config", str(cfg), "-o", "json", "--dry-run", "vm", "start", str(vmid))
    assert r.code == 0, r.err
    [line] = _curl_lines(r.out)
    done = _run_line(line)
    assert done.returncode == 0 and '"data":"UPID:' in done.stdout.replace(" ", ""), (line, done.stdout, done.stderr)


def test_dry_run_hides_cipassword_and_its_line_takes_it_from_the_environment(
        cli: Callable[..., Run], fresh_sim: Any) -> None:
    vmid = _stopped_vmid(fresh_sim)
    r = cli("--config", str(fresh_sim.config_path), "-o", "table", "--dry-run", "vm", "set", str(vmid),
            f"cipassword={CANARY_PASSWORD}", "ciuser=ops")
    assert r.code == 0, r.err
    assert CANARY_PASSWORD not in r.out + r.err
    assert f"# set cipassword=<hidden>, ciuser=ops on VM {vmid}" in r.out, r.out
    [line] = _curl_lines(r.out)
    assert '--data-urlencode "cipassword=${PVECTL_CIPASSWORD:?set PVECTL_CIPASSWORD to the cipassword}"' in line
    assert "cipassword" not in fresh_sim.backend.state.vms[vmid].config          # dry-run sent nothing

    # without the variable the line stops before curl sends anything
    env = {k: v for k, v in os.environ.items() if k != "PVECTL_CIPASSWORD"}
    done = _run_line(line, env)
    assert done.returncode != 0 and "PVECTL_CIPASSWORD" in done.stderr
    assert "cipassword" not in fresh_sim.backend.state.vms[vmid].config
    # with it, the line does what pvectl would have done
    done = _run_line(line, dict(env, PVECTL_CIPASSWORD="s3cret-from-env"))
    assert done.returncode == 0, (done.stdout, done.stderr)
    conf = fresh_sim.backend.state.vms[vmid].config
    assert "cipassword" in conf and conf.get("ciuser") == "ops"


def test_a_secret_parameter_never_shows_in_an_error(cli: Callable[..., Run], fresh_sim: Any) -> None:
    vmid = _stopped_vmid(fresh_sim)
    for output in ("json", "table"):
        # refused by the schema check before anything is sent (cores is wrong), and by Proxmox/the
        # simulator for an unknown VM: the password is in neither answer
        for argv in (["vm", "set", str(vmid), f"cipassword={CANARY_PASSWORD}", "cores=abc"],
                     ["vm", "set", "no-such-vm", f"cipassword={CANARY_PASSWORD}"]):
            r = cli("--config", str(fresh_sim.config_path), "-o", output, *argv)
            assert r.code in (1, 2), r
            assert CANARY_PASSWORD not in r.out + r.err, r
