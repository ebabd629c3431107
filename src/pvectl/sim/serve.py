"""`pvectl sim serve`: run a simulated Proxmox VE cluster until SIGINT/SIGTERM.

Prints exactly one line, `ready <absolute path to cluster-config.yaml>`, once every listener accepts
connections; bad input gives one line `pvectl sim serve: error: ...` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

PROG = "pvectl sim serve"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, no usage block: scripts read stderr
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Run a simulated Proxmox VE cluster on loopback (one HTTPS listener per node).",
    )
    p.add_argument("--nodes", type=int, default=3, help="number of nodes, pve1..pveN (default 3)")
    p.add_argument("--vms", type=int, default=12, help="number of VMs (default 12)")
    p.add_argument("--templates", type=int, default=2, help="number of templates (default 2)")
    p.add_argument("--containers", type=int, default=0, help="number of LXC containers, listed and read "
                   "only (default 0)")
    p.add_argument("--state-dir", metavar="DIR", help="keep CA, token, users, config and state.json here "
                   "(default: a temporary directory, removed on exit)")
    p.add_argument("--time-scale", type=float, default=0.05,
                   help="task durations relative to a real cluster (default 0.05; 0 = instant)")
    p.add_argument("--bind", metavar="ADDR", help="one loopback address for all nodes (default: node N "
                   "on 127.0.1.N)")
    p.add_argument("--port", type=int, help="port (default 8006; with --bind: first port, then +1 per "
                   "node; 0 = free ports)")
    p.add_argument("--seed", type=int, default=0, help="seed for the generated inventory (default 0)")
    p.add_argument("--proxy-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.vms < 0:
        parser.error("--vms must not be negative")
    if args.templates < 0:
        parser.error("--templates must not be negative")
    if args.containers < 0:
        parser.error("--containers must not be negative")
    if args.templates > 1000:
        parser.error("--templates: at most 1000 fit the template VMID range 9000-9999")
    if not args.time_scale >= 0:   # also rejects NaN
        parser.error("--time-scale must be 0 (instant) or positive")
    if args.port is not None and not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.proxy_timeout <= 0:
        parser.error("--proxy-timeout must be positive")

    from .cluster import Cluster, ensure_writable_dir
    from .server import PortInUseError, SimAddressError, check_loopback

    if args.bind is not None:
        try:
            check_loopback(args.bind)
        except SimAddressError as e:
            parser.error(str(e))
    if args.port is not None and args.bind is None and args.nodes > 254:
        parser.error("more than 254 nodes need --bind")
    if args.state_dir is not None:
        try:
            ensure_writable_dir(Path(args.state_dir).expanduser())
        except OSError as e:
            parser.error(f"state directory {args.state_dir}: {e.strerror or e}")

    cluster = Cluster(
        args.nodes, args.vms, args.templates, time_scale=args.time_scale, bind=args.bind, port=args.port,
        state_dir=args.state_dir, seed=args.seed, proxy_timeout=args.proxy_timeout, containers=args.containers,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        cluster.start()
    except (PortInUseError, SimAddressError) as e:
        parser.error(str(e))
    except OSError as e:
        parser.error(f"cannot start: {e.strerror or e}")

    try:
        sys.stdout.write(f"ready {cluster.config_path.resolve()}\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
