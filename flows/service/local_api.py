"""The Unix-socket API the thin client speaks (see :mod:`flows.service.client` for the wire).

Only the socket's owner can connect (the socket is mode 0600 in a 0700 folder), so these
routes take no token: the file system is the access check.

/v1/hello      GET: pid, settings fingerprint, URLs, counters
/v1/OP         POST: run ``OP`` (index, search, related, status, sandbox); NDJSON reply
"""

from __future__ import annotations

import contextlib
import logging
from asyncio import Future
from typing import TYPE_CHECKING, Any

import orjson
import tornado.iostream
import tornado.web

from config.errors import CodeflowError

if TYPE_CHECKING:
    from flows.service.runner import Runner

log = logging.getLogger(__name__)


class _Handler(tornado.web.RequestHandler):
    runner: Runner

    def initialize(self, runner: Runner) -> None:
        self.runner = runner


class HelloHandler(_Handler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(self.runner.hello()))


class OperationHandler(_Handler):
    """Runs one operation; progress events are written as they come, then the result."""

    async def post(self, op: str) -> None:
        self.set_header("Content-Type", "application/x-ndjson")
        try:
            body = orjson.loads(self.request.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the request body must be a JSON object")
            result, status = await self.runner.run(op, body, self._event)
            final: dict[str, Any] = {"result": result, "exit": status}
        except (CodeflowError, ValueError) as exc:
            final = {"error": str(exc), "exit": 1}
        except Exception as exc:
            log.exception("%s failed", op)
            final = {"error": f"internal error in the codeflow service: {exc!r}", "exit": 1}
        self._line(final)
        self.finish()

    def _event(self, event: dict[str, Any]) -> None:
        self._line({"event": event})
        sent = self.flush()
        sent.add_done_callback(_ignore_closed)

    def _line(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(tornado.iostream.StreamClosedError):  # the client went away:
            self.write(orjson.dumps(message) + b"\n")  # the run goes on and is recorded


def routes(runner: Runner) -> list[Any]:
    deps = {"runner": runner}
    return [
        (r"/v1/hello", HelloHandler, deps),
        (r"/v1/([a-z_]+)", OperationHandler, deps),
    ]


def _ignore_closed(sent: Future[None]) -> None:
    """A progress line to a client that went away is dropped (the run goes on)."""
    if not sent.cancelled():
        sent.exception()  # retrieved, so asyncio does not log it as never retrieved
