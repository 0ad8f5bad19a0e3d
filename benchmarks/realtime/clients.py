"""Benchmark client process: holds N WebSocket clients of one room and measures them.

Started by ``benchmarks/realtime/__main__.py``; talks to it with JSON lines (commands on stdin,
reports on stdout). Two protocols over the same minimal WebSocket client: ``codeflow`` (our
/ws protocol, replay with ``since``) and ``socketio`` (Engine.IO 4 framing, the peer; it has
no replay).

Commands: ``drop`` (close every client), ``reconnect`` (all at once, with ``since``),
``report PATH`` (compare what each client received with the event IDs listed in PATH),
``quit``. Every client records, per event, its ID and (receive time - event ``ts``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


class FrameProtocol(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455): upgrade, read unmasked frames, send masked text.

    Deliberately light (a few µs per message) so that on a 2-core machine the CPU goes to
    the server under test, not to the clients; both servers are measured with it."""

    def __init__(self, on_text: Callable[[bytes], None]) -> None:
        self.on_text = on_text
        self.buffer = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(head.split(b"\r\n")[0].decode()))
                return
            self.upgraded.set_result(None)
        self.parse()

    def parse(self) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            opcode, size, offset = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if size == 126:
                size, offset = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                size, offset = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < offset + size:
                return
            payload = bytes(buf[offset : offset + size])
            del buf[: offset + size]
            if opcode == 1:
                self.on_text(payload)
            elif opcode == 9:
                self.send(payload, opcode=0xA)
            elif opcode == 8 and self.transport is not None:
                self.transport.close()

    def send(self, payload: bytes, opcode: int = 1) -> None:
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = bytes((0x80 | opcode, 0x80 | size))
        else:
            header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(header + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)


class BenchClient:
    """One connection; subclasses speak a protocol."""

    def __init__(self, url: str, room: str) -> None:
        self.url = url
        self.room = room
        self.conn: FrameProtocol | None = None
        self.inbox: asyncio.Queue[bytes] | None = None
        self.ids: list[str] = []
        self.latencies: list[float] = []
        self.last_id: str | None = None
        self.ended = asyncio.Event()

    async def open(self, since: bool = False) -> None:
        parts = urlsplit(self.ws_url())
        loop = asyncio.get_running_loop()
        self.inbox = asyncio.Queue()
        assert parts.hostname is not None and parts.port is not None
        _, conn = await loop.create_connection(
            lambda: FrameProtocol(self.on_text), parts.hostname, parts.port
        )
        self.conn = conn
        key = base64.b64encode(os.urandom(16)).decode()
        path = f"{parts.path}?{parts.query}" if parts.query else parts.path
        assert conn.transport is not None
        conn.transport.write(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await asyncio.wait_for(conn.upgraded, 60)
        await asyncio.wait_for(self.handshake(since), 60)
        self.inbox = None

    def on_text(self, payload: bytes) -> None:
        if self.inbox is not None:
            self.inbox.put_nowait(payload)
        else:
            self.on_message(payload)

    def record(self, entry_id: str, event: dict[str, Any]) -> None:
        now = time.time()
        if event.get("end"):
            self.last_id = entry_id  # a reconnect replays from after the marker
            self.ended.set()
            return
        self.ids.append(entry_id)
        self.last_id = entry_id
        self.latencies.append(now - event["ts"])

    async def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
            await self.conn.closed

    def ws_url(self) -> str:
        raise NotImplementedError

    async def handshake(self, since: bool) -> None:
        raise NotImplementedError

    def on_message(self, payload: bytes) -> None:
        raise NotImplementedError


class CodeflowClient(BenchClient):
    def ws_url(self) -> str:
        return self.url

    async def handshake(self, since: bool) -> None:
        assert self.conn is not None and self.inbox is not None
        request: dict[str, Any] = {"type": "subscribe", "room": self.room}
        if since and self.last_id:
            request["since"] = self.last_id
        self.conn.send(orjson.dumps(request))
        reply = orjson.loads(await self.inbox.get())
        assert reply["type"] == "subscribed", reply

    def on_message(self, payload: bytes) -> None:
        frame = orjson.loads(payload)
        if frame["type"] == "event":
            self.record(frame["id"], frame["event"])


class SocketIOClient(BenchClient):
    """Engine.IO 4 / Socket.IO 5 over a plain WebSocket (no polling upgrade)."""

    def ws_url(self) -> str:
        return self.url.rstrip("/") + "/socket.io/?EIO=4&transport=websocket"

    async def handshake(self, since: bool) -> None:
        assert self.conn is not None and self.inbox is not None
        opened = await self.inbox.get()
        assert opened.startswith(b"0"), opened
        self.conn.send(b"40")
        joined = await self.inbox.get()
        assert joined.startswith(b"40"), joined
        self.conn.send(b"42" + orjson.dumps(["subscribe", self.room]))
        while True:
            reply = await self.inbox.get()
            if reply == b"2":
                self.conn.send(b"3")
            elif reply.startswith(b"42"):
                assert orjson.loads(reply[2:])[0] == "subscribed", reply
                return

    def on_message(self, payload: bytes) -> None:
        if payload == b"2":
            assert self.conn is not None
            self.conn.send(b"3")
        elif payload.startswith(b"42"):
            name, event = orjson.loads(payload[2:])
            if name == "event":
                self.record(str(event["n"]), event)


async def open_all(clients: list[BenchClient], since: bool, parallel: int) -> tuple[float, int]:
    """Open every client, at most ``parallel`` handshakes at a time; (seconds, failures)."""
    gate = asyncio.Semaphore(parallel)

    async def one(client: BenchClient) -> bool:
        async with gate:
            try:
                await client.open(since)
            except (OSError, ConnectionError, TimeoutError, AssertionError):
                return False
            return True

    start = time.perf_counter()
    results = await asyncio.gather(*(one(c) for c in clients))
    return time.perf_counter() - start, results.count(False)


async def main(args: argparse.Namespace) -> None:
    kind = CodeflowClient if args.kind == "codeflow" else SocketIOClient
    clients: list[BenchClient] = [kind(args.url, args.room) for _ in range(args.n)]
    elapsed, failed = await open_all(clients, False, args.parallel)
    emit({"ready": True, "connect_s": elapsed, "failed": failed})
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        command, _, argument = line.partition(" ")
        if command == "quit":
            break
        await run_command(command, argument, clients, args.parallel)
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def run_command(
    command: str, argument: str, clients: list[BenchClient], parallel: int
) -> None:
    if command == "drop":
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        for client in clients:
            client.ended.clear()
        emit({"dropped": True})
    elif command == "reconnect":
        elapsed, failed = await open_all(clients, True, parallel)
        emit({"reconnected": True, "connect_s": elapsed, "failed": failed})
    elif command == "wait_end":
        done, _ = await asyncio.wait(
            [asyncio.ensure_future(c.ended.wait()) for c in clients], timeout=float(argument or 60)
        )
        emit({"ended": len(done)})
    elif command == "report":
        with open(argument) as handle:
            expected = json.load(handle)
        emit(report(clients, expected))
        for client in clients:
            client.ids.clear()
            client.latencies.clear()


def report(clients: list[BenchClient], expected: list[str]) -> dict[str, Any]:
    wanted = set(expected)
    lost = dups = extra = 0
    for client in clients:
        got = [i for i in client.ids if i in wanted]
        extra += len(client.ids) - len(got)
        dups += len(got) - len(set(got))
        lost += len(wanted - set(got))
    latencies = [x for c in clients for x in c.latencies]
    return {
        "lost": lost,
        "dups": dups,
        "extra": extra,
        "latencies": latencies,
        "received": sum(len(c.ids) for c in clients),
    }


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["codeflow", "socketio"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--room", default="runs")
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
