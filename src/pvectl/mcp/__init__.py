"""`pvectl mcp`: an MCP server over the library, for AI agents.

    from pvectl.mcp.server import Options, build
    built = build(Options(config="cluster-config.yaml", tier="write"))
    built.server.run()                     # stdio

Needs the `mcp` extra (`pip install 'pvectl[mcp]'`). Modules: catalog (tools, tiers, annotations,
privileges), server (building it), runtime (clusters, threads, task waits), tools_read / tools_write /
tools_destructive (one library call per tool), confirm + plans (two-phase destructive actions),
output (size cap, errors), runbooks (resources, prompts), http (streamable HTTP behind a bearer token).
"""
