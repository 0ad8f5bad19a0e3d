"""``codeflow serve``: run the realtime server until SIGTERM or Ctrl-C.

Like Jupyter, it prints a dashboard URL carrying a token that grants every room::

    codeflow realtime server: http://127.0.0.1:3001/?token=eyJhbGciOi...

On SIGTERM (or SIGINT) it stops accepting connections, flushes what each client is still
owed, sends close frames (1001 "going away"), waits briefly for the peers, and returns, so the
process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TextIO

import tornado.httpserver
import tornado.netutil

from config import Settings
from config.prefect_env import has_prefect_server
from server.app import RealtimeApp, make_app
from server.auth import issue_token, token_secret
from tasks.redis_io.connections import redis_url_for
from tasks.redis_io.formats import STREAM

log = logging.getLogger(__name__)

DASHBOARD_TOKEN_TTL_S = 7 * 86400
DRAIN_S = 5.0
START_WAIT_S = 10.0
BACKLOG = 2048  # a reconnect storm of thousands of clients must not overflow the accept queue


def serve(
    settings: Settings,
    *,
    port: int | None = None,
    host: str | None = None,
    stream: str = STREAM,
    out: TextIO | None = None,
) -> None:
    """Serve on ``host:port`` (default: settings' bind address and WEBSOCKET_PORT); blocks.

    ``port=0`` picks a free port; the printed URL shows the one chosen.
    """
    redis_url = redis_url_for(settings)
    asyncio.run(
        _serve(
            settings,
            redis_url=redis_url,
            port=settings.websocket_port if port is None else port,
            host=host or settings.bind_address,
            stream=stream,
            out=out or sys.stdout,
        )
    )


async def _serve(
    settings: Settings, *, redis_url: str, port: int, host: str, stream: str, out: TextIO
) -> None:
    realtime = await start_realtime(
        settings, redis_url=redis_url, port=port, host=host, stream=stream
    )
    print(f"codeflow realtime server: {realtime.dashboard_url()}", file=out, flush=True)
    await _stop_event().wait()
    await realtime.stop()


@dataclass
class Realtime:
    """A running realtime server: the app, its listening sockets and the state relay."""

    app: RealtimeApp
    server: tornado.httpserver.HTTPServer
    sockets: list[socket.socket]
    host: str
    relay: asyncio.Task[None] | None

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def base_url(self) -> str:
        """``http://HOST:PORT``; a wildcard bind address is shown as the loopback one."""
        shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)  # noqa: S104
        if ":" in shown and not shown.startswith("["):
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}"

    def dashboard_url(self) -> str:
        """The URL a person opens (Jupyter-style: it carries a token granting everything)."""
        token = issue_token(self.app.context.secret, ["*"], DASHBOARD_TOKEN_TTL_S)
        return f"{self.base_url()}/?token={token}"

    async def stop(self) -> None:
        log.info("shutting down: %d connections", len(self.app.context.sessions))
        self.server.stop()
        if self.relay is not None:
            self.relay.cancel()
        await self.app.shutdown(DRAIN_S)
        await self.server.close_all_connections()


async def start_realtime(
    settings: Settings,
    *,
    redis_url: str,
    port: int,
    host: str,
    stream: str = STREAM,
    extra_routes: Sequence[Any] = (),
    mounts: Mapping[str, Any] = MappingProxyType({}),
) -> Realtime:
    """Start the realtime app on ``host:port`` (0: a free port) inside the running loop."""
    app = make_app(
        settings, redis_url=redis_url, stream=stream, secret=token_secret(settings),
        extra_routes=extra_routes, mounts=mounts,
    )  # fmt: skip
    app.start()
    relay = _start_state_relay(app, settings, stream)
    await _until_following(app)
    sockets = tornado.netutil.bind_sockets(port, address=host, backlog=BACKLOG)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    return Realtime(app, server, sockets, host, relay)


def _start_state_relay(
    app: RealtimeApp, settings: Settings, stream: str
) -> asyncio.Task[None] | None:
    """With a Prefect server configured, relay its waiting runs (Scheduled, Late, Pending) to
    the stream: no flow hook can (:mod:`tasks.pipeline.prefect_states`)."""
    if not has_prefect_server():
        return None
    from tasks.pipeline.prefect_states import StateRelay

    relay = StateRelay(app.context.client, stream, maxlen=settings.events_maxlen)
    return asyncio.get_running_loop().create_task(relay.run())


async def _until_following(app: RealtimeApp) -> None:
    """Accept clients only once the hub knows where the stream ends: a client subscribing
    earlier could otherwise miss the first events. Without Redis, start anyway (and say so)."""
    try:
        await asyncio.wait_for(app.context.hub.ready.wait(), START_WAIT_S)
    except TimeoutError:
        log.warning("Redis unreachable at start; events flow once it is (see /readyz)")


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop
