"""Tornado handlers. Each gets the shared :class:`~server.app.ServerContext` via initialize().

/ws                WebSocket relay (token in ?token=, origin checked)
/                  the dashboard page (static files under /static/)
/healthz           200 while the process runs
/readyz            200 when Redis answers, else 503
/metrics           Prometheus text
/api/cache-stats   cache hit/miss counters per namespace (any valid token)
/api/history       the last day's runs and index runs (any valid token)
/api/search        hybrid search of an indexed repository (a ``repo:<id>`` grant), named by
                   its path on this machine or by its repository ID (a shared store)
/api/related       the code related to a place in a file (a ``repo:<id>`` grant)

Every ``/api/`` request needs a valid token (else 401) within its rate limit (else 429 with
``Retry-After``; :mod:`server.ratelimit`). Search and related answer 403 to a token granting
no repository at all, and one 404 to every repository the token may not read, whatever the
reason (:mod:`server.access`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
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
    RepositoryHidden,
    TokenError,
    TransportClosed,
)
from server.access import granted_root, grants_any_repository
from server.auth import Grant, verify_token
from server.ratelimit import retry_after_s, token_key
from server.session import Session
from tasks.redis_io import aio

if TYPE_CHECKING:
    import tornado.httputil

    from config import Settings
    from server.app import ServerContext
    from tasks.services import Services

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


def request_token(request: tornado.httputil.HTTPServerRequest) -> str:
    """The token of an HTTP request: ``?token=``, else ``Authorization: Bearer``; or ``""``."""
    token = request.query_arguments.get("token", [b""])[0].decode(errors="replace")
    header = request.headers.get("Authorization", "")
    if not token and header.lower().startswith("bearer "):
        token = header[7:].strip()
    return token


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


class ApiHandler(_PlainHandler):
    """Base of ``/api/``: prepare() answers 401 without a valid token, 429 past its rate
    limit and 403 when :meth:`refusal` says so, so no endpoint can forget any of them;
    ``grant`` is what the token allows."""

    grant: Grant

    def prepare(self) -> None:
        token = request_token(self.request)
        try:
            self.grant = verify_token(self.context.secret, token)
        except TokenError:
            self.write_json(401, {"error": "a valid token is required"})
            return
        wait = self.context.api_limits.check(token_key(token))
        if wait is not None:
            self._too_many(wait)
        elif (refusal := self.refusal()) is not None:
            self.write_json(403, {"error": refusal})

    def refusal(self) -> str | None:
        """Why ``grant`` cannot open this endpoint whatever is asked (403), or None."""
        return None

    def _too_many(self, wait_s: float) -> None:
        seconds = retry_after_s(wait_s)
        self.set_header("Retry-After", str(seconds))
        self.write_json(429, {"error": f"too many requests; retry in {seconds} s"})


class CacheStatsHandler(ApiHandler):
    """``GET /api/cache-stats?token=...``: ``{"ts": ..., "namespaces": {ns: {...}}}``."""

    async def get(self) -> None:
        try:
            stats = await aio.read_cache_stats(
                self.context.client, self.context.redis_timeout_s * 4
            )
        except RedisUnavailable:
            self.context.metrics.redis_outage()
            self.write_json(503, {"error": "Redis unreachable"})
            return
        self.write_json(200, {"ts": time.time(), "namespaces": stats})


class HistoryHandler(ApiHandler):
    """``GET /api/history?token=...``: the last day's runs and index runs (the rows of
    ``codeflow report``'s ``run_history`` and ``index_runs`` tables)."""

    async def get(self) -> None:
        ctx = self.context
        history = ctx.hub.history
        try:
            await history.load(ctx.client, ctx.hub.stream, ctx.redis_timeout_s * 20)
        except (RedisUnavailable, TimeoutError):
            ctx.metrics.redis_outage()
            self.write_json(503, {"error": "Redis unreachable"})
            return
        self.write_json(200, history.snapshot())


class SearchHandler(ApiHandler):
    """``GET /api/search?q=QUERY&repo=PATH|ID[&branch=B][&limit=K]`` (a ``repo:<id>``
    grant): ``{"query", "repo", "results"}``, where ``results`` is what ``codeflow search
    QUERY --repo PATH --json`` prints. ``repo`` is the path of an indexed work tree on the
    server's machine, or a repository ID (``codeflow status --json`` prints it) resolved
    through the manifests, for a server without a checkout; ``branch`` picks one of its
    indexed branches (needed only when several are). Searches run one at a time on a thread
    of their own, so the event loop never waits."""

    def refusal(self) -> str | None:
        """A token opening no repository at all is refused before any path is looked at."""
        if grants_any_repository(self.grant):
            return None
        return "this token grants no repository (codeflow token --room repo:<id>)"

    async def get(self) -> None:
        query, repo = self.get_query_argument("q", ""), self.get_query_argument("repo", "")
        limit = self.get_query_argument("limit", "10")
        if not repo or not limit.isdigit():
            self.write_json(400, {"error": "repo=PATH is required and limit must be a number"})
            return
        branch = self.get_query_argument("branch", "") or None
        work = functools.partial(_search, query=query, limit=int(limit), branch=branch)
        results = await self.run_search(repo, work)
        if results is not None:
            self.write_json(200, {"query": query, "repo": repo, "results": results})

    async def run_search(
        self, repo: str, work: Callable[[Services, str], list[dict[str, Any]]]
    ) -> list[dict[str, Any]] | None:
        """``work(services, root)`` on the search thread, if the grant may read ``repo``; a
        codeflow error is answered, every repository error with :class:`RepositoryHidden`'s
        one 404."""
        ctx, loop = self.context, asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(
                ctx.searches, _on_readable, ctx.settings, self.grant, repo, work
            )
        except ConfigError as exc:
            self.write_json(400, {"error": str(exc)})
        except RepositoryError:
            self.write_json(404, {"error": str(RepositoryHidden(repo))})
        except CodeflowError as exc:
            self.write_json(503, {"error": str(exc)})
        else:
            return found
        return None


class RelatedHandler(SearchHandler):
    """``GET /api/related?repo=PATH|ID&file=FILE&line=N[&branch=B][&limit=K]`` (a
    ``repo:<id>`` grant):
    ``{"repo", "file", "line", "results"}``, where ``results`` is what ``codeflow related
    FILE:LINE --repo PATH --json`` prints (``file`` is repo-relative)."""

    async def get(self) -> None:
        repo, file = self.get_query_argument("repo", ""), self.get_query_argument("file", "")
        line, limit = self.get_query_argument("line", ""), self.get_query_argument("limit", "10")
        if not repo or not file or not line.isdigit() or not limit.isdigit():
            self.write_json(400, {"error": "repo, file and a numeric line are required"})
            return
        branch = self.get_query_argument("branch", "") or None
        work = functools.partial(
            _related, file=file, line=int(line), limit=int(limit), branch=branch
        )
        results = await self.run_search(repo, work)
        if results is not None:
            body = {"repo": repo, "file": file, "line": int(line), "results": results}
            self.write_json(200, body)


class DashboardHandler(_PlainHandler):
    def get(self) -> None:
        for name, value in _PAGE_HEADERS.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish((STATIC_DIR / "index.html").read_bytes())


def _on_readable(
    settings: Settings,
    grant: Grant,
    repo: str,
    work: Callable[[Services, str], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """``work`` on the server's services and the root of ``repo``, if ``grant`` may read it
    (LanceDB and the embedder load on first use; a repository never indexed raises the
    work's :class:`RepositoryError`, which the caller answers as it answers the rest)."""
    from tasks.services import services_for

    root = granted_root(grant, repo)
    return work(services_for(settings), root)


def _search(
    svc: Services, root: str, *, query: str, limit: int, branch: str | None
) -> list[dict[str, Any]]:
    from tasks.search.repository_search import search_repository

    return search_repository(svc, root, query, limit, branch)


def _related(
    svc: Services, root: str, *, file: str, line: int, limit: int, branch: str | None
) -> list[dict[str, Any]]:
    from tasks.search.related import related_code

    return related_code(svc, root, file, line, limit, branch=branch)
