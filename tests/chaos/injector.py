"""Faults at random, through the simulator's control methods, while the clients work.

Every fault ends by itself (a listener comes back, a slow or hung node recovers, a held lock is
released), so the cluster is healthy again shortly after the last one.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

from .history import VmState
from .ops import Env, interrupt

INJECTOR_TOKEN = "root@pam!chaos-injector"

FAULT_KINDS = ("listener-down", "node-slow", "node-hang", "drop-request", "drop-answer", "truncate-answer",
               "http-595", "http-596", "http-599", "http-500", "lock-hold", "task-fail", "digest-race", "sigint")
_59X_REASON = {595: "Connection refused", 596: "Connection timed out", 599: "Too many redirections"}
_TASK_TYPES = ("qmclone", "qmstart", "qmshutdown", "qmigrate", "resize", "qmdestroy", "qmstop")


class Injector:
    def __init__(self, env: Env, seed: int, *, mean_interval: float = 0.8) -> None:
        self.env = env
        self.rng = random.Random(f"faults:{seed}")
        self.mean_interval = mean_interval
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        self._thread = threading.Thread(target=self._loop, name="chaos-injector", daemon=True)
        self._secret = ""
        self._pve: Any = None

    def start(self) -> None:
        self._secret = self.env.sim.add_token(INJECTOR_TOKEN)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for t in self._timers:
            t.cancel()
        sim = self.env.sim
        sim.clear_faults()
        for node in sim.nodes:
            sim.start_listener(node)
        for vmid in list(getattr(sim.backend, "held", {})):
            sim.release_lock(vmid)
        if self._pve is not None:
            self._pve.close()

    def _later(self, seconds: float, fn: Any, *args: Any) -> None:
        t = threading.Timer(seconds, fn, args)
        t.daemon = True
        self._timers.append(t)
        t.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.rng.expovariate(1.0 / self.mean_interval)):
            kind = self.rng.choice(FAULT_KINDS)
            try:
                what = self.inject(kind)
            except Exception as e:  # noqa: BLE001 - a fault that cannot apply now (VM gone) is skipped
                what = f"skipped: {type(e).__name__}: {e}"
            if what is not None and not what.startswith("skipped"):
                self.counts[kind] += 1
            self.log.append((time.monotonic(), kind, what or "no target"))

    def inject(self, kind: str) -> str | None:
        sim, rng = self.env.sim, self.rng
        node = rng.choice(sorted(sim.nodes))
        if kind == "listener-down":
            sim.stop_listener(node)
            back = rng.uniform(0.5, 3.0)
            self._later(back, sim.start_listener, node)
            return f"{node} listener down for {back:.1f} s"
        if kind == "node-slow":
            sim.slow_node(node, rng.uniform(0.2, 1.5))
            self._later(rng.uniform(2.0, 5.0), sim.slow_node, node, 0)
            return f"{node} slow"
        if kind == "node-hang":
            seconds = rng.uniform(1.0, 4.0)
            sim.hang_node(node, seconds)
            return f"{node} hung for {seconds:.1f} s"
        method = rng.choice([None, "GET", "POST", "PUT", "DELETE"])
        if kind == "drop-request":
            sim.drop_next(1, method=method, node=rng.choice([None, node]))
            return f"drop next {method or 'request'}"
        if kind == "drop-answer":
            write = rng.choice(["POST", "PUT", "DELETE"])
            sim.faults.drop_answer_next(1, method=write)
            return f"drop the answer of the next {write}"
        if kind == "truncate-answer":
            # reads too: a GET whose answer is cut off is read again, a write never sent again
            cut = rng.choice(["GET", "POST", "PUT", "DELETE"])
            sim.faults.truncate_answer_next(1, method=cut)
            return f"cut off the answer of the next {cut}"
        if kind.startswith("http-"):
            status = int(kind[5:])
            message = _59X_REASON.get(status, "got timeout")
            sim.fail_next(1, status=status, message=message, method=method, node=rng.choice([None, node]))
            return f"next {method or 'request'} -> {status}"
        if kind == "lock-hold":
            vm = self._some_vm()
            if vm is None:
                return None
            sim.hold_lock(vm.vmid, seconds=rng.uniform(1.0, 3.0), kind=rng.choice(["backup", "snapshot"]))
            return f"lock held on VM {vm.vmid}"
        if kind == "task-fail":
            dtype = rng.choice(_TASK_TYPES)
            sim.fail_task(type=dtype, message="chaos: injected task failure")
            return f"next {dtype} task fails"
        if kind == "digest-race":
            vm = self._some_vm()
            if vm is None:
                return None
            # in a thread of its own: a hung node must not stop the other faults
            threading.Thread(target=self._digest_race, args=(vm,), daemon=True).start()
            return f"config of VM {vm.vmid} changed by another admin"
        if kind == "sigint":
            op_id = interrupt(self.env, rng)
            return None if op_id is None else f"SIGINT to op {op_id}"
        raise ValueError(f"unknown fault kind {kind}")

    def _some_vm(self) -> VmState | None:
        vms = [v for v in self.env.vms().values() if not v.template and not v.lock]
        return self.rng.choice(vms) if vms else None

    def _digest_race(self, vm: VmState) -> None:
        """Another admin changes a VM's config (its digest changes under a concurrent `vm set`)."""
        try:
            if self._pve is None:
                import pvectl

                from .history import OpRecord
                from .ops import lib_config

                rec = OpRecord(-1, "injector", "lib", INJECTOR_TOKEN, [])
                self._pve = pvectl.Cluster.from_config(str(lib_config(self.env, rec, self._secret)))
            self._pve.transport.request("PUT", f"/nodes/{vm.node}/qemu/{vm.vmid}/config",
                                        {"description": f"changed by another admin {self.rng.randrange(10**6)}"},
                                        node=vm.node)
        except Exception:  # noqa: BLE001 - the VM may be gone or locked: the race simply did not happen
            pass
