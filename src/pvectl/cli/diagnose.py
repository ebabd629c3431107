"""`pvectl task diagnose UPID|VM` and `pvectl task stop UPID` (library: pvectl.diagnose).

Prints the verdict on one line, the evidence under it and the exact next commands; changes nothing
unless `--unlock --yes` and the verdict is a stale lock confirmed over ssh. Exit codes: 0 diagnosed
(whatever the verdict), 2 bad arguments, 3 `--unlock` refused (no --yes, or not a confirmed stale
lock), 5 no node reachable through the API.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .context import Context


def add_arguments(p: Any) -> None:
    p.add_argument("target", metavar="UPID|VM", help="a task's UPID, or a VMID or unique VM name")
    p.add_argument("--no-ssh", dest="use_ssh", action="store_false",
                   help="only what the API knows (no ssh to the node)")
    p.add_argument("--ssh-config", metavar="FILE",
                   help="ssh configuration file for `ssh -F` (default: $PVECTL_SSH_CONFIG, else ssh's own)")
    p.add_argument("--unlock", action="store_true",
                   help="clear a stale lock (`qm unlock VMID` on the node; needs --yes, and only when ssh "
                        "confirmed that no process holds it)")


def run(ctx: Context) -> int:
    from ..diagnose import diagnose, ssh_from_config

    a = ctx.args
    pve = ctx.session
    ssh = ssh_from_config(pve, config_file=a.ssh_config) if a.use_ssh else None
    d = diagnose(pve, a.target, ssh=ssh, use_ssh=a.use_ssh, unlock=a.unlock, yes=a.yes)
    if ctx.output != "table":
        ctx.emit(d.to_dict())
        return 0
    print(f"{d.verdict}: {d.summary}")
    for line in d.evidence:
        print(f"  {line}")
    if d.next_commands:
        print("next (not run):")
        for cmd in d.next_commands:
            print(f"  {cmd}")
    return 0


def stop(ctx: Context) -> int:
    """`task stop UPID --yes`: exit 0 stopped (or already stopped), 3 without --yes, 4 still running."""
    from ..diagnose import stop_task

    r = stop_task(ctx.session, ctx.args.upid, writer=ctx.writer(), yes=ctx.args.yes, deadline=ctx.deadline())
    if ctx.output == "table":
        if r["outcome"] != "planned":
            print(f"{r['upid']}: {r['outcome']} ({r.get('exitstatus')})")
    else:
        ctx.emit(r)
    return 0
