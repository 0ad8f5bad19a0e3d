"""Shared fixtures: a real Redis server for the session, unique namespaces per test."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import websockets.asyncio.connection
import websockets.sync.connection

from tests.redis_support import RedisProcess

# Fixtures that skip (or, where CI requires them, fail) without their part of the machine.
pytest_plugins = ["tests.integration.browser_fixtures", "tests.s3_support"]

# Prefect's telemetry logs network errors (and "database is locked") without these.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Commands run in their own process here (the path CODEFLOW_SERVICE=off keeps): a service per
# test's CODEFLOW_HOME would outlive the test. tests/integration/test_service.py turns it on.
os.environ["CODEFLOW_SERVICE"] = "off"

# websockets draws its keepalive ping payloads from the global ``random``. A ping from
# Prefect's session-wide events client that landed while Hypothesis drew a test's data
# changed the global state, and Hypothesis then warned about our strategies (which use no
# ``random``). Its pings draw from a generator of their own here.
for _module in (websockets.asyncio.connection, websockets.sync.connection):
    setattr(_module, "random", random.Random())  # noqa: B010 - a module attribute


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """CODEFLOW_TEST_REDIS_URL (the server .ci/run starts) or a private redis-server."""
    given = os.environ.get("CODEFLOW_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client: redis.Redis) -> Iterator[str]:
    """A cache namespace unique to this test; every key under it is removed afterwards."""
    name = "t" + uuid.uuid4().hex[:12]
    yield name
    keys = list(redis_client.scan_iter(match=f"cf:{{{name}}}:*", count=1000))
    if keys:
        redis_client.unlink(*keys)


@pytest.fixture
def stream_name(redis_client: redis.Redis) -> Iterator[str]:
    """An event stream unique to this test, deleted afterwards."""
    name = f"codeflow:test-events:{uuid.uuid4().hex[:12]}"
    yield name
    redis_client.unlink(name)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis server this test may kill and restart."""
    server = RedisProcess(tmp_path / "private-redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the whole session (it takes ~10 s to start). Flows run
    without heartbeats, as codeflow's commands run them on a temporary API
    (:meth:`flows.cli.prefect_api.PrefectApi.flow_runs`): each run would otherwise end ~1 s
    late, waiting for Prefect's heartbeat thread."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.cli.prefect_api import without_heartbeats

    with prefect_test_harness(server_startup_timeout=120), without_heartbeats():
        yield


@pytest.fixture
def codeflow_env(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """CODEFLOW_HOME in tmp_path, the test Redis, and a cache tenant of this test's own whose
    keys are removed afterwards. Yields the variables set."""
    env = {
        "CODEFLOW_HOME": str(tmp_path / "home"),
        "REDIS_URL": redis_url,
        "CODEFLOW_TENANT": "t" + uuid.uuid4().hex[:10],
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"cf:{{{env['CODEFLOW_TENANT']}.*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()
