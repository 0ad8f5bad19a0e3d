"""Helpers for the realtime server's integration tests: a real server (in this process or
as a subprocess), real WebSocket clients and an async publisher on a real Redis stream.

Nothing here sleeps to synchronise: every wait is on a message, a future or a process, with
a timeout.
"""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
import tornado.httpserver
import tornado.netutil
import tornado.websocket

from config import Settings, load_settings
from server.app import RealtimeApp, make_app
from server.auth import issue_token
from server.session import Limits
from tasks.events.model import make_event
from tasks.redis_io.formats import stats_key, stream_fields

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"integration-test-secret-0123456789abcdef"
TIMEOUT_S = 10.0


def run(coroutine: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
    """Run one async scenario with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def make_settings(home: Path, **env: str) -> Settings:
    return load_settings({"CODEFLOW_HOME": str(home), **env})


@dataclass
class LiveServer:
    app: RealtimeApp
    port: int
    secret: bytes = SECRET

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, token: str | None) -> str:
        query = "" if token is None else f"?token={token}"
        return f"ws://127.0.0.1:{self.port}/ws{query}"

    def token(self, *rooms: str, ttl_s: int = 600) -> str:
        return issue_token(self.secret, list(rooms), ttl_s)


@asynccontextmanager
async def live_server(
    settings: Settings, redis_url: str, stream: str, limits: Limits | None = None
) -> AsyncIterator[LiveServer]:
    """make_app on a free loopback port inside the running loop; shut down on exit."""
    app = make_app(settings, redis_url=redis_url, stream=stream, limits=limits, secret=SECRET)
    sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    app.start()
    await asyncio.wait_for(app.context.hub.ready.wait(), TIMEOUT_S)
    try:
        yield LiveServer(app, sockets[0].getsockname()[1])
    finally:
        server.stop()
        await app.shutdown(drain_s=1.0)
        await server.close_all_connections()


@dataclass
class Client:
    """A Tornado WebSocket client speaking the JSON protocol."""

    conn: tornado.websocket.WebSocketClientConnection
    received: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Client:
        conn = await asyncio.wait_for(tornado.websocket.websocket_connect(url, **kwargs), TIMEOUT_S)
        return cls(conn)

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        data = orjson.dumps(message).decode() if isinstance(message, dict) else message
        await self.conn.write_message(data, binary=isinstance(data, bytes))

    async def recv(self, timeout: float = TIMEOUT_S) -> dict[str, Any] | None:
        """The next message, or None when the server closed the connection."""
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        if raw is None:
            return None
        message: dict[str, Any] = orjson.loads(raw)
        self.received.append(message)
        return message

    async def subscribe(self, room: str, since: str | None = None) -> None:
        request: dict[str, Any] = {"type": "subscribe", "room": room}
        if since is not None:
            request["since"] = since
        await self.send(request)
        reply = await self.recv()
        assert reply == {"type": "subscribed", "room": room}, reply

    async def events(self, count: int, timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
        """The next ``count`` event frames (anything else is a test failure)."""
        frames = []
        for _ in range(count):
            frame = await self.recv(timeout)
            assert frame is not None and frame["type"] == "event", frame
            frames.append(frame)
        return frames

    async def closed(self, timeout: float = TIMEOUT_S) -> tuple[int | None, str | None]:
        """Read until the server closes; returns (close code, reason)."""
        while await self.recv(timeout) is not None:
            pass
        return self.conn.close_code, self.conn.close_reason

    def close(self) -> None:
        self.conn.close()


class Publisher:
    """Publishes events the way tasks.events.bus.EventBus does, without blocking the loop."""

    def __init__(self, redis_url: str, stream: str) -> None:
        self.client = aioredis.Redis.from_url(redis_url)
        self.stream = stream

    async def publish(self, kind: str, **fields: Any) -> str:
        entry_id = await self.client.xadd(self.stream, stream_fields(make_event(kind, **fields)))
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def state(self, run: str, state: str, **fields: Any) -> str:
        return await self.publish(
            "flow_run.state", flow_run_id=run, flow_name="vectorize", state=state, **fields
        )

    async def task_state(self, run: str, task: str, state: str) -> str:
        return await self.publish(
            "task_run.state",
            flow_run_id=run,
            flow_name="vectorize",
            task_run_id=task,
            task_name=task,
            state=state,
        )

    async def progress(self, run: str, task: str, done: int, total: int = 100) -> str:
        return await self.publish(
            "progress",
            flow_run_id=run,
            flow_name="vectorize",
            task_run_id=task,
            task_name=task,
            done=done,
            total=total,
            unit="files",
        )

    async def close(self) -> None:
        await self.client.delete(self.stream)
        await self.client.aclose()


def seed_cache_stats(redis_url: str, namespace: str, **counts: int) -> None:
    """Give cache ``namespace`` these shared statistics (``hits``, ``misses``, ``sets``)."""
    client = redis.Redis.from_url(redis_url)
    for name, count in counts.items():
        client.hset(stats_key(namespace), name, count)
    client.close()


def unique_stream() -> str:
    return f"codeflow:test-events:{uuid.uuid4().hex[:12]}"


class ServerProcess:
    """``python -m server`` in a subprocess; its printed dashboard URL gives port and token."""

    _URL = re.compile(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)")

    def __init__(self, home: Path, redis_url: str, stream: str, port: int = 0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEFLOW_")}
        env.update(REDIS_URL=redis_url, CODEFLOW_HOME=str(home), CODEFLOW_LOG_LEVEL="WARNING")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "--port", str(port), "--stream", stream],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.port, self.token = self._read_url()

    def _read_url(self, timeout: float = 30.0) -> tuple[int, str]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(deadline - time.monotonic()):
                    line = self.process.stdout.readline().decode()
                    if not line:
                        break
                    match = self._URL.search(line)
                    if match:
                        return int(match.group(1)), match.group(2)
        self.process.kill()
        _, stderr = self.process.communicate(timeout=10)
        raise RuntimeError(f"server did not print its URL: {stderr.decode()[-2000:]}")

    def ws_url(self, token: str | None = None) -> str:
        return f"ws://127.0.0.1:{self.port}/ws?token={token or self.token}"

    def terminate(self, timeout: float = 20.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
