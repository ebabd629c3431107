"""`pvectl demo`: a guided tour on an embedded simulated cluster.

It starts the simulator in this process (3 nodes on 127.0.0.1, free ports, its own CA and API token),
writes a temporary cluster-config.yaml, and runs real pvectl commands against it with a short
explanation before each. No network, no pass store, no flags; nothing is left running.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time

TYPE_CHECKING = False

if TYPE_CHECKING:
    from .context import Context

STEPS: list[tuple[str, list[str], int]] = [
    ("Is the cluster healthy? Quorum and every node's membership (GET /cluster/status).",
     ["cluster", "status"], 0),
    ("Every node's CPU, memory and uptime, from ONE cluster-wide call (offline nodes are listed, not fatal).",
     ["node", "list"], 0),
    ("All VMs across the cluster, with the seed's columns (vmid, name, status, node, cpus, memory as 4G).",
     ["vm", "list"], 0),
    ("Only the running ones (the seed's jq select(.status == \"running\")).",
     ["vm", "list", "--status", "running"], 0),
    ("Templates: by the template flag, the `template` tag and the template VMID range; each says how it "
     "was found.", ["template", "list"], 0),
    ("One VM's live status, by name (a name must be unique; otherwise pvectl lists the candidates).",
     ["vm", "status", "web-01"], 0),
    ("A full clone of a template with cloud-init (user, DHCP, SSH key), 2 cores, 2G, disk +8G, started, and "
     "its IP from the guest agent. The VMID comes from vmid_ranges.vms; the clone task's progress is "
     "followed from its log.",
     ["vm", "clone", "ubuntu-24.04-cloud", "demo-web", "--cores", "2", "--memory", "2G", "--ip", "dhcp",
      "--ssh-keys", "{keys}", "--disk-size", "+8G", "--start", "--wait-ip"], 0),
    ("Grow its disk again while it runs (disks only grow; a shrink is refused before any request).",
     ["vm", "resize", "demo-web", "--disk", "scsi0", "--size", "+2G"], 0),
    ("Try to delete it while it runs: the guard refuses (exit 3) and says what would make it allowed.",
     ["vm", "delete", "demo-web", "--yes"], 3),
    ("What a shutdown WOULD send, without sending it: --dry-run prints the seed's curl command, "
     "correctly encoded, with the secret read at run time.",
     ["--dry-run", "vm", "shutdown", "demo-web"], 0),
    ("Shut it down gracefully (the task is waited for; polling starts at 100 ms).",
     ["vm", "shutdown", "demo-web"], 0),
    ("Now delete it, with its disks (purge=1, destroy-unreferenced-disks=1, as the seed does).",
     ["vm", "delete", "demo-web", "--yes"], 0),
    ("Live-migrate web-01 to the node that passes every check with the most free memory after the move "
     "(`auto`); its local disk is mirrored while it runs, and the progress comes from the task log.",
     ["vm", "migrate", "web-01", "auto", "--with-local-disks"], 0),
    ("Plan emptying pve3 for maintenance: each running VM gets a target by the same checks and by free "
     "memory with a reserve; --dry-run stops at the plan (with --yes it runs max_workers migrations at once).",
     ["node", "drain", "pve3", "--with-local-disks", "--dry-run"], 0),
    ("Every change above is in the audit log: who, what, the UPID and the result.",
     ["audit", "--limit", "8"], 0),
]

DEMO_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICFb31qA2z019jB3mvUiJBkrulSKHbyVmqiKSZSUlNIp demo@pvectl\n"


def run(ctx: Context) -> int:
    from ..sim.cluster import Cluster

    fast = getattr(ctx.args, "fast", False) or not sys.stdout.isatty()
    say = _Printer(fast)
    with tempfile.TemporaryDirectory(prefix="pvectl-demo-") as tmp:
        keys = os.path.join(tmp, "id_ed25519.pub")
        with open(keys, "w", encoding="utf-8") as fh:
            fh.write(DEMO_KEY)
        os.environ.setdefault("PVECTL_AUDIT_LOG", os.path.join(tmp, "audit.jsonl"))
        say.title("pvectl demo: a simulated 3-node Proxmox VE 9 cluster on 127.0.0.1")
        with Cluster(nodes=3, vms=12, templates=2, bind="127.0.0.1", port=0, time_scale=0.02,
                     state_dir=os.path.join(tmp, "sim")) as sim:
            say.note(f"The simulator wrote {sim.config_path}: the same keys as the seed's cluster-config.yaml, "
                     "with its CA (TLS is verified) and an API token file.")
            from .main import main

            failures = 0
            for explanation, args, expected in STEPS:
                args = [a.replace("{keys}", keys) for a in args]
                say.step(explanation, "pvectl " + " ".join(shlex.quote(a) for a in args))
                code = main(["--config", str(sim.config_path), "-o", "table", *args])
                if code != expected:
                    failures += 1
                    say.note(f"(unexpected exit code {code}, expected {expected})")
                elif expected:
                    say.note(f"exit code {code}, as intended")
            say.title("Done. Try it yourself: pvectl sim serve (prints the config path), then pvectl --config "
                      "PATH vm list" if not failures else f"Done, with {failures} unexpected results.")
    return 0 if not failures else 1


class _Printer:
    def __init__(self, fast: bool) -> None:
        self.fast = fast
        self.n = 0

    def title(self, text: str) -> None:
        sys.stdout.write(f"\n== {text}\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        sys.stdout.write(f"   {text}\n")
        sys.stdout.flush()

    def step(self, explanation: str, command: str) -> None:
        self.n += 1
        sys.stdout.write(f"\n[{self.n}] {explanation}\n$ {command}\n")
        sys.stdout.flush()
        if not self.fast:
            time.sleep(0.6)
