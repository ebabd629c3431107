"""`pvectl mcp --http 127.0.0.1:PORT`: streamable HTTP on a loopback address, behind a bearer token.

The token comes from `--token-file FILE` (its last non-blank line) or `$PVECTL_MCP_TOKEN`; else one is
generated and written to a new file (mode 0600) whose path is printed, as `pvectl sim serve` does with
its API token. It never appears on a command line. Every request without `Authorization: Bearer
<token>` is answered 401 before it reaches the MCP layer; the token is compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TextIO

from ..errors import ConfigError, UsageError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_ENV = "PVECTL_MCP_TOKEN"


def parse_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:PORT` -> (host, port); only 127.0.0.0/8 is accepted."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--http {text!r}: expected 127.0.0.1:PORT", hint="e.g. --http 127.0.0.1:8765")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"--http {text!r}: {host!r} is not an IP address", hint="use 127.0.0.1") from None
    if not (address.version == 4 and address in ipaddress.ip_network("127.0.0.0/8")):
        raise UsageError(f"--http {text!r}: only loopback addresses (127.0.0.0/8) may be bound",
                         hint="use 127.0.0.1; put a reverse proxy in front for remote access")
    return host, int(port_text)


def load_token(token_file: str | None) -> tuple[str, str | None]:
    """(token, the file it was written to when generated, else None)."""
    if token_file:
        try:
            with open(os.path.expanduser(token_file), encoding="utf-8") as f:
                lines = [line.strip() for line in f.read().splitlines() if line.strip()]
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {token_file}: {exc.strerror or exc}") from None
        if not lines:
            raise ConfigError(f"the token file {token_file} is empty")
        return lines[-1], None
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env, None
    token = secrets.token_urlsafe(32)
    fd, path = tempfile.mkstemp(prefix="pvectl-mcp-", suffix=".token")   # created 0600
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token, path


def bearer(app: App, token: str) -> App:
    """The ASGI app behind a bearer-token check."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b'Bearer realm="pvectl"')]})
                await send({"type": "http.response.body",
                            "body": b'{"error": {"type": "AuthError", "message": "missing or wrong bearer token"}}'})
                return
        await app(scope, receive, send)

    return guarded


def serve(server: Any, listen: str, *, token_file: str | None = None, out: TextIO = sys.stdout) -> None:
    """Run until interrupted. Prints one line: `ready http://HOST:PORT/mcp token-file PATH` (or `token
    from ...` when the token was given)."""
    import anyio
    import uvicorn

    host, port = parse_listen(listen)
    token, written = load_token(token_file)
    app = bearer(server.streamable_http_app(host=host), token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(uv.serve)
            while not uv.started:
                await anyio.sleep(0.02)
            bound = uv.servers[0].sockets[0].getsockname()[1] if uv.servers else port
            source = f"token-file {written}" if written else ("token from --token-file" if token_file
                                                               else f"token from ${TOKEN_ENV}")
            out.write(f"ready http://{host}:{bound}/mcp {source}\n")
            out.flush()

    anyio.run(run)
