"""A simulated cluster with LXC containers: the API lists them, `pvectl vm list` does not (it lists
QEMU guests) and says so in its help."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest

from pvectl.cli.main import main
from pvectl.sim.cluster import Cluster as SimCluster
from pvectl.sim.routes import Api
from testkit import Run


@pytest.fixture
def lxc_sim() -> Iterator[SimCluster]:
    with SimCluster(nodes=3, vms=6, templates=2, containers=3, bind="127.0.0.1", port=0, time_scale=0.02) as s:
        yield s


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    capsys.readouterr()
    with pytest.raises(SystemExit) if "--help" in argv else contextlib.nullcontext() as ended:
        code = main(list(argv))
    if ended is not None:
        code = int(ended.value.code or 0)
    return Run(code, *capsys.readouterr())


def test_containers_are_seeded_listed_and_not_vms(lxc_sim: SimCluster, capsys: pytest.CaptureFixture[str]) -> None:
    state = lxc_sim.backend.state
    cts = sorted(state.containers)
    assert len(cts) == 3 and not set(cts) & set(state.vms)
    api = lxc_sim.server.api
    assert isinstance(api, Api)
    listed = {e["vmid"]: e for e in json.loads(api._resources.encode(state.tokens[lxc_sim.token_id], "vm"))["data"]}
    assert {v for v, e in listed.items() if e["type"] == "lxc"} == set(cts)
    run = _cli(capsys, "--config", str(lxc_sim.config_path), "-o", "json", "vm", "list")
    assert run.code == 0, run.err
    vmids = {vm["vmid"] for vm in run.json}
    assert vmids == {v for v, e in listed.items() if e["type"] == "qemu"}
    assert not vmids & set(cts)
    # a container's VMID does not name a VM either
    run = _cli(capsys, "--config", str(lxc_sim.config_path), "-o", "json", "vm", "status", str(cts[0]))
    assert run.code == 1 and run.json["error"]["type"] == "NotFound"


def test_vm_list_help_says_containers_are_not_listed(capsys: pytest.CaptureFixture[str]) -> None:
    run = _cli(capsys, "vm", "list", "--help")
    assert run.code == 0
    assert "QEMU" in run.out and "LXC containers are not listed" in run.out
