"""The cache layer against a real Redis server."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis

from config import load_settings
from config.errors import CacheKeyError
from tasks.cache.embedding_cache import EmbeddingCache
from tasks.cache.invalidation import Invalidator
from tasks.cache.redis_cache import RedisCache
from tasks.redis_io.formats import key_name
from tasks.services import services_for
from tests.redis_support import RedisProcess

TTL = 3600


@pytest.fixture
def cache(redis_client: redis.Redis, namespace: str) -> RedisCache:
    return RedisCache(redis_client, namespace, ttl_s=TTL)


def all_keys(client: redis.Redis, namespace: str) -> list[bytes]:
    return list(client.scan_iter(match=f"cf:{{{namespace}}}:*"))


def test_nested_json_round_trip(cache: RedisCache) -> None:
    value = {"a": [1, 2.5, None, True, {"b": "ü ✓"}], "n": {"deep": {"deeper": [[]]}}}
    cache.set("doc", value)
    assert cache.get("doc") == value
    assert cache.get("absent", "dflt") == "dflt"


@pytest.mark.parametrize("count", [3, 100])  # the Lua path, and MSET for large batches
def test_embedding_cache_stores_raw_float32_and_still_reads_base64(
    cache: RedisCache, redis_client: redis.Redis, namespace: str, count: int
) -> None:
    vectors = np.random.default_rng(count).standard_normal((count, 256), dtype=np.float32)
    embeddings = EmbeddingCache(cache, "test:model", 256)
    keys = embeddings.keys([f"text {i}" for i in range(count)])
    embeddings.store(keys, vectors)
    stored = redis_client.get(key_name(namespace, "k", keys[0]))
    assert stored is not None and len(stored) == 1 + 1 + 256 * 4  # header end, marker, body
    legacy, short = keys[0], keys[1]  # earlier versions wrote base64 inside JSON
    cache.set_many({legacy: base64.b64encode(vectors[0].tobytes()).decode(), short: b"\0" * 8})
    found = embeddings.lookup([*keys, "e:" + "0" * 40])
    assert sorted(found) == [i for i in range(count) if i != 1]  # a bad value is a miss
    assert all(np.array_equal(found[i], vectors[i]) for i in found)


def test_get_many_and_set_many_in_one_round_trip(cache: RedisCache) -> None:
    cache.set_many({f"k{i}": {"i": i} for i in range(100)})
    found = cache.get_many([f"k{i}" for i in range(0, 120, 2)])
    assert found == {f"k{i}": {"i": i} for i in range(0, 100, 2)}
    assert cache.counters["hits"] == 50 and cache.counters["misses"] == 10


def test_untagged_and_tagged_batches_store_alike(
    cache: RedisCache, redis_client: redis.Redis, namespace: str
) -> None:
    """Large untagged batches skip the Lua header path (MSET + TTLs in one transaction):
    same values, TTLs and shared counters as tagged ones; a tag bump does not touch them."""
    large, small = [f"large{i}" for i in range(100)], ["small0", "small1", "small2"]
    tagged = [f"tagged{i}" for i in range(100)]
    cache.set_many({key: [key, "é"] for key in large})
    cache.set_many({key: [key, "é"] for key in small})  # below the batch size: Lua
    cache.set_many({key: [key, "é"] for key in tagged}, tags=["t"])
    names = [key_name(namespace, "k", key) for key in large + small + tagged]
    assert all(0 < ttl <= TTL for ttl in (redis_client.ttl(n) for n in names))
    assert cache.stats()["shared_sets"] == 203 and cache.counters["sets"] == 203
    cache.invalidate_tags(["t"])
    assert cache.get_many(large + small + tagged) == {key: [key, "é"] for key in large + small}


def test_every_key_written_has_a_ttl(
    cache: RedisCache, redis_client: redis.Redis, namespace: str
) -> None:
    inv = Invalidator(cache)
    cache.set("base", 1, tags=["t1"])
    cache.set("child", 2, depends_on=["base"], tags=["t2"])
    inv.define_event("pushed", tags=["t1"])
    inv.by_event("pushed")
    inv.by_tag("t2")
    cache.get_or_compute("computed", lambda: 3)
    keys = all_keys(redis_client, namespace)
    assert len(keys) >= 6
    ttls = {key: redis_client.ttl(key) for key in keys}
    assert all(0 < ttl <= TTL for ttl in ttls.values()), ttls


def test_namespaces_are_isolated(redis_client: redis.Redis, namespace: str) -> None:
    first = RedisCache(redis_client, namespace, ttl_s=TTL)
    other_ns = namespace + "-b"
    second = RedisCache(redis_client, other_ns, ttl_s=TTL)
    try:
        first.set("shared-name", "first")
        second.set("shared-name", "second")
        first.invalidate_tags(["x"])
        Invalidator(second).by_pattern("*")
        assert first.get("shared-name") == "first"
        assert second.get("shared-name") is None
    finally:
        redis_client.unlink(*all_keys(redis_client, other_ns) or [b"-"])


@pytest.mark.parametrize("bad", ["*", "a?b", "k\r\nFLUSHALL", "x" * 600, "{slot}x"])
def test_injection_rejected_before_reaching_redis(cache: RedisCache, bad: str) -> None:
    with pytest.raises(CacheKeyError):
        cache.set(bad, 1)
    with pytest.raises(CacheKeyError):
        cache.get(bad)
    with pytest.raises(CacheKeyError):
        cache.set("ok", 1, tags=[bad])


def test_invalidate_by_tag(cache: RedisCache) -> None:
    cache.set_many({"a": 1, "b": 2}, tags=["repo:1"])
    cache.set("c", 3, tags=["repo:2"])
    assert Invalidator(cache).by_tag("repo:1") == 1
    assert cache.get_many(["a", "b", "c"]) == {"c": 3}
    cache.set("a", 10, tags=["repo:1"])
    assert cache.get("a") == 10, "values written after the invalidation are fresh"


def test_invalidate_by_dependency_is_transitive(cache: RedisCache) -> None:
    cache.set("B", "b")
    cache.set("C", "c", depends_on=["B"])
    cache.set("D", "d", depends_on=["C"])
    cache.set("E", "e", depends_on=["D"])
    cache.set("other", "o")
    Invalidator(cache).by_dependency("C")
    assert cache.get_many(["B", "C", "D", "E", "other"]) == {"B": "b", "other": "o"}
    Invalidator(cache).by_dependency("B")
    assert cache.get_many(["B", "other"]) == {"other": "o"}


def test_dependency_cycles_are_handled(cache: RedisCache) -> None:
    cache.set("X", 1, depends_on=["Y"])
    cache.set("Y", 2, depends_on=["X"])
    cache.set("Z", 3, depends_on=["Y"])
    Invalidator(cache).by_dependency("X")
    assert cache.get_many(["X", "Y", "Z"]) == {}


def test_invalidate_by_event(cache: RedisCache) -> None:
    announced: list[dict[str, object]] = []
    inv = Invalidator(cache, announce=announced.append)
    cache.set("search:q1", [1], tags=["search"])
    cache.set("emb", [2], depends_on=["manifest"])
    cache.set("manifest", {"f": 1})
    cache.set("keep", 0)
    inv.define_event("repo.pushed", tags=["search"], depends_on=["manifest"])
    inv.by_event("repo.pushed")
    assert cache.get_many(["search:q1", "emb", "manifest", "keep"]) == {"keep": 0}
    assert announced[-1]["strategy"] == "event" and announced[-1]["kind"] == "cache.invalidated"
    with pytest.raises(CacheKeyError, match="no invalidation rule"):
        inv.by_event("never-defined")


def test_invalidate_by_pattern_uses_scan(cache: RedisCache) -> None:
    cache.set_many({f"emb:{i}": i for i in range(2500)})
    cache.set_many({"search:a": 1, "search:b": 2})
    assert Invalidator(cache).by_pattern("emb:*") == 2500
    assert cache.get_many(["emb:1", "search:a", "search:b"]) == {"search:a": 1, "search:b": 2}


def test_tag_invalidation_cost_does_not_depend_on_key_count(
    cache: RedisCache, redis_client: redis.Redis
) -> None:
    cache.set_many({f"k{i}": i for i in range(20_000)}, tags=["big"])
    before = redis_client.info("commandstats")
    cache.invalidate_tags(["big"])
    after = redis_client.info("commandstats")
    unlinked = after.get("cmdstat_unlink", {}).get("calls", 0) - before.get(
        "cmdstat_unlink", {}
    ).get("calls", 0)
    assert unlinked == 0, "tag invalidation must not touch the tagged keys themselves"
    assert cache.get_many(["k0", "k19999"]) == {}


def test_stampede_runs_the_computation_once(redis_client: redis.Redis, namespace: str) -> None:
    """Eight independent caches (separate clients, like separate processes) x 2 threads each."""
    caches = [
        RedisCache(redis.Redis.from_url(_url(redis_client)), namespace, ttl_s=TTL) for _ in range(8)
    ]
    all_missed = threading.Event()
    calls: list[int] = []

    def expensive() -> dict[str, int]:
        calls.append(1)
        # Hold the computation until every cache has missed, so the misses truly overlap.
        all_missed.wait(timeout=10)
        return {"answer": 42}

    def watcher() -> None:
        while not all(c.counters["misses"] >= 1 for c in caches):
            threading.Event().wait(0.001)
        all_missed.set()

    results: list[object] = []
    threads = [
        threading.Thread(target=lambda c=c: results.append(c.get_or_compute("hot", expensive)))
        for c in caches
        for _ in range(2)
    ]
    threads.append(threading.Thread(target=watcher))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(calls) == 1
    assert results == [{"answer": 42}] * 16
    assert all_missed.is_set()


def test_lock_won_just_after_the_holder_finished_serves_its_value(
    redis_client: redis.Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stampede test's rare double computation, made deterministic: the holder stores the
    value and lets go of the lock between the waiter's last look and its next SET NX."""
    holder = RedisCache(redis_client, namespace, ttl_s=TTL)
    waiter_client = redis.Redis.from_url(_url(redis_client))
    waiter = RedisCache(waiter_client, namespace, ttl_s=TTL)
    real_set = waiter_client.set

    def set_after_holder_finished(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("nx"):
            holder.set("hot", {"answer": 42})
        return real_set(*args, **kwargs)

    monkeypatch.setattr(waiter_client, "set", set_after_holder_finished)
    calls: list[str] = []

    def compute() -> dict[str, int]:
        calls.append("hot")
        return {"answer": 0}

    assert waiter.get_or_compute("hot", compute) == {"answer": 42} and calls == []
    assert waiter.counters["coalesced"] == 1
    assert not redis_client.exists(key_name(namespace, "l", "hot"))  # the lock was let go
    waiter_client.close()


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


@pytest.fixture
def outage_cache(private_redis: RedisProcess) -> Iterator[RedisCache]:
    client = redis.Redis.from_url(private_redis.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    yield RedisCache(client, "outage", ttl_s=TTL, retry_after_s=0.0)
    client.close()


def test_redis_killed_mid_operation_degrades_then_recovers(
    outage_cache: RedisCache, private_redis: RedisProcess
) -> None:
    cache, errors, done = outage_cache, [], threading.Event()
    cache.set("before", 1)

    def worker() -> None:
        i = 0
        while not done.is_set():
            try:
                cache.set(f"k{i % 50}", {"i": i})
                cache.get_many([f"k{j}" for j in range(10)])
                assert cache.get_or_compute("c", lambda: "computed") == "computed"
            except Exception as exc:  # any exception reaching the caller fails the test
                errors.append(exc)
                return
            i += 1

    thread = threading.Thread(target=worker)
    thread.start()
    _wait_for(lambda: cache.counters["sets"] > 20)
    private_redis.kill()
    _wait_for(lambda: cache.counters["errors"] > 5)
    assert cache.get("before", "passthrough") == "passthrough"
    private_redis.start()
    _wait_for(lambda: cache.get("k1") is not None)
    done.set()
    thread.join(timeout=10)
    assert errors == []
    cache.set("after", 2)
    assert cache.get("after") == 2
    assert cache.stats()["errors"] > 0


def test_large_writes_go_in_parts_and_every_key_gets_its_ttl(
    cache: RedisCache, redis_client: redis.Redis, namespace: str
) -> None:
    items = {f"k{i}": {"i": i} for i in range(2500)}  # three parts of at most 1,024
    cache.set_many(items)
    assert cache.counters["sets"] == 2500
    assert cache.get_many(list(items)) == items
    ttls = {redis_client.ttl(key_name(namespace, "k", k)) for k in items}
    assert min(ttls) > TTL - 60 and max(ttls) <= TTL


def test_the_embedding_cache_waits_out_a_slow_server_the_interactive_caches_do_not(
    private_redis: RedisProcess, tmp_path: Any
) -> None:
    """A healthy server that answers late (CLIENT PAUSE holds every write for 2 s) makes
    the search cache pass through at once, but loses no vector of the embedding cache."""
    rt = services_for(
        load_settings({"REDIS_URL": private_redis.url, "CODEFLOW_HOME": str(tmp_path)})
    )
    vectors = np.random.default_rng(3).standard_normal((3000, 256), dtype=np.float32)
    keys = rt.embeddings.keys([f"def f{i}(): pass" for i in range(3000)])
    admin = redis.Redis.from_url(private_redis.url)
    assert isinstance(rt.search_cache, RedisCache) and isinstance(rt.embedding_store, RedisCache)
    admin.client_pause(2000, all=False)  # writes wait; reads go on
    rt.search_cache.set("query", ["hit"])
    assert rt.search_cache.degraded  # timed out: the 0.25 s interactive timeout
    rt.embeddings.store(keys, vectors)
    assert not rt.embedding_store.degraded
    found = rt.embeddings.lookup(keys)
    assert len(found) == 3000 and np.array_equal(found[2999], vectors[2999])
    admin.close()


def _wait_for(condition: object, timeout_s: float = 15.0) -> None:
    event = threading.Event()
    waited = 0.0
    while not condition():  # type: ignore[operator]
        event.wait(0.005)
        waited += 0.005
        if waited > timeout_s:
            raise AssertionError("condition not reached")
