"""Helpers shared by the CLI tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from testkit import Run  # noqa: F401  (re-exported for the CLI tests)

from pvectl.sim.cluster import Cluster


def write_yaml(path: Path, doc: Any) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def variant_config(base: Path, dest: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the config at `base`, changed by `edit(doc)`, written to `dest`."""
    doc = yaml.safe_load(base.read_text(encoding="utf-8"))
    edit(doc)
    return write_yaml(dest, doc)


def token_config(sim: Cluster, dest_dir: Path, name: str, privs: dict[str, list[str]]) -> Path:
    """A config for the simulator that uses a new token `limited@pve!<name>` with exactly `privs`."""
    tokenid = f"limited@pve!{name}"
    secret = sim.add_token(tokenid, privs=privs)
    tf = dest_dir / f"token-{name}"
    fd = os.open(tf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{tokenid}\n{secret}\n")

    def edit(doc: dict[str, Any]) -> None:
        doc["credentials"]["token_file"] = str(tf)

    return variant_config(sim.config_path, dest_dir / f"config-{name}.yaml", edit)
