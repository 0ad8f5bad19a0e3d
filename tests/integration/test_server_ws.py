"""The WebSocket relay against a real Tornado server, real clients and a real Redis stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import tornado.httpclient

from server.session import Limits
from tests.integration.server_fixtures import (
    Client,
    LiveServer,
    Publisher,
    live_server,
    make_settings,
    run,
    unique_stream,
)


@pytest.fixture
def stream() -> Iterator[str]:
    yield unique_stream()


@asynccontextmanager
async def setup(
    tmp_path: Path,
    redis_url: str,
    stream: str,
    limits: Limits | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[LiveServer, Publisher]]:
    settings = make_settings(tmp_path, **(env or {}))
    publisher = Publisher(redis_url, stream)
    try:
        async with live_server(settings, redis_url, stream, limits) as server:
            yield server, publisher
    finally:
        await publisher.close()


def test_subscribe_receives_events_of_the_room(tmp_path: Path, redis_url: str, stream: str) -> None:
    async def scenario() -> None:
        async with setup(tmp_path, redis_url, stream) as (server, pub):
            client = await Client.connect(server.ws_url(server.token("runs", "run:*")))
            await client.subscribe("runs")
            await client.subscribe("run:r1")
            entry_id = await pub.state("r1", "Running")
            frames = await client.events(2)
            assert {f["room"] for f in frames} == {"runs", "run:r1"}
            for frame in frames:
                assert frame["id"] == entry_id
                assert frame["event"]["kind"] == "flow_run.state"
                assert frame["event"]["state"] == "Running"
                assert frame["event"]["flow_run_id"] == "r1"
            await client.send({"type": "ping"})
            assert await client.recv() == {"type": "pong"}
            client.close()

    run(scenario())


def test_rooms_are_isolated(tmp_path: Path, redis_url: str, stream: str) -> None:
    async def scenario() -> None:
        async with setup(tmp_path, redis_url, stream) as (server, pub):
            one = await Client.connect(server.ws_url(server.token("*")))
            two = await Client.connect(server.ws_url(server.token("*")))
            await one.subscribe("run:one")
            await two.subscribe("run:two")
            await pub.task_state("one", "t1", "Running")
            marker = await pub.task_state("two", "t1", "Running")
            # One reader dispatches in stream order: had `two` been sent run:one's event, it
            # would arrive before the marker.
            (frame,) = await two.events(1)
            assert frame["id"] == marker and frame["room"] == "run:two"
            (frame,) = await one.events(1)
            assert frame["room"] == "run:one"
            await two.send({"type": "unsubscribe", "room": "run:two"})
            await two.subscribe("run:one")
            after = await pub.task_state("one", "t1", "Completed")
            (frame,) = await two.events(1)
            assert frame["id"] == after and frame["room"] == "run:one"

    run(scenario())


def test_repo_room_gets_events_of_that_repository(
    tmp_path: Path, redis_url: str, stream: str
) -> None:
    async def scenario() -> None:
        async with setup(tmp_path, redis_url, stream) as (server, pub):
            client = await Client.connect(server.ws_url(server.token("repo:abc")))
            await client.subscribe("repo:abc")
            await pub.publish("cache.invalidated", repo_id="other", tags=["x"])
            entry_id = await pub.publish("index.summary", repo_id="abc", files_total=3)
            (frame,) = await client.events(1)
            assert frame["id"] == entry_id and frame["event"]["files_total"] == 3

    run(scenario())


def test_replay_since_is_in_order_exactly_once_across_live_handover(
    tmp_path: Path, redis_url: str, stream: str
) -> None:
    """Events before the subscription come from the stream, events during and after it
    live; the client sees every one once, in stream order, with publishing never pausing."""

    async def scenario() -> None:
        limits = Limits(events_per_s=10_000, burst=10_000, replay_page=7, replay_buffer=5)
        async with setup(tmp_path, redis_url, stream, limits) as (server, pub):
            first = await pub.task_state("r", "t0", "Running")
            before = [await pub.task_state("r", f"t{i}", "Completed") for i in range(1, 40)]
            client = await Client.connect(server.ws_url(server.token("run:r")))
            await client.send({"type": "subscribe", "room": "run:r", "since": first})
            during = [await pub.task_state("r", f"d{i}", "Completed") for i in range(60)]
            assert await client.recv() == {"type": "subscribed", "room": "run:r"}
            after = [await pub.task_state("r", f"a{i}", "Completed") for i in range(10)]
            expected = before + during + after
            frames = await client.events(len(expected))
            assert [f["id"] for f in frames] == expected
            marker = await pub.task_state("r", "end", "Completed")
            (last,) = await client.events(1)
            assert last["id"] == marker

    run(scenario())


def test_replay_of_an_empty_gap_goes_live(tmp_path: Path, redis_url: str, stream: str) -> None:
    async def scenario() -> None:
        async with setup(tmp_path, redis_url, stream) as (server, pub):
            newest = await pub.state("r", "Pending")
            client = await Client.connect(server.ws_url(server.token("runs")))
            await client.subscribe("runs", since=newest)
            entry_id = await pub.state("r", "Running")
            (frame,) = await client.events(1)
            assert frame["id"] == entry_id

    run(scenario())


def test_throttle_coalesces_progress_and_keeps_every_state_event(
    tmp_path: Path, redis_url: str, stream: str
) -> None:
    async def scenario() -> None:
        limits = Limits(events_per_s=5, burst=1)
        async with setup(tmp_path, redis_url, stream, limits) as (server, pub):
            client = await Client.connect(server.ws_url(server.token("run:*")))
            await client.subscribe("run:r")
            states = []
            for i in range(1, 101):
                await pub.progress("r", "embed", done=i)
                if i % 25 == 0:
                    states.append(await pub.task_state("r", f"t{i}", "Completed"))
            final = await pub.progress("r", "embed", done=100)
            marker = await pub.state("r", "Completed")
            frames: list[dict[str, object]] = []
            while not frames or frames[-1]["id"] != marker:
                frames += await client.events(1)
            kinds = [f["event"]["kind"] for f in frames]  # type: ignore[index]
            got_states = [f["id"] for f in frames if f["event"]["kind"] == "task_run.state"]  # type: ignore[index]
            assert got_states == states
            assert kinds.count("progress") < 30, "progress should have been coalesced"
            progress = [f for f in frames if f["event"]["kind"] == "progress"]  # type: ignore[index]
            assert progress[-1]["id"] == final
            assert progress[-1]["event"]["done"] == 100  # type: ignore[index]

    run(scenario())


def test_bad_input_gets_errors_and_the_connection_survives(
    tmp_path: Path, redis_url: str, stream: str
) -> None:
    async def scenario() -> None:
        async with setup(tmp_path, redis_url, stream) as (server, pub):
            client = await Client.connect(server.ws_url(server.token("runs")))
            other = await Client.connect(server.ws_url(server.token("runs")))
            await other.subscribe("runs")
            cases: list[tuple[str | bytes, str]] = [
                ("{not json", "bad_request"),
                ("[1, 2]", "bad_request"),
                ('{"type": "shout"}', "bad_request"),
                ('{"type": "subscribe", "room": "nope"}', "bad_request"),
                ('{"type": "subscribe", "room": "runs", "since": "yesterday"}', "bad_request"),
                ('{"type": "subscribe", "room": "run:secret"}', "forbidden"),
                ('{"type": "ping", "pad": "' + "x" * 5000 + '"}', "too_large"),
                (b"\x00\xff binary", "bad_request"),
            ]
            for raw, code in cases:
                await client.send(raw)
                reply = await client.recv()
                assert reply is not None and reply["type"] == "error", (raw, reply)
                assert reply["code"] == code, (raw, reply)
                assert reply["message"]
            await client.subscribe("runs")
            entry_id = await pub.state("r", "Running")
            assert (await client.events(1))[0]["id"] == entry_id
            assert (await other.events(1))[0]["id"] == entry_id

    run(scenario())


def test_oversize_frame_closes_only_that_connection(
    tmp_path: Path, redis_url: str, stream: str
) -> None:
    async def scenario() -> None:
        async with setup(tmp_path, redis_url, stream) as (server, pub):
            big = await Client.connect(server.ws_url(server.token("runs")))
            other = await Client.connect(server.ws_url(server.token("runs")))
            await other.subscribe("runs")
            await big.send("x" * (200 * 1024))
            code, _ = await big.closed()
            assert code == 1009
            entry_id = await pub.state("r", "Running")
            assert (await other.events(1))[0]["id"] == entry_id

    run(scenario())


def test_subscription_and_message_floods_are_capped(
    tmp_path: Path, redis_url: str, stream: str
) -> None:
    async def scenario() -> None:
        limits = Limits(max_rooms=5, messages_per_s=1000, message_burst=1000)
        async with setup(tmp_path, redis_url, stream, limits) as (server, _):
            client = await Client.connect(server.ws_url(server.token("run:*")))
            for i in range(5):
                await client.subscribe(f"run:{i}")
            await client.send({"type": "subscribe", "room": "run:99"})
            reply = await client.recv()
            assert reply is not None and reply["code"] == "too_many_rooms"

        limits = Limits(messages_per_s=0.01, message_burst=3, max_strikes=5)
        async with setup(tmp_path, redis_url, stream, limits) as (server, _):
            flooder = await Client.connect(server.ws_url(server.token("runs")))
            for _ in range(20):
                await flooder.send({"type": "ping"})
            replies = []
            while (reply := await flooder.recv()) is not None:
                replies.append(reply)
            assert replies[:3] == [{"type": "pong"}] * 3
            assert {r["code"] for r in replies[3:]} == {"rate_limited"}
            assert flooder.conn.close_code == 1008

    run(scenario())


@pytest.mark.parametrize(
    ("token_kind", "status"), [("none", 401), ("forged", 401), ("expired", 401), ("garbage", 401)]
)
def test_bad_tokens_are_refused_at_upgrade(
    tmp_path: Path, redis_url: str, stream: str, token_kind: str, status: int
) -> None:
    import jwt

    async def scenario() -> None:
        async with setup(tmp_path, redis_url, stream) as (server, _):
            token = {
                "none": None,
                "forged": jwt.encode({"rooms": ["*"], "exp": 2**33}, b"x" * 32, "HS256"),
                "expired": jwt.encode({"rooms": ["*"], "exp": 1000}, server.secret, "HS256"),
                "garbage": "not.a.token",
            }[token_kind]
            with pytest.raises(tornado.httpclient.HTTPClientError) as info:
                await Client.connect(server.ws_url(token))
            assert info.value.code == status

    run(scenario())


def test_origin_is_checked(tmp_path: Path, redis_url: str, stream: str) -> None:
    async def scenario() -> None:
        env = {"CORS_ORIGIN": "http://good.example, https://also.example"}
        async with setup(tmp_path, redis_url, stream, env=env) as (server, _):
            url = server.ws_url(server.token("runs"))

            def request(origin: str) -> tornado.httpclient.HTTPRequest:
                return tornado.httpclient.HTTPRequest(url, headers={"Origin": origin})

            with pytest.raises(tornado.httpclient.HTTPClientError) as info:
                await Client.connect(request("http://evil.example"))  # type: ignore[arg-type]
            assert info.value.code == 403
            for origin in (
                "http://good.example",
                "https://also.example",
                f"http://127.0.0.1:{server.port}",
            ):
                client = await Client.connect(request(origin))  # type: ignore[arg-type]
                await client.subscribe("runs")
                client.close()

    run(scenario())


def test_slow_consumer_is_disconnected_and_others_are_not(
    tmp_path: Path, redis_url: str, stream: str
) -> None:
    """A client that stops reading fills its socket, then its queue: it is cut off with 4008
    while a reading client in the same room gets every event."""

    async def scenario() -> None:
        limits = Limits(events_per_s=100_000, burst=100_000, max_queue=20)
        async with setup(tmp_path, redis_url, stream, limits) as (server, pub):
            reader = await Client.connect(server.ws_url(server.token("runs")))
            await reader.subscribe("runs")
            stalled = await StalledClient.open(server.port, server.token("runs"))
            ids = []
            pad = "x" * 16_000
            registry = server.app.context.metrics.registry
            while not registry.get_sample_value("codeflow_ws_slow_consumers_total"):
                ids.append(await pub.state("r", "Running", note=pad))
                assert len(ids) < 5000, "the stalled client was never disconnected"
                if len(ids) % 50 == 0:
                    got = await reader.events(50)
                    assert [f["id"] for f in got] == ids[-50:]
            rest = len(ids) % 50
            got = await reader.events(rest) if rest else []
            assert [f["id"] for f in got] == ids[len(ids) - rest :]
            assert server.app.context.hub.listeners("runs") == 1
            stalled.close()

    run(scenario(), timeout=120)


class StalledClient:
    """A raw WebSocket client that subscribes and then never reads (tiny receive buffer)."""

    def __init__(self, sock: object) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, port: int, token: str) -> StalledClient:
        import asyncio
        import base64
        import os
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        await loop.sock_sendall(sock, _masked_text(b'{"type":"subscribe","room":"runs"}'))
        return cls(sock)

    def close(self) -> None:
        self.sock.close()  # type: ignore[attr-defined]


def _masked_text(payload: bytes) -> bytes:
    import os

    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body
