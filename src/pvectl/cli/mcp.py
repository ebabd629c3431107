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
    try:
        import mcp  # noqa: F401 - the optional dependency
    except ImportError:
        raise UsageError("the MCP server needs the `mcp` package", hint="pip install 'pvectl[mcp]'") from None
    from ..mcp.server import Options, build

    tier = "destructive" if a.allow_destructive else "write" if a.allow_writes else "read"
    tools = [t.strip() for t in a.tools.split(",") if t.strip()] if a.tools else None
    if a.token_file and not a.http:
        raise UsageError("--token-file is for --http", hint="add --http 127.0.0.1:PORT")
    if a.http:
        from ..mcp.http import parse_listen

        parse_listen(a.http)            # a bad address fails before the cluster is contacted
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
        if a.http:
            from ..mcp.http import serve as serve_http

            serve_http(built.server, a.http, token_file=a.token_file)
        else:
            built.server.run()
    except KeyboardInterrupt:
        pass
    finally:
        built.runtime.close()
    return 0
