"""A distinctive token secret (the canary) must appear nowhere pvectl writes: not on stdout or stderr
of reads, dry-run writes, writes, refused and failing commands, in JSON or table mode, with or without
`-v`; not in the audit log; not in any file written under the test's home, cache, state or work dirs.
The only file allowed to hold it is the token file it is read from."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cliharness import Run

CANARY = "CANARY-5ecre7-c4n4ry-7f3e9b1d"
CANARY_ID = "root@pam!canary"
BAD_UPID = "UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmstart:424242:root@pam:"


@pytest.fixture
def canary_config(fresh_sim: Any, variant_config: Callable[..., Path], tmp_path: Path) -> Iterator[Path]:
    fresh_sim.add_token(CANARY_ID, CANARY)
    token = tmp_path / "canary-token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{CANARY_ID}\r\n{CANARY}\r\n\r\n")
    cfg = variant_config(fresh_sim.config_path, "canary.yaml", lambda d: d["credentials"].update(token_file=str(token)))
    past = time.time() - 60   # old enough to be cached: the cache is among the files checked
    os.utime(cfg, (past, past))
    yield cfg


def _vmids(sim: Any) -> tuple[int, int, int]:
    vms = sorted((v for v in sim.backend.state.vms.values() if not v.is_template), key=lambda v: v.vmid)
    running = next(v.vmid for v in vms if v.status == "running")
    stopped = [v.vmid for v in vms if v.status == "stopped"]
    return running, stopped[0], stopped[1]


def test_the_canary_secret_appears_nowhere(cli: Callable[..., Run], fresh_sim: Any, canary_config: Path,
                                           tmp_path: Path) -> None:
    running, stopped, spare = _vmids(fresh_sim)
    template = next(v.vmid for v in fresh_sim.backend.state.vms.values() if v.is_template)
    commands: list[tuple[list[str], set[int]]] = [
        # reads
        (["cluster", "status"], {0}), (["node", "list"], {0}), (["node", "status", "pve1"], {0}),
        (["vm", "list"], {0}), (["vm", "status", str(running)], {0}), (["template", "list"], {0}),
        (["task", "list", "--limit", "5"], {0}), (["-v", "vm", "status", str(stopped)], {0}),
        # dry-run writes
        (["--dry-run", "vm", "start", str(stopped)], {0}), (["--dry-run", "vm", "set", str(stopped), "cores=3"], {0}),
        (["--dry-run", "vm", "resize", str(stopped), "--disk", "scsi0", "--size", "+1G"], {0}),
        (["--dry-run", "vm", "delete", str(spare), "--yes"], {0}),
        (["--dry-run", "vm", "clone", str(template), "canary-dry", "--memory", "2GiB"], {0}),
        (["--dry-run", "vm", "set", str(stopped), "cipassword=not-the-canary"], {0}),
        # writes (audited)
        (["-v", "vm", "set", str(stopped), "description=canary run"], {0}),
        (["vm", "start", str(stopped)], {0}),
        # refused and failing commands
        (["vm", "stop", str(running)], {3}), (["vm", "delete", str(running), "--yes"], {3}),
        (["vm", "set", str(spare), "bogus=1"], {2}), (["vm", "status", "no-such-vm"], {1}),
        (["vm", "resize", str(spare), "--disk", "scsi0", "--size", "1K"], {3}),
        (["vm", "resize", str(spare), "--memory", "1e3G"], {2}),
        (["task", "wait", BAD_UPID, "--timeout", "2"], {1}), (["task", "status", "UPID:nope"], {2}),
        (["-v", "vm", "status", "424242"], {1}),
        (["--cluster", "other", "vm", "list"], {2}),
    ]
    seen = []
    for argv, codes in commands:
        for output in ("json", "table"):
            r = cli("--config", str(canary_config), "-o", output, *argv)
            assert r.code in codes, (argv, output, r)
            assert CANARY not in r.out and CANARY not in r.err, (argv, output)
            seen.append(r.out + r.err)
    audit_log = Path(os.environ["PVECTL_AUDIT_LOG"])
    audit_text = audit_log.read_text()
    assert CANARY_ID in audit_text and "description" in audit_text       # the canary token made the writes
    # every file written where pvectl writes (audit, state, cache, work dir, the test's tmp dir)
    roots = {audit_log.parent, Path(os.environ["XDG_STATE_HOME"]), Path(os.environ["XDG_CACHE_HOME"]),
             Path.cwd(), tmp_path}
    files = {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}
    files.discard(tmp_path / "canary-token")
    assert audit_log in files and any("config-" in p.name for p in files)   # the scan covers what was written
    leaks = [p for p in files if CANARY.encode() in p.read_bytes()]
    assert leaks == []
