"""Server processes: horizontal scaling, restart without loss, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import tornado.httpclient

from tests.integration.server_fixtures import (
    Client,
    Publisher,
    ServerProcess,
    run,
    unique_stream,
)
from tests.redis_support import RedisProcess


def test_two_processes_both_deliver_every_event(tmp_path: Path, redis_url: str) -> None:
    stream = unique_stream()
    servers = [ServerProcess(tmp_path / "home", redis_url, stream) for _ in range(2)]

    async def scenario() -> None:
        publisher = Publisher(redis_url, stream)
        clients = [await Client.connect(s.ws_url()) for s in servers]
        for client in clients:
            await client.subscribe("runs")
            await client.subscribe("run:r")
        ids = [await publisher.state("r", s) for s in ("Pending", "Running", "Completed")]
        for client in clients:
            frames = await client.events(6)
            assert sorted(f["id"] for f in frames) == sorted(ids * 2)
            assert [f["id"] for f in frames if f["room"] == "runs"] == ids
        await publisher.close()

    try:
        assert servers[0].port != servers[1].port
        run(scenario())
    finally:
        for server in servers:
            server.kill()


def test_restart_loses_nothing_a_client_replays(tmp_path: Path, redis_url: str) -> None:
    stream = unique_stream()
    home = tmp_path / "home"
    first = ServerProcess(home, redis_url, stream)
    second: list[ServerProcess] = []

    async def scenario() -> None:
        publisher = Publisher(redis_url, stream)
        client = await Client.connect(first.ws_url())
        await client.subscribe("run:r")
        await publisher.task_state("r", "t0", "Running")
        (frame,) = await client.events(1)
        last = frame["id"]
        assert await asyncio.to_thread(first.terminate) == 0
        assert await client.recv() is None
        missed = [await publisher.task_state("r", f"t{i}", "Completed") for i in range(1, 20)]
        second.append(ServerProcess(home, redis_url, stream, port=first.port))
        again = await Client.connect(second[0].ws_url(first.token))
        await again.subscribe("run:r", since=last)
        live = await publisher.task_state("r", "t20", "Completed")
        frames = await again.events(len(missed) + 1)
        assert [f["id"] for f in frames] == [*missed, live]
        await publisher.close()

    try:
        run(scenario())
    finally:
        first.kill()
        for server in second:
            server.kill()


def test_sigterm_closes_clients_gracefully_and_exits_zero(tmp_path: Path, redis_url: str) -> None:
    stream = unique_stream()
    server = ServerProcess(tmp_path / "home", redis_url, stream)

    async def scenario() -> None:
        clients = [await Client.connect(server.ws_url()) for _ in range(3)]
        for client in clients:
            await client.subscribe("runs")
        assert await asyncio.to_thread(server.terminate) == 0
        for client in clients:
            code, reason = await client.closed()
            assert code == 1001 and reason == "server shutting down"

    try:
        run(scenario())
    finally:
        server.kill()


def test_server_keeps_running_through_a_redis_outage(tmp_path: Path) -> None:
    """Redis dies and comes back on the same socket: the reader resumes from its last ID."""
    redis_server = RedisProcess(tmp_path / "redis").start()
    stream = unique_stream()
    server = ServerProcess(tmp_path / "home", redis_server.url, stream)

    async def scenario() -> None:
        client = await Client.connect(server.ws_url())
        await client.subscribe("runs")
        publisher = Publisher(redis_server.url, stream)
        await publisher.state("r", "Running")
        await client.events(1)
        redis_server.kill()
        redis_server.start()
        publisher = Publisher(redis_server.url, stream)
        entry_id = await publisher.state("r2", "Running")
        (frame,) = await client.events(1, timeout=30)
        assert frame["id"] == entry_id
        metrics = await tornado.httpclient.AsyncHTTPClient().fetch(
            f"http://127.0.0.1:{server.port}/metrics"
        )
        outages = re.search(rb'codeflow_redis_outages_total\{process="serve"\} (\S+)', metrics.body)
        assert outages is not None and float(outages.group(1)) >= 1

    try:
        run(scenario(), timeout=90)
    finally:
        server.kill()
        redis_server.stop()
