"""Helpers every test folder uses (importable from any of them: tests/ is on the path through the
top-level conftest.py)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pvectl.sim.backend import Backend


@dataclass
class Run:
    """One pvectl run: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def load_json_stream(text: str) -> list[Any]:
    """jq's output: zero or more JSON values separated by whitespace."""
    dec = json.JSONDecoder()
    out: list[Any] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        value, i = dec.raw_decode(text, i)
        out.append(value)


def move_to_shared(backend: Backend, vmid: int, sid: str = "ceph-vm") -> None:
    """Put every volume of a VM on the shared storage (the generated cluster keeps disks on local-lvm)."""
    with backend.mu:
        vm = backend.state.vms[vmid]
        for key, value in list(vm.config.items()):
            volid, _, rest = str(value).partition(",")
            if not volid.startswith("local-lvm:"):
                continue
            vol = backend.state.volumes.pop(f"{vm.node}/{volid}")
            vol.volid = sid + volid[len("local-lvm"):]
            vol.node = None
            backend.state.volumes[vol.volid] = vol
            vm.config[key] = f"{vol.volid},{rest}" if rest else vol.volid


def timed(fn: Any) -> tuple[float, Any]:
    """(seconds `fn()` took, what it returned or the exception it raised)."""
    import time

    t0 = time.monotonic()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - returned for the caller's assertions
        out = e
    return time.monotonic() - t0, out


def delay_requests(sim: Any, monkeypatch: Any, method: str, path_end: str, seconds: float, *,
                   after: bool = True) -> None:
    """Make the in-process simulator hold `method` requests whose path ends with `path_end` for
    `seconds`: `after` the request is carried out (its answer is slow on the way back), or before (a
    node that accepted the request but has not got to it)."""
    handle = sim.server._handle

    def delayed(node: str, request: Any) -> Any:
        hit = request.method == method and request.path.endswith(path_end)
        if hit and not after:
            time.sleep(seconds)
        result = handle(node, request)
        if hit and after:
            time.sleep(seconds)
        return result

    monkeypatch.setattr(sim.server, "_handle", delayed)
