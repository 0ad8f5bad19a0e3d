"""HTTP endpoints of the realtime server: health, readiness, metrics, cache stats, page."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson
import pytest
import tornado.httpclient

from tests.integration.server_fixtures import (
    Client,
    Publisher,
    live_server,
    make_settings,
    run,
    seed_cache_stats,
    unique_stream,
)
from tests.redis_support import RedisProcess


async def fetch(url: str, **kwargs: object) -> tornado.httpclient.HTTPResponse:
    client = tornado.httpclient.AsyncHTTPClient()
    return await client.fetch(url, raise_error=False, **kwargs)


def test_health_ready_and_metrics(tmp_path: Path, redis_url: str, namespace: str) -> None:
    stream = unique_stream()
    seed_cache_stats(redis_url, namespace, hits=30, misses=10, sets=10)

    async def scenario() -> None:
        publisher = Publisher(redis_url, stream)
        async with live_server(make_settings(tmp_path), redis_url, stream) as server:
            assert (await fetch(server.url("/healthz"))).code == 200
            ready = await fetch(server.url("/readyz"))
            assert ready.code == 200 and orjson.loads(ready.body) == {"status": "ready"}
            client = await Client.connect(server.ws_url(server.token("runs")))
            await client.subscribe("runs")
            await publisher.state("r", "Running")
            await client.events(1)
            text = (await fetch(server.url("/metrics"))).body.decode()
            assert "codeflow_ws_connections 1.0" in text
            assert 'codeflow_ws_messages_sent_total{kind="event"} 1.0' in text
            assert "codeflow_ws_delivery_latency_seconds_count 1.0" in text
            assert f'codeflow_cache_hit_rate{{namespace="{namespace}"}} 0.75' in text
        await publisher.close()

    run(scenario())


def test_cache_stats_api_needs_a_token(tmp_path: Path, redis_url: str, namespace: str) -> None:
    seed_cache_stats(redis_url, namespace, hits=1, misses=3)

    async def scenario() -> None:
        async with live_server(make_settings(tmp_path), redis_url, unique_stream()) as server:
            assert (await fetch(server.url("/api/cache-stats"))).code == 401
            token = server.token("runs")
            reply = await fetch(server.url(f"/api/cache-stats?token={token}"))
            assert reply.code == 200
            stats = orjson.loads(reply.body)["namespaces"][namespace]
            assert stats == {"hits": 1, "misses": 3, "sets": 0, "hit_rate": 0.25}
            bearer = await fetch(
                server.url("/api/cache-stats"), headers={"Authorization": f"Bearer {token}"}
            )
            assert bearer.code == 200

    run(scenario())


def test_readyz_is_503_when_redis_is_gone(tmp_path: Path) -> None:
    redis_server = RedisProcess(tmp_path / "redis").start()

    async def scenario() -> None:
        settings = make_settings(tmp_path)
        async with live_server(settings, redis_server.url, unique_stream()) as server:
            assert (await fetch(server.url("/readyz"))).code == 200
            redis_server.kill()
            reply = await fetch(server.url("/readyz"))
            assert reply.code == 503
            assert (await fetch(server.url("/healthz"))).code == 200
            assert (await fetch(server.url("/metrics"))).code == 200

    try:
        run(scenario())
    finally:
        redis_server.stop()


def test_dashboard_page_and_assets_are_served(tmp_path: Path, redis_url: str) -> None:
    async def scenario() -> None:
        async with live_server(make_settings(tmp_path), redis_url, unique_stream()) as server:
            page = await fetch(server.url("/"))
            assert page.code == 200
            assert b"codeflow" in page.body
            assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
            assert page.headers["Referrer-Policy"] == "no-referrer"
            for asset in ("/static/app.js", "/static/style.css"):
                assert (await fetch(server.url(asset))).code == 200, asset

    run(scenario())


def test_history_api_holds_the_day_before_and_after_start(tmp_path: Path, redis_url: str) -> None:
    stream = unique_stream()

    async def scenario() -> dict[str, object]:
        publisher = Publisher(redis_url, stream)
        await publisher.state("before", "Running", ts=time.time() - 30)
        await publisher.state("before", "Completed", ts=time.time() - 20)
        async with live_server(make_settings(tmp_path), redis_url, stream) as server:
            assert (await fetch(server.url("/api/history"))).code == 401
            token = server.token("runs")
            client = await Client.connect(server.ws_url(token))
            await client.subscribe("runs")
            await publisher.state("after", "Running", ts=time.time() - 2)
            await publisher.state("after", "Failed", ts=time.time())
            await publisher.publish("index.summary", flow_run_id="after", files_changed=4,
                                    chunks_embedded=1, cache_hits=3, duration_s=2.0)  # fmt: skip
            await client.events(2)
            first = await fetch(server.url(f"/api/history?token={token}"))
            await publisher.state("late", "Running")
            await client.events(1)
            second = await fetch(server.url(f"/api/history?token={token}"))
        await publisher.close()
        assert first.code == 200
        return {"first": orjson.loads(first.body), "second": orjson.loads(second.body)}

    replies = run(scenario())
    first, second = replies["first"], replies["second"]
    assert isinstance(first, dict) and isinstance(second, dict)
    assert [(r["flow_run_id"], r["state"]) for r in first["runs"]] == [
        ("before", "Completed"),
        ("after", "Failed"),
    ]
    (index_run,) = first["index_runs"]
    assert (index_run["embedding_hit_rate"], index_run["files_per_s"]) == (0.75, 2.0)
    assert [r["flow_run_id"] for r in second["runs"]] == ["before", "after", "late"]


def test_api_rate_limit_is_per_token(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Past its burst a token gets 429 with Retry-After on every /api/ endpoint; other tokens
    and the endpoints outside /api/ are unaffected. The access log never shows a token."""
    settings = make_settings(
        tmp_path, CODEFLOW_RATE_LIMIT_BURST="3", CODEFLOW_RATE_LIMIT_PER_MIN="1"
    )

    async def scenario() -> str:
        async with live_server(settings, redis_url, unique_stream()) as server:
            token, other = server.token("runs"), server.token("repo:*")
            for path in ("/api/cache-stats", "/api/history", "/api/cache-stats"):
                assert (await fetch(server.url(f"{path}?token={token}"))).code == 200
            for path in ("/api/cache-stats?", "/api/history?", "/api/search?q=x&repo=/&"):
                refused = await fetch(server.url(f"{path}token={token}"))
                assert refused.code == 429, path
                assert 1 <= int(refused.headers["Retry-After"]) <= 60
                assert "too many requests" in orjson.loads(refused.body)["error"]
            bearer = {"Authorization": f"Bearer {token}"}
            assert (await fetch(server.url("/api/history"), headers=bearer)).code == 429
            assert (await fetch(server.url(f"/api/cache-stats?token={other}"))).code == 200
            assert (await fetch(server.url("/api/cache-stats"))).code == 401
            assert (await fetch(server.url("/healthz"))).code == 200
            return token

    caplog.set_level(logging.INFO, logger="tornado.access")
    token = run(scenario())
    assert "429 GET /api/history?token=*** " in caplog.text
    assert token not in caplog.text and token.split(".")[2] not in caplog.text
