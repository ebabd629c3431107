"""`pvectl doctor`: one verdict per line for everything a command depends on."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import Context

# What each command needs (qemu-server API2/Qemu.pm permission checks; pve-manager API2/Cluster.pm).
# {storage} and {bridge} are filled from `defaults`.
NEEDS: list[tuple[str, list[tuple[str, str]]]] = [
    ("cluster status", [("/", "Sys.Audit")]),
    ("node list / node status", [("/nodes", "Sys.Audit")]),
    ("vm list / vm status / template list", [("/vms", "VM.Audit")]),
    ("vm start|shutdown|stop|reboot", [("/vms", "VM.PowerMgmt")]),
    ("vm clone", [("/vms", "VM.Clone"), ("/vms", "VM.Allocate"), ("/storage/{storage}", "Datastore.AllocateSpace"),
                  ("/vms", "VM.Config.CPU"), ("/vms", "VM.Config.Memory"), ("/vms", "VM.Config.Network"),
                  ("/vms", "VM.Config.Cloudinit"), ("/vms", "VM.Config.Disk")]),
    ("vm set", [("/vms", "VM.Config.Options")]),
    ("vm resize", [("/vms", "VM.Config.Disk"), ("/vms", "VM.Config.CPU"), ("/vms", "VM.Config.Memory"),
                   ("/storage/{storage}", "Datastore.AllocateSpace")]),
    ("vm delete", [("/vms", "VM.Allocate")]),
    ("vm migrate", [("/vms", "VM.Migrate")]),
    ("guest agent (--wait-ip)", [("/vms", "VM.GuestAgent.Audit")]),
]


def effective(perms: dict[str, dict[str, int]], path: str) -> set[str]:
    """Privileges at `path`, from /access/permissions: an entry applies to its own path and,
    propagated, to every path below it (pve-access-control AccessControl.pm::permission)."""
    out: set[str] = set()
    for p, privs in perms.items():
        if p == "/" or path == p or path.startswith(p.rstrip("/") + "/"):
            out.update(privs)
    return out


def run(ctx: Context) -> int:
    lines: list[dict[str, Any]] = []
    failed = False
    unreachable = False

    def verdict(check: str, status: str, detail: str) -> None:
        nonlocal failed
        failed |= status == "FAIL"
        lines.append({"check": check, "status": status, "detail": detail})
        if ctx.output == "table":
            mark = {"ok": "ok  ", "warn": "warn", "FAIL": "FAIL"}[status]
            sys.stdout.write(f"[{mark}] {check}: {detail}\n")
            sys.stdout.flush()

    from ..errors import PvectlError

    try:
        cfg = ctx.config
    except PvectlError as exc:
        verdict("config", "FAIL", exc.message)
        return _finish(ctx, lines, 2)
    verdict("config", "ok", f"{cfg.path} ({len(cfg.nodes)} nodes: {', '.join(n.name for n in cfg.nodes)})")

    try:
        token = ctx.credentials.token()        # the same read the cluster below uses
        verdict("credentials", "ok", f"token {token.token_id} from {token.source}")
    except PvectlError as exc:
        verdict("credentials", "FAIL", exc.message)
        return _finish(ctx, lines, 2)

    tls = cfg.tls
    mode = tls.mode(cfg.nodes[0].name) if tls else "system"
    if mode == "insecure":
        verdict("tls", "warn", "tls.insecure is set: certificates are NOT verified (set tls.ca_file to "
                               "/etc/pve/pve-root-ca.pem copied from a node)")
    elif mode == "ca_file":
        verdict("tls", "ok", f"verified against {tls.ca_file}")
    elif mode == "pin":
        verdict("tls", "ok", "pinned SHA-256 fingerprints")
    else:
        verdict("tls", "warn", "verified against the system CA store; Proxmox nodes use their own CA "
                               "(set tls.ca_file)")

    from ..http import Transport

    header = token.header()
    reachable = []
    for node in cfg.nodes:
        t = Transport([node], tls=cfg.tls, auth=lambda: header, connect_timeout=3.0, read_timeout=10.0, retries=0)
        started = time.monotonic()
        try:
            version = t.get("/version")
            ms = (time.monotonic() - started) * 1000
            verdict(f"node {node.name}", "ok", f"{node.address} answers, Proxmox VE {version.get('version')} "
                                               f"({ms:.0f} ms)")
            reachable.append(node.name)
        except PvectlError as exc:
            verdict(f"node {node.name}", "FAIL", f"{node.address}: {exc.message}")
        finally:
            t.close()
    if not reachable:
        unreachable = True
        return _finish(ctx, lines, 5)

    cluster = ctx.cluster
    try:
        st = cluster.status()
        offline = [n.name for n in st.nodes if not n.online]
        if not st.quorate:
            verdict("quorum", "FAIL", "the cluster is NOT quorate: every write will fail "
                                      "(cluster not ready - no quorum?)")
        elif offline:
            verdict("quorum", "warn", f"quorate, but offline: {', '.join(offline)}")
        else:
            verdict("quorum", "ok", f"cluster {st.name or '(standalone)'} quorate, {len(st.nodes)} nodes online")
        unknown = sorted({n.name for n in st.nodes} - {n.name for n in cfg.nodes})
        if unknown:
            verdict("config nodes", "warn", f"cluster members not in the config (no failover to them): "
                                            f"{', '.join(unknown)}")
    except PvectlError as exc:
        verdict("quorum", "FAIL", exc.message)

    try:
        perms = cluster.permissions()
    except PvectlError as exc:
        verdict("privileges", "FAIL", f"cannot read /access/permissions: {exc.message}")
        return _finish(ctx, lines, 1)
    storage = cfg.defaults.storage if cfg.defaults and cfg.defaults.storage else "local-lvm"
    for command, needs in NEEDS:
        missing: list[str] = []
        partial: list[str] = []
        for path, priv in needs:
            path = path.format(storage=storage)
            if priv in effective(perms, path):
                continue
            below = sorted(p for p, privs in perms.items() if p.startswith(path.rstrip("/") + "/") and priv in privs)
            (partial if below else missing).append(f"{priv} on {path}" + (f" (only on {', '.join(below)})"
                                                                            if below else ""))
        if missing:
            verdict(f"can {command}", "FAIL", "missing " + "; ".join(missing))
        elif partial:
            verdict(f"can {command}", "warn", "only partly: " + "; ".join(partial))
        else:
            verdict(f"can {command}", "ok", "privileges present")
    return _finish(ctx, lines, 1 if failed else 0 if not unreachable else 5)


def _finish(ctx: Context, lines: list[dict[str, Any]], code: int) -> int:
    if ctx.output != "table":
        ctx.emit({"ok": code == 0, "checks": lines})
    else:
        sys.stdout.write("verdict: " + ("all checks passed\n" if code == 0 else "problems found (see FAIL lines)\n"))
    return code
