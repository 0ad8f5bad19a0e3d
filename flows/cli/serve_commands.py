"""``codeflow serve`` (the realtime server and dashboard) and ``codeflow token``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from config.errors import ConfigError

if TYPE_CHECKING:
    from config import Settings

_MAX_TTL_S = 365 * 86400


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="realtime WebSocket server and live dashboard")
    serve.add_argument("--port", type=int, help="port (default WEBSOCKET_PORT, 3001)")
    serve.add_argument("--host", help="address to bind (default CODEFLOW_BIND_ADDRESS, 127.0.0.1)")
    serve.set_defaults(handler=run_serve)
    token = commands.add_parser("token", help="issue a signed token granting WebSocket rooms")
    token.add_argument(
        "--room",
        action="append",
        required=True,
        help="a room to grant: runs, run:<id>, repo:<id>, a prefix like run:*, or * (repeatable)",
    )
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.set_defaults(handler=run_token)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError("--port must be between 0 and 65535")
    import sys

    from flows.service.daemon import run

    port = settings.websocket_port if args.port is None else args.port
    return run(
        settings, port=port, host=args.host or settings.bind_address, idle_s=0, out=sys.stdout
    )


def run_token(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.ttl <= _MAX_TTL_S:
        raise ConfigError(f"--ttl must be between 1 and {_MAX_TTL_S} seconds")
    from server.auth import issue_token, token_secret

    print(issue_token(token_secret(settings), list(args.room), args.ttl))
    return 0
