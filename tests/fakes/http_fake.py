"""A small threaded HTTP server on a free 127.0.0.1 port, with faults you can inject.

Both protocol fakes (OpenAI, Pinecone) build on it. Real sockets, real HTTP/1.1, so the
official clients run unchanged against it. Faults are queued and consumed one per request,
in order, before the request is handled:

* ``Fault("status", status=429, retry_after=0.2)`` answers with that status (and a
  ``Retry-After`` header) without doing the work;
* ``Fault("slow", delay_s=2.0)`` waits, then does the work (a client with a shorter timeout
  gives up and retries: the work may then be done twice, as with a real server);
* ``Fault("drop")`` closes the connection without answering (after reading the request).

Every request is logged (monotonic arrival time, method, path, outcome), so tests measure
what the server saw: attempts, requests per minute, payload sizes.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Fault:
    kind: Literal["status", "slow", "drop"]
    status: int = 503
    retry_after: float | None = None
    delay_s: float = 0.0
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Logged:
    at: float
    method: str
    path: str
    outcome: str  # "ok", "fault:<kind>", or the error status
    size: int


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[["Request"], Reply]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class FakeHTTPServer:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager)."""

    def __init__(self) -> None:
        self.faults: deque[Fault] = deque()
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- to override ----------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        raise NotImplementedError

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        fake: FakeHTTPServer = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---- faults and measurements ------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    def requests_to(self, path: str) -> list[Logged]:
        with self._lock:
            return [e for e in self.log if e.path == path]

    def reset_log(self) -> None:
        with self._lock:
            self.log.clear()


def max_in_window(times: list[float], window_s: float) -> int:
    """The most arrivals inside any half-open window of ``window_s`` seconds."""
    ordered, best, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


class _Handler(BaseHTTPRequestHandler):
    owner: FakeHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        fault = self.owner.next_fault()
        if fault is not None and self._fault(fault, arrived, parts.path, len(raw)):
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = Request(
            self.command,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        reply = self.owner.route(request)
        outcome = "ok" if reply.status < 400 else str(reply.status)
        self.owner.record(Logged(arrived, self.command, parts.path, outcome, len(raw)))
        self._send(reply)

    def _fault(self, fault: Fault, arrived: float, path: str, size: int) -> bool:
        """Apply ``fault``; True if the request is finished (nothing else to do)."""
        self.owner.record(Logged(arrived, self.command, path, f"fault:{fault.kind}", size))
        if fault.kind == "slow":
            time.sleep(fault.delay_s)
            return False
        if fault.kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        body = fault.body or {"error": {"message": f"injected {fault.status}", "code": None}}
        self._send(Reply(fault.status, body, headers))
        return True

    def _send(self, reply: Reply) -> None:
        data = b"" if reply.body is None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (a timeout): nothing to do

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve
