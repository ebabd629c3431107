"""`pvectl mcp`: serve the MCP server (stdio, or streamable HTTP on loopback). See pvectl.mcp."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    Context = Any   # cli.main.Context: not imported, main.py imports this module (no import circle)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-writes", action="store_true",
                   help="also offer provision, set config, start, shutdown, reboot and resize")
    p.add_argument("--allow-destructive", action="store_true",
                   help="also offer stop, delete, migrate and drain (two-phase: preview, then the typed name); "
                        "implies --allow-writes")
    p.add_argument("--tools", metavar="LIST", help="comma-separated tool names: offer only these")
    p.add_argument("--http", metavar="127.0.0.1:PORT",
                   help="serve streamable HTTP on this loopback address behind a bearer token (default: stdio)")
    p.add_argument("--token-file", metavar="FILE",
                   help="bearer token for --http (last line of FILE; else $PVECTL_MCP_TOKEN; else generated)")
    p.add_argument("--list-tools", action="store_true", help="print the tools this command line would offer, and exit")


def serve(ctx: Context) -> int:
    import sys

    from ..errors import UsageError

    a = ctx.args
    if not a.http and not a.list_tools:
        # stdio: stdout carries the protocol's JSON-RPC lines only (the SDK's stdio client parses each
        # stdout line as a message and passes stderr through to its log). An error before the server
        # runs is the CLI's one stderr line (main.report_error), never the JSON error object on stdout.
        ctx.output = "table"
    import importlib.util

    if importlib.util.find_spec("mcp") is None:      # (not imported here: it loads while the handshake runs)
        raise UsageError("the MCP server needs the `mcp` package", hint="pip install 'pvectl[mcp]'") from None
    tier = "destructive" if a.allow_destructive else "write" if a.allow_writes else "read"
    tools = [t.strip() for t in a.tools.split(",") if t.strip()] if a.tools else None
    if a.token_file and not a.http:
        raise UsageError("--token-file is for --http", hint="add --http 127.0.0.1:PORT")
    if a.http:
        from ..mcp.http import parse_listen

        parse_listen(a.http)            # a bad address fails before the cluster is contacted
    if not a.http and not a.list_tools:
        return _serve_stdio(a, tier, tools)
    from ..mcp.server import Options, build

    try:
        built = build(Options(config=a.config, cluster=a.cluster, tier=tier, tools=tools))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if a.list_tools:
        for spec in built.tools:
            sys.stdout.write(f"{spec.name}\t{spec.tier}\t{spec.title}\n")
        built.runtime.close()
        return 0
    sys.stderr.write(f"pvectl mcp: {len(built.tools)} tools ({tier} tier)\n")
    try:
        from ..mcp.http import serve as serve_http

        serve_http(built.server, a.http, token_file=a.token_file)
    except KeyboardInterrupt:
        pass
    finally:
        built.runtime.close()
    return 0


def _serve_stdio(a: Any, tier: str, tools: list[str] | None) -> int:
    """stdio: the token's privileges are read here while the SDK loads in a worker thread, and the
    handshake is answered before it has (pvectl.mcp.stdio)."""
    import sys

    from .. import __version__
    from ..errors import UsageError
    from ..mcp import stdio
    from ..mcp.catalog import select
    from ..mcp.connect import open_cluster

    pve = open_cluster(a.config, a.cluster)
    permissions = pve.permissions()
    try:
        chosen, _ = select(tier, only=tools, permissions=permissions)
    except ValueError as exc:
        pve.close()
        raise UsageError(str(exc)) from None
    sys.stderr.write(f"pvectl mcp: {len(chosen)} tools ({tier} tier)\n")
    key = [__version__, stdio.sdk_stamp(), stdio.source_stamp(), tier, ",".join(sorted(t.name for t in chosen))]
    runtime: list[Any] = []

    def build_server() -> Any:
        from ..mcp.runtime import Runtime
        from ..mcp.server import Options, build

        rt = Runtime(a.config, cluster=a.cluster, connected=pve)
        runtime.append(rt)
        return build(Options(config=a.config, cluster=a.cluster, tier=tier, tools=tools,
                             permissions=permissions), rt).server

    try:
        stdio.serve(build_server, key)
    except KeyboardInterrupt:
        pass
    finally:
        for rt in runtime:
            rt.close()
        pve.close()
    return 0
