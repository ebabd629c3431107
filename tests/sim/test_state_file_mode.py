"""The simulator's state.json holds the API token secret: it is created mode 0600 (like `token`), never
readable by others, not even for the moment between writing and renaming it into place."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from pvectl.sim.cluster import Cluster


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_state_json_is_created_0600_whatever_the_umask_and_a_stale_tmp(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Cluster(nodes=1, vms=1, templates=1, bind="127.0.0.1", port=0, state_dir=str(tmp_path), time_scale=0)
    sim.start()
    try:
        stale = tmp_path / "state.json.tmp"
        stale.write_text("left over")
        os.chmod(stale, 0o666)
        seen: list[tuple[str, int]] = []
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            seen.append((Path(src).name, _mode(Path(src))))   # the mode while it is still the temporary file
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        old = os.umask(0)
        try:
            target = sim.save_state()
        finally:
            os.umask(old)
        assert _mode(target) == 0o600
        assert [m for name, m in seen if name.startswith("state.json")] == [0o600]
    finally:
        monkeypatch.undo()
        sim.stop()
    assert _mode(tmp_path / "state.json") == 0o600
