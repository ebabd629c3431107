"""The operations of a chaos run: what to do (chosen from a seeded random generator and the cluster's
current VMs) and how to run it, as a `pvectl` child process or through the library in a thread.

Every operation gets an API token of its own, handed to the CLI through PVECTL_TOKEN_ID/SECRET and
to the library through a token file of its own, so that the simulator's request log, the tasks'
UPIDs and the audit log name the operation that caused them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pvectl.sim.cluster import Cluster as SimCluster

from .history import OpRecord, VmState

PVECTL = str(Path(sys.executable).with_name("pvectl"))
TEMPLATES = ("9000", "9001")
KILL_GRACE = 5.0          # seconds past deadline + margin before a client is killed (already a violation)


@dataclass
class Env:
    """What every operation shares: the simulator, a work directory, the audit log, the running CLIs."""

    sim: SimCluster
    workdir: Path
    audit_path: Path
    margin: float
    name_pool: int = 12
    running: dict[int, tuple[subprocess.Popen[str], OpRecord]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    retry_candidates: list[OpRecord] = field(default_factory=list)

    def new_token(self, op_id: int) -> tuple[str, str]:
        tokenid = f"root@pam!op{op_id}"
        return tokenid, self.sim.add_token(tokenid)

    def vms(self) -> dict[int, VmState]:
        backend = self.sim.backend
        with backend.mu:
            return {v.vmid: VmState(v.vmid, v.config.get("name"), v.node, v.config.get("lock"), v.is_template,
                                    str(v.config.get("tags") or ""), v.status)
                    for v in backend.state.vms.values()}


@dataclass
class OpSpec:
    kind: str
    via: str
    argv: list[str]                         # CLI arguments after `pvectl --config C -o json`
    names: list[str] = field(default_factory=list)
    target_vmid: int | None = None
    deadline: float | None = None
    lib: Callable[[Any, Any, float], Any] | None = None   # (pvectl Cluster, Writer, deadline) -> result
    parallel: int = 1                       # clone-race: this many clients at once


# ------------------------------------------------------------------------------------------ choose
def choose(rng: random.Random, env: Env) -> OpSpec:
    vms = [v for v in env.vms().values() if not v.template and not v.lock]
    ours = [v for v in vms if v.name and v.name.startswith("cx-")]
    kinds = ["clone", "clone", "clone-lib", "clone-bulk", "clone-race", "clone-retry", "power", "power",
             "power-lib", "resize", "resize-lib", "set", "migrate", "migrate-lib", "delete", "delete",
             "delete-lib", "read"]
    kind = rng.choice(kinds)
    if not kind.startswith(("clone", "read")) and not vms:
        kind = "clone"
    if kind == "clone-retry":
        with env.lock:
            cands = list(env.retry_candidates)
        if not cands:
            kind = "clone"
        else:
            prev = rng.choice(cands)
            return OpSpec("clone-retry", "cli", list(prev.argv), list(prev.names), deadline=prev.deadline)
    deadline = rng.choice([1.0, 2.0, 5.0, 10.0])
    if kind.startswith("clone"):
        return _clone(rng, env, kind, deadline)
    pool = ours if ours and (kind.startswith("delete") or rng.random() < 0.7) else vms
    if kind.startswith("delete") and not ours:
        kind = "read"
    if kind == "read":
        return OpSpec("read", "cli", rng.choice([["vm", "list"], ["template", "list"], ["cluster", "status"],
                                                 ["vm", "status", str(rng.choice(vms).vmid) if vms else "100"]]),
                      deadline=deadline)
    vm = rng.choice(pool)
    ref = str(vm.vmid)
    if kind in ("power", "power-lib"):
        action = rng.choice(["start", "start", "shutdown", "stop", "reboot"])
        if kind == "power-lib":
            return OpSpec("power", "lib", ["vm", action, ref], target_vmid=vm.vmid, deadline=deadline,
                          lib=_lib_call("pvectl.lifecycle", "power", vm.vmid, action, yes=True))
        return OpSpec("power", "cli", ["vm", action, ref] + (["--yes"] if action == "stop" else []),
                      target_vmid=vm.vmid, deadline=deadline)
    if kind == "resize-lib":
        return OpSpec("resize", "lib", ["vm", "resize", ref, "--disk", "scsi0", "--size", "+1G"], target_vmid=vm.vmid,
                      deadline=deadline, lib=_lib_call("pvectl.lifecycle", "resize", vm.vmid, disk="scsi0", size="+1G"))
    if kind == "resize":
        extra = rng.choice([["--disk", "scsi0", "--size", "+1G"], ["--cores", str(rng.randint(1, 4))],
                            ["--memory", rng.choice(["1G", "2048"])]])
        return OpSpec("resize", "cli", ["vm", "resize", ref, *extra, "--yes"], target_vmid=vm.vmid,
                      deadline=deadline)
    if kind == "set":
        return OpSpec("set", "cli", ["vm", "set", ref, f"description=chaos {rng.randrange(10**6)}"],
                      target_vmid=vm.vmid, deadline=deadline)
    if kind in ("migrate", "migrate-lib"):
        target = rng.choice([n for n in env.sim.nodes if n != vm.node])
        if kind == "migrate-lib":
            return OpSpec("migrate", "lib", ["vm", "migrate", ref, target, "--with-local-disks"],
                          target_vmid=vm.vmid, deadline=max(deadline, 5.0),
                          lib=_lib_call("pvectl.migration", "migrate", vm.vmid, target, with_local_disks=True))
        return OpSpec("migrate", "cli", ["vm", "migrate", ref, target, "--with-local-disks"],
                      target_vmid=vm.vmid, deadline=max(deadline, 5.0))
    if kind == "delete-lib":
        return OpSpec("delete", "lib", ["vm", "delete", ref], target_vmid=vm.vmid, deadline=deadline,
                      lib=_lib_call("pvectl.lifecycle", "delete", vm.vmid, yes=True))
    return OpSpec("delete", "cli", ["vm", "delete", ref, "--yes"], target_vmid=vm.vmid, deadline=deadline)


def _clone(rng: random.Random, env: Env, kind: str, deadline: float) -> OpSpec:
    tpl = rng.choice(TEMPLATES)
    if kind == "clone-bulk":
        base = f"cx-b{rng.randrange(env.name_pool // 3 + 1)}"
        count = rng.randint(2, 3)
        return OpSpec("clone-bulk", "cli", ["vm", "clone", tpl, base, "--count", str(count)],
                      [f"{base}-{i}" for i in range(1, count + 1)], deadline=max(deadline, 5.0))
    name = f"cx-{rng.randrange(env.name_pool)}"
    extra = ["--start"] if rng.random() < 0.3 else []
    if kind == "clone-lib":
        return OpSpec("clone", "lib", ["vm", "clone", tpl, name, *extra], [name], deadline=deadline,
                      lib=_lib_clone(tpl, name, start=bool(extra)))
    if kind == "clone-race" and rng.random() < 0.3:      # the race between threads of one library user
        return OpSpec(kind, "lib", ["vm", "clone", tpl, name, *extra], [name], deadline=deadline,
                      lib=_lib_clone(tpl, name, start=bool(extra)), parallel=rng.randint(2, 3))
    return OpSpec(kind, "cli", ["vm", "clone", tpl, name, *extra], [name], deadline=deadline,
                  parallel=rng.randint(2, 3) if kind == "clone-race" else 1)


# ------------------------------------------------------------------------------------ library ops
def _lib_clone(tpl: str, name: str, *, start: bool) -> Callable[[Any, Any, float], Any]:
    def run(pve: Any, writer: Any, deadline: float) -> Any:
        from pvectl.provision import CloneSpec, provision

        return provision(pve.session, CloneSpec(int(tpl), name, start=start), deadline=deadline, writer=writer)
    return run


def _lib_call(module: str, func: str, *args: Any, **kwargs: Any) -> Callable[[Any, Any, float], Any]:
    """`module.func(pve, *args, writer=..., deadline=..., **kwargs)`, imported when it runs."""
    def run(pve: Any, writer: Any, deadline: float) -> Any:
        import importlib

        fn = getattr(importlib.import_module(module), func)
        return fn(pve, *args, writer=writer, deadline=deadline, **kwargs)
    return run


# ---------------------------------------------------------------------------------------- running
def run_cli(env: Env, op: OpRecord, secret: str) -> None:
    cmd = [PVECTL, "--config", str(env.sim.config_path), "-o", "json"]
    if op.deadline is not None:
        cmd += ["--timeout", str(op.deadline)]
    cmd += op.argv
    child_env = dict(os.environ, PVECTL_TOKEN_ID=op.token, PVECTL_TOKEN_SECRET=secret,
                     PVECTL_AUDIT_LOG=str(env.audit_path), XDG_CACHE_HOME=str(env.workdir / "cache"),
                     XDG_CONFIG_HOME=str(env.workdir / "config"))
    child_env.pop("PVECTL_CONFIG", None)
    op.started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=child_env)
    with env.lock:
        env.running[op.op_id] = (proc, op)
    try:
        limit = (op.deadline or 60.0) + env.margin + KILL_GRACE
        try:
            op.stdout, op.stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            op.killed = True
            op.stdout, op.stderr = proc.communicate()
    finally:
        with env.lock:
            env.running.pop(op.op_id, None)
    op.ended = time.monotonic()
    op.exit_code = None if op.killed else proc.returncode
    try:
        op.result = json.loads(op.stdout) if op.stdout.strip() else None
    except ValueError:
        op.result = None
    if isinstance(op.result, dict) and isinstance(op.result.get("error"), dict):
        op.error_type = str(op.result["error"].get("type") or "") or None
        op.result = None


def interrupt(env: Env, rng: random.Random) -> int | None:
    """SIGINT to one running CLI client (like Ctrl-C); returns its op id."""
    with env.lock:
        if not env.running:
            return None
        op_id = rng.choice(sorted(env.running))
        proc, op = env.running[op_id]
        op.interrupted = True
    try:
        proc.send_signal(signal.SIGINT)
    except ProcessLookupError:
        return None
    return op_id


def lib_config(env: Env, op: OpRecord, secret: str) -> Path:
    """A copy of the simulator's config whose token file holds this operation's token."""
    d = env.workdir / "lib" / f"op{op.op_id}"
    d.mkdir(parents=True, exist_ok=True)
    token_file = d / "token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{op.token}\n{secret}\n")
    doc = yaml.safe_load(env.sim.config_path.read_text())
    doc["credentials"]["token_file"] = str(token_file)
    path = d / "cluster-config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run_lib(env: Env, op: OpRecord, secret: str, fn: Callable[[Any, Any, float], Any]) -> None:
    """Run a library call in a thread of its own; a call far past its deadline is abandoned."""
    import pvectl
    from pvectl.errors import PvectlError
    from pvectl.writes import Writer

    config = lib_config(env, op, secret)
    done = threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            with pvectl.Cluster.from_config(str(config)) as pve:
                writer = Writer(pve.config, pve.transport, "chaos " + " ".join(op.argv))
                box["result"] = fn(pve, writer, op.deadline or 60.0)
        except PvectlError as e:
            box["error"] = e
        except BaseException:  # noqa: BLE001 - anything untyped is what the campaign looks for
            box["untyped"] = traceback.format_exc()
        finally:
            done.set()

    op.started = time.monotonic()
    threading.Thread(target=work, daemon=True, name=f"chaos-lib-{op.op_id}").start()
    if not done.wait((op.deadline or 60.0) + env.margin + KILL_GRACE):
        op.ended = time.monotonic()
        op.killed = True
        return
    op.ended = time.monotonic()
    if "untyped" in box:
        op.untyped = box["untyped"]
        op.exit_code = 1
    elif "error" in box:
        e = box["error"]
        op.exit_code = int(getattr(e, "exit_code", 1))
        op.error_type = type(e).__name__
        detail = e.to_dict() if hasattr(e, "to_dict") else {"message": str(e)}
        op.stdout = json.dumps(detail, default=str)
        op.stderr = str(e)
    else:
        res = box.get("result")
        op.result = res.to_dict() if hasattr(res, "to_dict") else res
        op.stdout = json.dumps(op.result, default=str)
        op.exit_code = 1 if isinstance(op.result, dict) and op.result.get("error") else 0
