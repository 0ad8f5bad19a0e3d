"""codeflow on a real 3-master Redis Cluster and through a real Sentinel, reached by the URL
of one node (no scheme of its own): the cache and its invalidation, the event stream and the
realtime server's reader, the batch locks, the embedding cache, Prefect's results, and
``codeflow index`` + ``codeflow search`` end to end."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from prefect import flow, task
from prefect.cache_policies import INPUTS
from pydantic import SecretStr
from redis.cluster import RedisCluster as ClusterClient

from config.errors import RedisUnavailable, SettingsError
from tasks.cache.embedding_cache import EmbeddingCache
from tasks.cache.invalidation import Invalidator
from tasks.cache.redis_cache import RedisCache
from tasks.events.bus import EventBus
from tasks.pipeline.batch_locks import BatchLockManager
from tasks.pipeline.result_storage import RedisResults
from tasks.redis_io import aio
from tasks.redis_io.connections import (
    RESULTS_PREFIX,
    SyncClient,
    cache_namespaces,
    connect,
    read_cache_stats,
    results_prefix_for,
    results_url_for,
    server_size,
)
from tasks.redis_io.topology import topology_of
from tests.git_support import make_repo
from tests.redis_support import redis_binary
from tests.redis_topologies import HOST, RedisCluster, SentinelSetup, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("cluster")).start() as started:
        yield started


@pytest.fixture(scope="session")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with SentinelSetup(tmp_path_factory.mktemp("sentinel")).start() as started:
        yield started


@pytest.fixture(params=["cluster", "sentinel"])
def url(request: pytest.FixtureRequest) -> str:
    """The URL of one cluster node, or of the Sentinel."""
    setup: RedisCluster | SentinelSetup = request.getfixturevalue(request.param)
    return setup.url


@pytest.fixture
def client(url: str) -> Iterator[SyncClient]:
    made = connect(url, timeout_s=2.0)
    yield made
    made.close()


@pytest.fixture
def namespace(client: SyncClient) -> Iterator[str]:
    """A namespace of this test's own; its keys (on every master) are removed afterwards."""
    name = "t" + uuid.uuid4().hex[:12]
    yield name
    _unlink_matching(client, f"cf:{{{name}}}:*")


def _unlink_matching(client: SyncClient, pattern: str) -> None:
    for key in list(client.scan_iter(match=pattern, count=1000)):
        client.unlink(key)


def test_the_server_says_what_it_is(cluster: RedisCluster, sentinel: SentinelSetup) -> None:
    assert topology_of(cluster.url).kind == "cluster"
    assert isinstance(connect(cluster.url), ClusterClient)
    assert (results_url_for(cluster.url), results_prefix_for(cluster.url)) == (
        cluster.url,
        RESULTS_PREFIX,
    )
    found = topology_of(sentinel.url)
    assert (found.kind, found.master) == ("sentinel", sentinel.master_name)
    master = connect(sentinel.url)
    assert master.info("server")["tcp_port"] == sentinel.master_port
    assert results_url_for(sentinel.url).endswith("/1") and results_prefix_for(sentinel.url) == ""


def test_the_cache_reads_writes_and_invalidates(client: SyncClient, namespace: str) -> None:
    cache = RedisCache(client, namespace, ttl_s=300)
    cache.set("report", {"files": 12}, tags=["repo:abc"], depends_on=["manifest"])
    cache.set_many({f"v{i}": [i, i + 1] for i in range(100)})  # MSET + script, one slot
    assert cache.get_many(["report", "v7", "absent"]) == {"report": {"files": 12}, "v7": [7, 8]}
    invalidator = Invalidator(cache)
    assert invalidator.by_tag("repo:abc") == 1
    assert cache.get("report") is None and cache.get("v99") == [99, 100]
    cache.set("child", 1, depends_on=["manifest"])
    assert invalidator.by_dependency("manifest") == 1 and cache.get("child") is None
    invalidator.define_event("pushed", tags=["repo:abc"])
    cache.set("again", 2, tags=["repo:abc"])
    assert invalidator.by_event("pushed") == 1 and cache.get("again") is None
    assert invalidator.by_pattern("v*") == 100 and cache.get("v1") is None
    assert cache.get_or_compute("computed", lambda: {"n": 1}) == {"n": 1}
    assert cache.counters["errors"] == 0
    assert read_cache_stats(client)[namespace]["invalidations"] == 3


def test_statistics_and_scans_visit_every_master(cluster: RedisCluster) -> None:
    client = connect(cluster.url, timeout_s=2.0)
    assert isinstance(client, ClusterClient)
    names = _namespaces_on_every_master(client)
    try:
        for name in names:
            RedisCache(client, name, ttl_s=300).set("k", 1)
        assert set(names) <= set(cache_namespaces(client))
        per_node = [redis.Redis(host=HOST, port=port).dbsize() for port in cluster.ports]
        assert server_size(client)["keys"] == sum(per_node) and min(per_node) > 0
    finally:
        for name in names:
            _unlink_matching(client, f"cf:{{{name}}}:*")


def _namespaces_on_every_master(client: ClusterClient) -> list[str]:
    """One namespace whose slot each master serves."""
    untyped: Any = client  # redis-py leaves the node map's methods untyped
    by_node: dict[str, str] = {}
    while len(by_node) < len(untyped.get_primaries()):
        name = "t" + uuid.uuid4().hex[:12]
        node = untyped.get_node_from_key(f"cf:{{{name}}}:s")
        by_node.setdefault(node.name, name)
    return list(by_node.values())


def test_events_reach_the_realtime_servers_reader(url: str, client: SyncClient) -> None:
    stream = f"codeflow:test-events:{uuid.uuid4().hex[:12]}"
    bus = EventBus(client, stream=stream)
    try:
        first = bus.publish({"kind": "index.started", "n": 1})
        assert first is not None and bus.last_id() == first
        entries = asyncio.run(_read_as_the_server(url, stream))
        assert [(entry_id, event["n"]) for entry_id, _, event in entries] == [(first, 1)]
    finally:
        client.unlink(stream)


async def _read_as_the_server(url: str, stream: str) -> list[Any]:
    pooled, reader = aio.pooled_client(url, 1.0), aio.stream_reader(url, 1.0)
    try:
        await aio.ping(pooled, 1.0)
        replayed = await aio.entries_after(pooled, stream, "0-0", 10)
        followed = await aio.next_entries(reader, stream, "0-0", 10, 1000)
        assert replayed == followed
        return followed
    finally:
        await pooled.aclose()
        await reader.aclose()


def test_batch_locks_exclude_a_second_holder_and_expire(url: str) -> None:
    key = "batch-" + uuid.uuid4().hex
    locks = BatchLockManager(results_url_for(url), hold_s=30, wait_s=0.2)
    assert locks.acquire_lock(key, "agent-a")
    assert locks.is_locked(key) and locks.is_lock_holder(key, "agent-a")
    assert not locks.acquire_lock(key, "agent-b", acquire_timeout=0.1)
    locks.release_lock(key, "agent-a")
    assert not locks.is_locked(key)
    acquire = locks.aacquire_lock(key, "agent-b", acquire_timeout=1.0, hold_timeout=0.5)
    assert asyncio.run(acquire) and locks.is_locked(key)
    time.sleep(0.7)
    assert not locks.is_locked(key)


def test_the_embedding_cache_stores_and_finds_vectors(client: SyncClient, namespace: str) -> None:
    embeddings = EmbeddingCache(RedisCache(client, namespace, ttl_s=300), "test-embedder", 8)
    texts = [f"def f{i}(): return {i}" for i in range(300)]
    vectors = np.random.default_rng(1).random((300, 8), dtype=np.float32)
    keys = embeddings.keys(texts)
    embeddings.store(keys, vectors)
    found = embeddings.lookup([*keys[:5], "e:absent", keys[299]])
    assert sorted(found) == [0, 1, 2, 3, 4, 6]
    assert np.array_equal(found[6], vectors[299]) and np.array_equal(found[0], vectors[0])


@pytest.mark.usefixtures("prefect_harness")
def test_prefect_results_are_written_and_read_back(url: str, client: SyncClient) -> None:
    results_url, prefix = results_url_for(url), results_prefix_for(url)
    storage = RedisResults(connection_url=SecretStr(results_url), key_prefix=prefix, key_ttl=300)
    block = "test-results-" + uuid.uuid4().hex[:8]
    storage.save(block)
    calls: list[int] = []
    salt = uuid.uuid4().hex

    @task(cache_policy=INPUTS, persist_result=True, result_storage=storage,
          result_serializer="json", cache_result_in_memory=False)  # fmt: skip
    def square(x: int, salt: str) -> int:
        calls.append(x)
        return x * x

    @flow
    def twice() -> list[int]:
        return [square(7, salt), square(7, salt)]

    assert twice() == [49, 49] and calls == [7]  # the second call read the result back
    on = _results_client(client, results_url)
    keys = list(on.scan_iter(match=f"{prefix}*", count=1000))
    records = [json.loads(on.get(k) or b"{}") for k in keys]
    (key,) = [k for k, r in zip(keys, records, strict=True) if json.loads(r["result"]) == 49]
    assert 0 < on.ttl(key) <= 300
    on.unlink(key)


def _results_client(client: SyncClient, results_url: str) -> SyncClient:
    return client if isinstance(client, ClusterClient) else connect(results_url, timeout_s=2.0)


def test_results_refuse_anything_but_json(url: str) -> None:
    results_url, prefix = results_url_for(url), results_prefix_for(url)
    storage = RedisResults(connection_url=SecretStr(results_url), key_prefix=prefix)
    key = "refused-" + uuid.uuid4().hex
    record = {"metadata": {"serializer": {"type": "pickle"}}, "result": "gASVBQAAAAAAAACMAS6ULg=="}
    storage.write_path(key, json.dumps(record).encode())
    try:
        with pytest.raises(ValueError, match="pickle"):
            storage.read_path(key)
        with pytest.raises(FileNotFoundError):
            storage.read_path(key + "-absent")
    finally:
        connect(results_url).unlink(prefix + key)


def test_a_cluster_that_is_not_ok_is_one_clear_line(tmp_path: Path) -> None:
    port = free_port()
    node = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", HOST, "--save", "", "--dir",
         str(tmp_path), "--cluster-enabled", "yes", "--cluster-config-file",
         str(tmp_path / "nodes.conf")],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_ping(port)
        url = f"redis://{HOST}:{port}/0"
        with pytest.raises(RedisUnavailable, match="cluster_state:fail"):
            connect(url)
        done = _codeflow({"REDIS_URL": url, "CODEFLOW_HOME": str(tmp_path)}, "cache", "stats")
        assert done.returncode != 0 and done.stdout == ""
        assert done.stderr.strip().count("\n") == 0 and "cluster_state:fail" in done.stderr
    finally:
        node.kill()
        node.wait()


def _wait_for_ping(port: int) -> None:
    for _ in range(200):
        try:
            if redis.Redis(host=HOST, port=port, socket_timeout=0.5).ping():
                return
        except redis.ConnectionError:
            time.sleep(0.02)
    raise RuntimeError(f"no redis-server on port {port}")


def test_a_sentinel_with_several_masters_must_be_told_which(tmp_path: Path) -> None:
    with SentinelSetup(tmp_path / "two", master_name="first").start() as two:
        two.monitor("second")
        with pytest.raises(SettingsError, match="sentinel_master=NAME"):
            connect(two.url)
        chosen = connect(two.url + "?sentinel_master=second")
        assert chosen.ping() and chosen.info("server")["tcp_port"] == two.master_port
        with pytest.raises(SettingsError, match="no master 'third'"):
            connect(two.url + "?sentinel_master=third")


@pytest.mark.parametrize("setup", ["cluster", "sentinel"])
def test_index_and_search_end_to_end(
    setup: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    node: RedisCluster | SentinelSetup = request.getfixturevalue(setup)
    tenant = "t" + uuid.uuid4().hex[:10]
    env = {"REDIS_URL": node.url, "CODEFLOW_HOME": str(tmp_path / "home"),
           "CODEFLOW_TENANT": tenant}  # fmt: skip
    repo = make_repo(tmp_path / "repo", {"app.py": _APP, "util.py": _UTIL})
    client = connect(node.url, timeout_s=2.0)
    try:
        done = _codeflow(env, "index", str(repo), "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        summary = json.loads(done.stdout)
        assert (summary["files_total"], summary["redis_errors"]) == (2, 0)
        assert summary["chunks_embedded"] >= 2
        found = _codeflow(env, "search", "push an item onto the stack", "--repo", str(repo),
                          "--json")  # fmt: skip
        assert found.returncode == 0, found.stderr[-2000:]
        hits = json.loads(found.stdout)
        assert (hits[0]["path"], hits[0]["symbol"]) == ("app.py", "Stack")
        assert any(k.startswith(f"cf:{{{tenant}.embeddings}}".encode()) for k in
                   client.scan_iter(match=f"cf:{{{tenant}.*", count=1000))  # fmt: skip
    finally:
        _unlink_matching(client, f"cf:{{{tenant}.*")


_APP = "class Stack:\n    def push(self, item):\n        self.items.append(item)\n"
_UTIL = "def parse_date(text):\n    return text.split('-')\n"


def _codeflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CODEFLOW_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli.commands", *args],
        env={**base, "CODEFLOW_SERVICE": "off", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
