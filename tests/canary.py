"""The suite's canary secret: every API token secret the test suite makes (the simulator's own token,
tokens added through it, the e2e pass store's entry) starts with one random marker per session, so a
secret that leaks anywhere - captured output, a log, an audit line, a dry-run, an exception, a file
left in a test's temporary directory - is found by searching for that marker.

The secrets stay valid UUIDs (version 4), like the ones `pveum user token add` prints.
"""

from __future__ import annotations

import itertools
import os
import secrets
import stat
import sys
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

# 8-4-4 hex digits with the version nibble: 15 random hex digits nothing else will contain by chance
MARKER = f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-4{secrets.token_hex(2)[:3]}-"
_counter = itertools.count(1)
# a simulator the suite runs as a child process (`pvectl sim serve`) gets the session's marker through
# its environment (see `child_argv`), and numbers its secrets apart from the session's own
_INHERITED = os.environ.get("PVECTL_TEST_CANARY_MARKER")
if _INHERITED:
    MARKER = _INHERITED
    _counter = itertools.count(1 << 40)
_lock = threading.Lock()

# Files that are meant to hold a secret, readable by their owner only (mode 0600): token files,
# curl header files. Anything else holding the marker - or any log - is a leak.
_LOG_SUFFIXES = (".log", ".jsonl", ".txt", ".out", ".err")
_MAX_SCAN = 8 * 1024 * 1024


def new_secret() -> str:
    """A fresh token secret carrying the marker."""
    with _lock:
        n = next(_counter)
    return f"{MARKER}8{n >> 48 & 0xfff:03x}-{n & 0xffffffffffff:012x}"


def canary_token_file(path: Path, token_id: str = "root@pam!pvectl") -> str:
    """Write a token file (line 1 the id, line 2 a canary secret, mode 0600); returns the secret."""
    secret = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{token_id}\n{secret}\n")
    return secret


class CanaryUuid:
    """Stands in for the `uuid` module where the simulator generates token secrets."""

    UUID = uuid.UUID

    @staticmethod
    def uuid4() -> uuid.UUID:
        return uuid.UUID(new_secret())


def contains(text: str | bytes | None) -> bool:
    if not text:
        return False
    if isinstance(text, bytes):
        return MARKER.encode() in text
    return MARKER in text


def leaky_files(roots: Iterable[Path]) -> list[str]:
    """Files under `roots` that hold the marker and are not owner-only secret stores (or are logs)."""
    found: list[str] = []
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for name in files:
                path = Path(dirpath, name)
                try:
                    st = path.lstat()
                    if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_SCAN:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                if MARKER.encode() not in data:
                    continue
                owner_only = st.st_mode & 0o077 == 0
                if not owner_only or name.endswith(_LOG_SUFFIXES):
                    found.append(f"{path} (mode {st.st_mode & 0o777:04o})")
    return found


def child_sim_argv(*args: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment of `python -m pvectl.sim ARGS` whose token secrets carry the session's
    marker (the simulator is patched before it runs, as in the test process itself)."""
    code = ("import sys, canary, pvectl.sim.cluster as c; c.uuid = canary.CanaryUuid; "
            "from pvectl.sim.serve import main; raise SystemExit(main())")
    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ, PVECTL_TEST_CANARY_MARKER=MARKER,
               PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p))
    return [sys.executable, "-c", code, *args], env
