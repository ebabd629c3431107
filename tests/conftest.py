"""Every test runs with its own audit log, state and cache directories: nothing a test does may
touch the real ~/.local/state/pvectl/audit.jsonl or ~/.cache/pvectl."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_state_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path_factory.mktemp("home-state")
    monkeypatch.setenv("PVECTL_AUDIT_LOG", str(Path(base) / "audit.jsonl"))
    monkeypatch.setenv("XDG_STATE_HOME", str(Path(base) / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path(base) / "cache"))


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Unclosed sockets, files and threads warn only when collected: collect after every test so a
    leak fails the test that made it (ResourceWarning is an error, see pyproject.toml)."""
    yield
    gc.collect()


@pytest.fixture(autouse=True, scope="session")
def _no_thread_left_running() -> Iterator[None]:
    """After the last test every simulator, listener and worker thread a test started has ended: one
    still running (say, a listener blocked in accept() on a socket closed under it) fails the run."""
    yield
    deadline = time.monotonic() + 10
    while (left := [t for t in threading.enumerate() if t is not threading.main_thread()]) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"threads still running after the tests: {[t.name for t in left]}"
