"""Tornado handlers. Each gets the shared :class:`~server.app.ServerContext` via initialize().

/ws                WebSocket relay (token in ?token=, origin checked)
/                  the dashboard page (static files under /static/)
/healthz           200 while the process runs
/readyz            200 when Redis answers, else 503
/metrics           Prometheus text
/api/cache-stats   cache hit/miss counters per namespace (needs a token)
/api/search        hybrid search of an indexed repository (needs a token)
/api/related       the code related to a place in a file (needs a token)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson
import tornado.iostream
import tornado.web
import tornado.websocket
from prometheus_client import CONTENT_TYPE_LATEST

from config.errors import (
    CodeflowError,
    ConfigError,
    RedisUnavailable,
    RepositoryError,
    TokenError,
    TransportClosed,
)
from server.auth import Grant, verify_token
from server.session import Session
from tasks.redis_io import aio

if TYPE_CHECKING:
    from config import Settings
    from server.app import ServerContext

STATIC_DIR = Path(__file__).parent / "static"
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # the page URL carries a token
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class _SocketTransport:
    """The session's Transport: writes ready-made frames to the connection's socket.

    Tornado's ``write_message`` frames each message per connection and wraps every write in
    a new task; at 1,000 recipients per event that overhead is most of the fan-out. A
    broadcast instead frames an event once (server frames are unmasked and per-message
    compression is off, so the bytes are the same for everyone) and each connection sends
    them: straight to the socket when Tornado has nothing buffered for it (the common case),
    else through the IOStream, whose future resolves when the socket took them."""

    __slots__ = ("_handler",)

    def __init__(self, handler: tornado.websocket.WebSocketHandler) -> None:
        self._handler = handler

    def send(self, wire: bytes) -> asyncio.Future[None] | None:
        connection = self._handler.ws_connection
        stream = getattr(connection, "stream", None)
        if connection is None or stream is None or connection.is_closing():
            raise TransportClosed("connection closed")
        sent = 0
        if not getattr(stream, "_write_buffer", True):  # nothing queued: keep byte order
            try:
                sent = stream.socket.send(wire)
            except BlockingIOError:
                sent = 0
            except OSError:
                raise TransportClosed("connection closed") from None
            if sent == len(wire):
                return None
        try:
            return cast("asyncio.Future[None]", stream.write(wire[sent:] if sent else wire))
        except tornado.iostream.StreamClosedError:
            raise TransportClosed("connection closed") from None

    def close(self, code: int, reason: str) -> None:
        self._handler.close(code, reason)


class EventSocket(tornado.websocket.WebSocketHandler):
    """``/ws?token=...``: the realtime protocol of :mod:`server.protocol`."""

    context: ServerContext
    grant: Grant
    session: Session | None = None

    def initialize(self, context: ServerContext) -> None:
        self.context = context

    def prepare(self) -> None:
        """Refuse the upgrade (401) for a missing, forged or expired token."""
        if self.context.closing:
            self._refuse(503, "server shutting down")
            return
        try:
            self.grant = verify_token(self.context.secret, self.get_query_argument("token", None))
        except TokenError as exc:
            self._refuse(401, str(exc))

    def _refuse(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(message + "\n")

    def get_compression_options(self) -> dict[str, Any] | None:
        return None  # never compress: _SocketTransport writes pre-framed, uncompressed bytes

    def check_origin(self, origin: str) -> bool:
        return self.context.origins.allows(origin)

    def open(self, *args: str, **kwargs: str) -> None:
        ctx = self.context
        self.session = Session(_SocketTransport(self), self.grant, ctx.hub, ctx.metrics, ctx.limits)
        ctx.sessions.add(self.session)
        ctx.metrics.connections.inc()

    async def on_message(self, message: str | bytes) -> None:
        if self.session is not None:
            await self.session.handle(message)

    def on_close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.closed()
            self.context.forget(session)


class _PlainHandler(tornado.web.RequestHandler):
    context: ServerContext

    def initialize(self, context: ServerContext) -> None:
        self.context = context

    def write_json(self, status: int, payload: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(payload))


class HealthHandler(_PlainHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.finish("ok\n")


class ReadyHandler(_PlainHandler):
    async def get(self) -> None:
        try:
            await aio.ping(self.context.client, self.context.redis_timeout_s)
        except RedisUnavailable as exc:
            self.context.metrics.redis_outage()
            self.write_json(503, {"status": "unavailable", "redis": str(exc)})
            return
        self.write_json(200, {"status": "ready"})


class MetricsHandler(_PlainHandler):
    async def get(self) -> None:
        try:
            stats = await aio.read_cache_stats(
                self.context.client, self.context.redis_timeout_s * 4
            )
            self.context.metrics.update_cache(stats)
        except RedisUnavailable:  # the gauges keep their last values
            self.context.metrics.redis_outage()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(self.context.metrics.render())


class CacheStatsHandler(_PlainHandler):
    """``GET /api/cache-stats?token=...``: ``{"ts": ..., "namespaces": {ns: {...}}}``."""

    async def get(self) -> None:
        if not self.context.authorized(self.request):
            self.write_json(401, {"error": "a valid token is required"})
            return
        try:
            stats = await aio.read_cache_stats(
                self.context.client, self.context.redis_timeout_s * 4
            )
        except RedisUnavailable:
            self.context.metrics.redis_outage()
            self.write_json(503, {"error": "Redis unreachable"})
            return
        self.write_json(200, {"ts": time.time(), "namespaces": stats})


class HistoryHandler(_PlainHandler):
    """``GET /api/history?token=...``: the last day's runs and index runs (the rows of
    ``codeflow report``'s ``run_history`` and ``index_runs`` tables)."""

    async def get(self) -> None:
        ctx = self.context
        if not ctx.authorized(self.request):
            self.write_json(401, {"error": "a valid token is required"})
            return
        history = ctx.hub.history
        try:
            await history.load(ctx.client, ctx.hub.stream, ctx.redis_timeout_s * 20)
        except (RedisUnavailable, TimeoutError):
            ctx.metrics.redis_outage()
            self.write_json(503, {"error": "Redis unreachable"})
            return
        self.write_json(200, history.snapshot())


class SearchHandler(_PlainHandler):
    """``GET /api/search?q=QUERY&repo=PATH[&limit=K]`` (needs a token): ``{"query", "repo",
    "results"}``, where ``results`` is what ``codeflow search QUERY --repo PATH --json``
    prints. ``repo`` is the path of an indexed work tree on the server's machine. Searches
    run one at a time on a thread of their own, so the event loop never waits for them."""

    async def get(self) -> None:
        if not self.context.authorized(self.request):
            self.write_json(401, {"error": "a valid token is required"})
            return
        query, repo = self.get_query_argument("q", ""), self.get_query_argument("repo", "")
        limit = self.get_query_argument("limit", "10")
        if not repo or not limit.isdigit():
            self.write_json(400, {"error": "repo=PATH is required and limit must be a number"})
            return
        results = await self.run_search(_search, repo, query, int(limit))
        if results is not None:
            self.write_json(200, {"query": query, "repo": repo, "results": results})

    async def run_search(self, work: Any, *args: Any) -> list[dict[str, Any]] | None:
        """``work(settings, *args)`` on the search thread; a codeflow error is answered."""
        ctx, loop = self.context, asyncio.get_running_loop()
        try:
            found: list[dict[str, Any]] = await loop.run_in_executor(
                ctx.searches, work, ctx.settings, *args
            )
        except ConfigError as exc:
            self.write_json(400, {"error": str(exc)})
        except RepositoryError as exc:
            self.write_json(404, {"error": str(exc)})
        except CodeflowError as exc:
            self.write_json(503, {"error": str(exc)})
        else:
            return found
        return None


class RelatedHandler(SearchHandler):
    """``GET /api/related?repo=PATH&file=FILE&line=N[&limit=K]`` (needs a token):
    ``{"repo", "file", "line", "results"}``, where ``results`` is what ``codeflow related
    FILE:LINE --repo PATH --json`` prints (``file`` is repo-relative)."""

    async def get(self) -> None:
        if not self.context.authorized(self.request):
            self.write_json(401, {"error": "a valid token is required"})
            return
        repo, file = self.get_query_argument("repo", ""), self.get_query_argument("file", "")
        line, limit = self.get_query_argument("line", ""), self.get_query_argument("limit", "10")
        if not repo or not file or not line.isdigit() or not limit.isdigit():
            self.write_json(400, {"error": "repo, file and a numeric line are required"})
            return
        results = await self.run_search(_related, repo, file, int(line), int(limit))
        if results is not None:
            body = {"repo": repo, "file": file, "line": int(line), "results": results}
            self.write_json(200, body)


class DashboardHandler(_PlainHandler):
    def get(self) -> None:
        for name, value in _PAGE_HEADERS.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish((STATIC_DIR / "index.html").read_bytes())


def _search(settings: Settings, repo: str, query: str, limit: int) -> list[dict[str, Any]]:
    """Search on the server's services (LanceDB and the embedder load on first use)."""
    from tasks.search.repository_search import search_repository
    from tasks.services import services_for

    return search_repository(services_for(settings), repo, query, limit)


def _related(
    settings: Settings, repo: str, file: str, line: int, limit: int
) -> list[dict[str, Any]]:
    from tasks.search.related import related_code
    from tasks.services import services_for

    return related_code(services_for(settings), repo, file, line, limit)
