"""Every test runs with its own audit log, state and cache directories: nothing a test does may
touch the real ~/.local/state/pvectl/audit.jsonl or ~/.cache/pvectl.

Every API token secret the suite makes carries the session's canary marker (canary.py); a test
fails when the marker shows up in its captured output, logs, exception report or in output it
read from capsys or a child process, and the session fails when a file left in the temporary
directories holds it (other than an owner-only secret store).
"""

from __future__ import annotations

import gc
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import canary
import pytest

_leaks: list[str] = []          # where the marker was seen during the current test


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


@pytest.fixture(scope="session", autouse=True)
def _canary_secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The simulator's token secrets carry the marker; at the end, no file may hold it in the open."""
    import pvectl.sim.cluster as sim_cluster

    real_uuid = sim_cluster.uuid
    sim_cluster.uuid = canary.CanaryUuid  # type: ignore[assignment]
    # an in-process simulator's temporary state directory (config, token, state, audit logs of the
    # clients pointed at it) is removed when it stops: look into it first
    real_teardown = sim_cluster.Cluster._teardown
    in_sim_dirs: list[str] = []

    def teardown(self: Any, *, save: bool) -> None:
        if self._temporary and self._state_dir is not None:
            in_sim_dirs.extend(canary.leaky_files([self._state_dir]))
        real_teardown(self, save=save)

    sim_cluster.Cluster._teardown = teardown  # type: ignore[method-assign]
    try:
        yield
    finally:
        sim_cluster.uuid = real_uuid
        sim_cluster.Cluster._teardown = real_teardown  # type: ignore[method-assign]
    leaked = in_sim_dirs + canary.leaky_files([tmp_path_factory.getbasetemp()])
    if leaked:
        pytest.fail("the canary token secret was written to files that are not owner-only secret stores:\n  "
                    + "\n  ".join(leaked), pytrace=False)


def _watch(where: str, *texts: Any) -> None:
    if any(canary.contains(t) for t in texts):
        _leaks.append(where)


def _patch_output_readers() -> None:
    """Output a test reads itself (capsys, child processes) never reaches the report: check it here."""
    from _pytest.capture import CaptureFixture

    read = CaptureFixture.readouterr

    def readouterr(self: Any) -> Any:
        result = read(self)
        _watch("output read with capsys/capfd", result.out, result.err)
        return result

    communicate = subprocess.Popen.communicate

    def communicate_watched(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> Any:
        out, err = communicate(self, *args, **kwargs)
        if _runs_pvectl(self.args):   # `pass show` and `curl -v` print the secret: that is their job
            _watch(f"output of {self.args!r}"[:200], out, err)
        return out, err

    CaptureFixture.readouterr = readouterr  # type: ignore[method-assign]
    subprocess.Popen.communicate = communicate_watched  # type: ignore[method-assign]


def _runs_pvectl(args: Any) -> bool:
    """`pvectl ...`, `python -m pvectl[.sim] ...`."""
    words = str(args).split() if isinstance(args, (str, bytes)) else [str(w) for w in args]
    if words and Path(words[0]).name == "pvectl":
        return True
    return len(words) > 2 and words[1] == "-m" and words[2].split(".")[0] == "pvectl"


def pytest_configure(config: pytest.Config) -> None:
    _patch_output_readers()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    where = list(_leaks)
    _leaks.clear()
    # sections accumulate over setup/call/teardown: each phase checks its own
    where += [title for title, content in report.sections
              if title.endswith(" " + report.when) and canary.contains(content)]
    if report.longrepr is not None and canary.contains(report.longreprtext):
        where.append("the failure report (exception or assertion)")
    if where:
        report.outcome = "failed"
        report.longrepr = "the canary token secret leaked into: " + "; ".join(sorted(set(where)))
        report.sections = [(title, "<hidden: holds the canary secret>" if canary.contains(content) else content)
                           for title, content in report.sections]
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
