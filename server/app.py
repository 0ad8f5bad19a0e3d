"""Build the Tornado application: :func:`make_app` wires the hub, metrics and handlers.

>>> app = make_app(settings, redis_url="unix:///tmp/r.sock")   # doctest: +SKIP
>>> app.start(); app.listen(3001, address="127.0.0.1")         # doctest: +SKIP
>>> await app.shutdown()                                      # doctest: +SKIP

Routes are a list, so other endpoints join through ``extra_routes`` without touching this
module.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import tornado.web
from tornado.log import access_log

from config import Settings
from server.auth import token_secret
from server.handlers import (
    STATIC_DIR,
    CacheStatsHandler,
    DashboardHandler,
    EventSocket,
    HealthHandler,
    HistoryHandler,
    MetricsHandler,
    ReadyHandler,
    RelatedHandler,
    SearchHandler,
)
from server.hub import Hub
from server.metrics import ServerMetrics
from server.protocol import CloseCode
from server.ratelimit import KeyedRateLimiter
from server.session import Limits, Session
from tasks.redis_io import aio
from tasks.redis_io.formats import STREAM

MAX_FRAME_BYTES = 64 * 1024
PING_INTERVAL_S = 25.0
PING_TIMEOUT_S = 20.0  # Tornado wants it no longer than the interval
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&]*")


class AllowedOrigins:
    """Origins allowed to open a WebSocket besides the server's own (Tornado checks that one):
    ``CORS_ORIGIN``, comma-separated; ``*`` allows any."""

    def __init__(self, spec: str) -> None:
        items = {_normalise(part) for part in spec.split(",") if part.strip()}
        self.any = "*" in items
        self.origins = frozenset(items - {"*"})

    def allows(self, origin: str) -> bool:
        return self.any or _normalise(origin) in self.origins


def _normalise(origin: str) -> str:
    origin = origin.strip()
    if origin == "*":
        return origin
    parts = urlsplit(origin.lower())
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class ServerContext:
    """Everything handlers share; one per app, never a class attribute."""

    hub: Hub
    metrics: ServerMetrics
    secret: bytes
    origins: AllowedOrigins
    limits: Limits
    client: aio.Client
    reader: aio.Client
    redis_timeout_s: float
    settings: Settings
    api_limits: KeyedRateLimiter  # per token, every /api/ endpoint
    searches: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="search")
    )
    sessions: set[Session] = field(default_factory=set)
    closing: bool = False
    _emptied: asyncio.Event = field(default_factory=asyncio.Event)

    def forget(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.metrics.connections.dec()
        if not self.sessions:
            self._emptied.set()


class RealtimeApp(tornado.web.Application):
    """The Tornado application plus the lifecycle of its hub and connections."""

    def __init__(self, context: ServerContext, routes: list[Any], **settings: Any) -> None:
        super().__init__(routes, **settings)
        self.context = context

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        """Tornado's access log line with every ``token=`` value blanked: tokens are
        credentials, and refused requests (401, 429) are logged at WARNING."""
        status, request = handler.get_status(), handler.request
        log = access_log.info if status < 400 else access_log.warning
        if status >= 500:
            log = access_log.error
        uri = _TOKEN_IN_QUERY.sub(r"\1***", request.uri or "")
        elapsed_ms = 1000.0 * request.request_time()
        log("%d %s %s (%s) %.2fms", status, request.method, uri, request.remote_ip, elapsed_ms)

    def start(self) -> None:
        """Start following the event stream (call inside the running event loop)."""
        self.context.hub.start()

    async def shutdown(self, drain_s: float = 5.0) -> None:
        """Refuse new connections, flush waiting frames, send close frames, wait for peers."""
        ctx = self.context
        ctx.closing = True
        await ctx.hub.stop()
        sessions = list(ctx.sessions)
        if sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.drain() for s in sessions)), drain_s / 2)
            ctx._emptied.clear()
            for session in sessions:
                session.close(CloseCode.GOING_AWAY, "server shutting down")
            if ctx.sessions:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ctx._emptied.wait(), drain_s / 2)
        await ctx.client.aclose()
        await ctx.reader.aclose()
        ctx.searches.shutdown(wait=False, cancel_futures=True)


def make_app(
    settings: Settings,
    *,
    redis_url: str,
    stream: str = STREAM,
    limits: Limits | None = None,
    secret: bytes | None = None,
    extra_routes: Sequence[Any] = (),
    mounts: Mapping[str, Any] = MappingProxyType({}),
) -> RealtimeApp:
    """The realtime application for ``settings``, reading events from ``stream`` at
    ``redis_url``. ``secret`` defaults to :func:`server.auth.token_secret`."""
    timeout = max(settings.redis_timeout_s, 1.0)
    client = aio.pooled_client(redis_url, timeout)
    reader = aio.stream_reader(redis_url, timeout)
    metrics = ServerMetrics()
    context = ServerContext(
        hub=Hub(client, reader, stream, metrics),
        metrics=metrics,
        secret=secret if secret is not None else token_secret(settings),
        origins=AllowedOrigins(settings.cors_origin),
        limits=limits or Limits(),
        client=client,
        reader=reader,
        redis_timeout_s=settings.redis_timeout_s,
        settings=settings,
        api_limits=KeyedRateLimiter(settings.rate_limit_per_min, settings.rate_limit_burst),
    )
    return RealtimeApp(
        context,
        [*routes(context), *extra_routes, *asgi_routes(context, mounts)],
        websocket_max_message_size=MAX_FRAME_BYTES,
        websocket_ping_interval=PING_INTERVAL_S,
        websocket_ping_timeout=PING_TIMEOUT_S,
        static_path=str(STATIC_DIR),
    )


def asgi_routes(context: ServerContext, mounts: Mapping[str, Any]) -> list[Any]:
    """``/PATH/?`` for each ASGI app of ``mounts`` (e.g. ``{"/mcp": app}``): /api/ handlers."""
    from server.asgi import AsgiHandler

    return [
        (f"{path}/?", AsgiHandler, {"context": context, "app": app}) for path, app in mounts.items()
    ]


def routes(context: ServerContext) -> list[Any]:
    deps = {"context": context}
    return [
        (r"/", DashboardHandler, deps),
        (r"/ws", EventSocket, deps),
        (r"/healthz", HealthHandler, deps),
        (r"/readyz", ReadyHandler, deps),
        (r"/metrics", MetricsHandler, deps),
        (r"/api/cache-stats", CacheStatsHandler, deps),
        (r"/api/history", HistoryHandler, deps),
        (r"/api/search", SearchHandler, deps),
        (r"/api/related", RelatedHandler, deps),
    ]
