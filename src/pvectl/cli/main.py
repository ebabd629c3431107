"""`pvectl` command line: parse -> call the library -> render.

Start-up time matters (agents call this hundreds of times; DESIGN §3b): this module imports only
argparse, os and sys. Each command imports what it needs when it runs, and the API token's `pass`
decryption is started before the HTTP/TLS modules are imported so the two overlap.
"""

from __future__ import annotations

import os
import sys

# `_signal` is the built-in module behind `signal` (already loaded by the interpreter): the handler is in
# place at once, before the few milliseconds `signal` takes to build its enums
import _signal  # type: ignore[import-not-found]  # noqa: E402


def _interrupted_at_start_up(signum: int, frame: object) -> None:
    """Ctrl-C while the command is still being imported and parsed: one line and exit 130, never a
    traceback (main() hands Ctrl-C back to Python right before the command runs)."""
    os.write(2, b"pvectl: interrupted\n")
    os._exit(130)


if os.path.basename(sys.argv[0]) == "pvectl" or __name__ == "__main__":   # the command, not an import
    try:
        _signal.signal(_signal.SIGINT, _interrupted_at_start_up)
    except ValueError:      # not the main thread
        pass

import argparse  # noqa: E402

TYPE_CHECKING = False  # `typing` costs start-up time; annotations are strings (PEP 563)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

    from .context import Context

    Handler = Callable[[Context], int]

OUTPUTS = ("table", "json", "yaml")


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line and exit 2 (DESIGN §3)."""

    _help_width = 100

    def _get_formatter(self) -> argparse.HelpFormatter:
        # add_argument() builds a formatter only to check metavars; the terminal's width (shutil,
        # ~4 ms to import) is looked up only when help is actually printed
        return argparse.HelpFormatter(prog=self.prog, width=self._help_width)

    def format_help(self) -> str:
        import shutil

        self._help_width = max(shutil.get_terminal_size().columns - 2, 40)
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        # an argument may hold a line break or another control character: escaped, the error stays one line
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _seconds(text: str) -> float:
    """`--timeout`: a finite number of seconds above zero (`nan` would never expire, `-1` at once)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    """`--limit`, `--shutdown-timeout`: a whole number >= 0 in ASCII digits (`int()` would also take
    '١٠', ' 10' and '-5')."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a whole number (0, 1, 2 ...), got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    """`--cores`: a whole number >= 1 in ASCII digits."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, got {text!r}")
    return int(text)


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On the top parser the options get real defaults; on every subcommand they are repeated with
    # SUPPRESS so that `pvectl vm list -o json` works as well as `pvectl -o json vm list`.
    d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    g = parser.add_argument_group("global options")
    g.add_argument("--config", metavar="FILE", default=d(None), help="cluster-config.yaml to use")
    g.add_argument("--cluster", metavar="NAME", default=d(None), help="cluster to use from a `clusters:` file")
    g.add_argument("-o", "--output", choices=OUTPUTS, default=d(None),
                   help="output format (default: table on a terminal, json otherwise)")
    g.add_argument("--dry-run", action="store_true", default=d(False),
                   help="do every read and guard, print the writes as curl commands, change nothing")
    g.add_argument("--yes", action="store_true", default=d(False), help="confirm destructive operations")
    g.add_argument("--timeout", type=_seconds, metavar="S", default=d(None),
                   help="deadline in seconds for the whole operation")
    g.add_argument("--no-wait", action="store_true", default=d(False),
                   help="return the task UPID instead of waiting")
    g.add_argument("-v", "--verbose", action="store_true", default=d(False), help="log each API request to stderr")


def _cmd(module: str, func: str) -> Handler:
    def run(ctx: Context) -> int:
        import importlib

        handler: Handler = getattr(importlib.import_module(f"pvectl.cli.{module}"), func)
        return handler(ctx)
    return run


COMMANDS: dict[str, tuple[str, ...]] = {
    "cluster": ("status",), "node": ("list", "status", "drain"),
    "vm": ("list", "status", "clone", "start", "shutdown", "stop", "reboot", "delete", "resize", "set",
           "migrate"),
    "task": ("status", "wait", "log", "list", "diagnose", "stop"), "audit": (), "template": ("list",),
    "doctor": (), "demo": (),
    "sim": ("serve",), "mcp": (), "guide": (),
}
_VALUE_OPTIONS = frozenset({"--config", "--cluster", "-o", "--output", "--timeout"})


def command_words(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """The group and command words of a command line, skipping the global options and their values."""
    words: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--":
            break
        if arg.startswith("-"):
            skip = arg in _VALUE_OPTIONS
            continue
        words.append(arg)
        if len(words) == 2:
            break
    return (words[0] if words else None), (words[1] if len(words) > 1 else None)


def build_parser(only: tuple[str | None, str | None] = (None, None)) -> argparse.ArgumentParser:
    """The whole parser, or (start-up time) only the part for `only = (group, command)`: building
    every group and command costs ~10 ms that a single command does not need."""
    want_group, want_cmd = only if only[0] in COMMANDS else (None, None)
    if want_group is not None and want_cmd not in COMMANDS[want_group]:
        want_cmd = None      # a group's help, or a mistyped command: the whole group, for the message

    # With no group on the line (`pvectl --help`, a mistyped group) only the groups themselves are
    # listed: their commands are built when a group is named.
    shallow = want_group is None

    def wanted(group_name: str, cmd: str | None = None) -> bool:
        if shallow:
            return cmd is None
        if group_name != want_group:
            return False
        return cmd is None or want_cmd is None or cmd == want_cmd

    parser = _Parser(prog="pvectl", description="Operate Proxmox VE clusters safely: status, VMs, templates, "
                     "clones with cloud-init, power, delete, resize, tasks, migration.",
                     epilog="Exit codes: 0 ok, 1 operation failed, 2 usage/config error, 3 refused by a guard, "
                            "4 still running at the deadline, 5 no node reachable or authentication failed.")
    _global_options(parser, top=True)
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=_Parser)

    def sub(group: Any, name: str, help_: str, handler: Handler | None) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, help=help_, description=help_)
        _global_options(p, top=False)
        if handler is not None:
            p.set_defaults(handler=handler)
        return p

    def group(name: str, help_: str) -> Any:
        p = groups.add_parser(name, help=help_, description=help_)
        _global_options(p, top=False)
        p.set_defaults(handler=None, group_parser=p)
        return p.add_subparsers(dest="cmd", metavar="CMD", parser_class=_Parser)

    if wanted("cluster"):
        g = group("cluster", "cluster membership and quorum")
        if not shallow:
            sub(g, "status", "cluster name, quorum, and each node's online state", _cmd("reads", "cluster_status"))
    if wanted("node"):
        g = group("node", "nodes: resources and status")
        if not shallow:
            _node_group(g, sub)
    if wanted("vm"):
        _vm_group(group("vm", "virtual machines"), sub, lambda cmd: wanted("vm", cmd))
    if wanted("task"):
        g = group("task", "Proxmox tasks (UPIDs)")
        if not shallow:
            _task_group(g, sub)
    if wanted("audit"):
        p = sub(groups, "audit", "show the audit log of changes made with pvectl", _cmd("ops", "audit"))
        p.add_argument("--limit", type=_count, default=50)
    if wanted("template"):
        g = group("template", "VM templates")
        if not shallow:
            p = sub(g, "list", "templates, by flag, tag (tags.templates) or VMID range (vmid_ranges.templates)",
                    _cmd("reads", "template_list"))
            p.add_argument("--by", choices=("flag", "tag", "range"), help="only templates found by this rule")
    if wanted("doctor"):
        sub(groups, "doctor", "check config, credentials, TLS, nodes, quorum and the token's privileges",
            _cmd("doctor", "run"))
    if wanted("demo"):
        p = sub(groups, "demo", "a guided tour on an embedded simulated cluster (no network, no setup)",
                _cmd("demo", "run"))
        p.add_argument("--fast", action="store_true", help="no pauses between the steps")
    if wanted("sim"):
        g = group("sim", "the Proxmox VE simulator")
        if not shallow:
            p = sub(g, "serve", "run a simulated cluster on loopback (see: pvectl sim serve --help)",
                    _cmd("sim", "serve"))
            p.add_argument("sim_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    if wanted("mcp"):
        from .mcp import add_arguments as _mcp_arguments

        _mcp_arguments(sub(groups, "mcp", "serve the MCP server for AI agents (read-only unless --allow-writes)",
                           _cmd("mcp", "serve")))
    if wanted("guide"):
        sub(groups, "guide", "print what an agent needs to drive pvectl: safety model, exit codes, JSON errors, "
            "recipes", _cmd("guide", "run"))
    return parser


def _node_group(g: Any, sub: Any) -> None:
    sub(g, "list", "every node's cpu, memory and uptime (offline nodes included)", _cmd("reads", "node_list"))
    p = sub(g, "status", "one node's detailed status (all nodes without NODE)", _cmd("reads", "node_status"))
    p.add_argument("node", nargs="?", metavar="NODE")
    from .drain import add_arguments as _drain_arguments

    _drain_arguments(sub(g, "drain", "empty a node: a target per VM by the migration checks and free memory, "
                         "then parallel migrations (--dry-run: the plan only)", _cmd("drain", "run")))


def _vm_group(g: Any, sub: Any, wanted: Callable[[str], bool]) -> None:
    vm_group = g
    if wanted("list"):
        p = sub(g, "list", "QEMU VMs across the cluster (LXC containers are not listed)", _cmd("reads", "vm_list"))
        p.add_argument("--status", choices=("running", "stopped", "paused", "unknown"),
                       help="only VMs in this state (running, stopped, paused, unknown)")
        p.add_argument("--node", help="only VMs on this node")
        p.add_argument("--tag", help="only VMs with this tag")
        t = p.add_mutually_exclusive_group()
        t.add_argument("--templates", dest="templates", action="store_const", const=True, default=None,
                       help="only templates")
        t.add_argument("--no-templates", dest="templates", action="store_const", const=False, help="no templates")
    if wanted("status"):
        p = sub(g, "status", "a VM's live status", _cmd("reads", "vm_status"))
        p.add_argument("vm", metavar="VM", help="VMID or unique name")
    if wanted("clone"):
        p = sub(g, "clone", "make VMs from a template: clone, configure (cloud-init), grow, start, wait for IP",
                _cmd("clone", "clone"))
        from .clone import add_arguments as _clone_arguments

        _clone_arguments(p)

    for action, help_ in (("start", "start VMs (already running: nothing to do)"),
                          ("shutdown", "shut VMs down gracefully (ACPI or guest agent)"),
                          ("stop", "hard power-off (needs --yes; prefer shutdown)"),
                          ("reboot", "reboot running VMs (applies pending changes)")):
        if not wanted(action):
            continue
        p = sub(vm_group, action, help_, _cmd("ops", "power"))
        p.add_argument("vms", nargs="+", metavar="VM", help="VMIDs or unique names")
        if action == "shutdown":
            p.add_argument("--shutdown-timeout", dest="shutdown_timeout", type=_count, metavar="S",
                           help="seconds the guest gets to power off (Proxmox default 60); `--timeout S` "
                                "on shutdown means the same, and pvectl waits S plus a margin")
            p.add_argument("--force-stop", action="store_true", help="hard-stop the VM if it does not shut down in time")
    if wanted("delete"):
        p = sub(vm_group, "delete", "destroy a stopped VM and its disks, after the safety checks", _cmd("ops", "delete"))
        p.add_argument("vm", metavar="VM")
        p.add_argument("--allow-template", action="store_true", help="allow deleting a template")
        p.add_argument("--no-purge", dest="purge", action="store_false",
                       help="keep the VMID in backup, replication and HA configs (default: purge=1)")
        p.add_argument("--keep-unreferenced-disks", dest="destroy_unreferenced_disks", action="store_false",
                       help="keep disks named for this VMID that the config does not reference")
    if wanted("resize"):
        p = sub(vm_group, "resize", "more CPU, memory or disk (disks only grow)", _cmd("ops", "resize"))
        p.add_argument("vm", metavar="VM")
        p.add_argument("--cores", type=_positive)
        p.add_argument("--memory", help="MiB (4096) or with a unit (4G)")
        p.add_argument("--disk", help="disk to grow, e.g. scsi0")
        p.add_argument("--size", help="+10G to grow by 10 GiB, or 50G absolute")
        p.add_argument("--allow-running", action="store_true",
                       help="change CPU/memory of a running VM (hot-plugged or pending until restart)")
    if wanted("set"):
        p = sub(vm_group, "set", "set any config key (checked against the API schema, with the config digest)",
                _cmd("ops", "set_"))
        p.add_argument("vm", metavar="VM")
        p.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
        p.add_argument("--delete", action="append", metavar="KEY[,KEY]", help="remove keys from the config")
    if wanted("migrate"):
        p = sub(vm_group, "migrate", "move a VM to another node (live if running), after the pre-checks",
                _cmd("migrate", "run"))
        from .migrate import add_arguments as _migrate_arguments

        _migrate_arguments(p)


def _task_group(g: Any, sub: Any) -> None:
    p = sub(g, "status", "a task's status and exit status", _cmd("taskcmds", "status"))
    p.add_argument("upid", metavar="UPID")
    p = sub(g, "wait", "wait until a task stops (exit 0 on OK/WARNINGS, 1 on error, 4 at --timeout)",
            _cmd("taskcmds", "wait"))
    p.add_argument("upid", metavar="UPID")
    p = sub(g, "log", "a task's log", _cmd("taskcmds", "log"))
    p.add_argument("upid", metavar="UPID")
    p.add_argument("--limit", type=_count, default=0, help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true", help="print new lines until the task stops")
    p = sub(g, "list", "recent tasks per node", _cmd("taskcmds", "list_"))
    p.add_argument("--node")
    p.add_argument("--running", action="store_true", help="only running tasks")
    p.add_argument("--vm", help="only tasks of this VM")
    p.add_argument("--limit", type=_count, default=50)
    from .diagnose import add_arguments as _diagnose_arguments

    _diagnose_arguments(sub(g, "diagnose", "why a task or VM is stuck: API and ssh evidence, a verdict, the "
                            "next commands", _cmd("diagnose", "run")))
    sub(g, "stop", "stop a running task (needs --yes; Proxmox sends SIGTERM, then SIGKILL)",
        _cmd("diagnose", "stop")).add_argument("upid", metavar="UPID")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["sim", "serve"]:
        _python_handles_ctrl_c()
        # the simulator has its own option parser (prog "pvectl sim serve")
        from ..sim.serve import main as serve_main

        return serve_main(argv[2:])
    parser = build_parser(command_words(argv))
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        if not argv:
            parser.print_help()
            return 0
        # a group without its command (`pvectl vm`) is a usage error: one line, exit 2
        gp = getattr(args, "group_parser", None) or parser
        choices = next((a.choices for a in gp._actions if isinstance(a, argparse._SubParsersAction)), {})
        gp.error(f"missing command (choose from {', '.join(choices)})")
        return 2   # (error() exits)
    from .context import Context

    ctx = Context(args, argv)
    try:
        _python_handles_ctrl_c()
        return handler(ctx)
    except KeyboardInterrupt as exc:
        sys.stderr.write("pvectl: interrupted\n" + interrupted_task_lines(exc))
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - every error becomes one line and an exit code
        return report_error(ctx, exc)
    finally:
        ctx.close()


def interrupted_task_lines(exc: BaseException) -> str:
    """The task a Ctrl-C stopped waiting for (the library puts its UPID on the KeyboardInterrupt): it
    goes on on the node; how to follow it."""
    one = getattr(exc, "upid", None)
    upids = list(getattr(exc, "upids", None) or ([one] if one else []))
    return "".join(f"pvectl: the task keeps running on the node: {upid}\npvectl: resume with: pvectl task wait {upid}\n"
                   for upid in upids)


def _python_handles_ctrl_c() -> None:
    """From here on Ctrl-C is a KeyboardInterrupt: the command reports what it started (exit 130)."""
    if _signal.getsignal(_signal.SIGINT) is _interrupted_at_start_up:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)


def report_error(ctx: Context, exc: BaseException) -> int:
    from ..errors import PvectlError, redact

    if not isinstance(exc, PvectlError):
        if os.environ.get("PVECTL_DEBUG"):
            raise exc
        sys.stderr.write(f"pvectl: internal error: {type(exc).__name__}: {redact(str(exc))} "
                         "(set PVECTL_DEBUG=1 for a traceback)\n")
        return 1
    if ctx.output == "json":
        import json

        sys.stdout.write(json.dumps(exc.to_dict()) + "\n")
    else:
        line = f"pvectl: error: {exc.message}"
        if exc.hint:
            line += f" (hint: {exc.hint})"
        sys.stderr.write(line + "\n")
    return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
