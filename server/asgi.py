"""Serve an ASGI application (the MCP SDK's streamable HTTP app) from a Tornado route, so one
port carries the HTTP API, the WebSocket, the dashboard and MCP.

The handler is an ``/api/`` handler: its caller's token and rate limit are checked first (401,
429), then the request goes to the ASGI app with the verified grant in :data:`current_grant`,
where the app's handlers (the MCP tools) read it. Responses are streamed: each body part the app
sends is flushed to the client as it comes (server-sent events included).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from server.auth import Grant
from server.handlers import ApiHandler

if TYPE_CHECKING:
    from server.app import ServerContext

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
AsgiApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
current_grant: contextvars.ContextVar[Grant | None] = contextvars.ContextVar(
    "codeflow_grant", default=None
)


class AsgiHandler(ApiHandler):
    """GET, POST and DELETE go to ``app`` once the caller's token and rate limit passed."""

    app: AsgiApp

    def initialize(self, context: ServerContext, app: AsgiApp) -> None:  # type: ignore[override]
        super().initialize(context)
        self.app = app

    async def get(self) -> None:
        await self._call()

    async def post(self) -> None:
        await self._call()

    async def delete(self) -> None:
        await self._call()

    async def _call(self) -> None:
        done = asyncio.Event()
        token = current_grant.set(self.grant)
        try:
            await self.app(self._scope(), self._receiver(done), self._send)
        finally:
            current_grant.reset(token)
            done.set()
        if not self._finished:
            self.finish()

    def _scope(self) -> Scope:
        request = self.request
        headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.get_all()]
        return {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method, "scheme": request.protocol, "path": request.path,
            "raw_path": request.path.encode(), "query_string": request.query.encode(),
            "root_path": "", "headers": headers, "client": (request.remote_ip or "", 0),
            "server": (request.host_name, 0),
        }  # fmt: skip

    def _receiver(self, done: asyncio.Event) -> Callable[[], Awaitable[Message]]:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.request.body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        return receive

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.set_status(int(message["status"]))
            self.clear_header("Content-Type")
            for name, value in message.get("headers", []):
                self.add_header(name.decode("latin-1"), value.decode("latin-1"))
        elif message["type"] == "http.response.body":
            self.write(bytes(message.get("body", b"")))
            if message.get("more_body"):
                await self.flush()
