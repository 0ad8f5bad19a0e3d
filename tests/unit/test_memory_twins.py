"""The in-memory twins keep the contracts of the real services they stand in for."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from config.errors import CacheKeyError
from tasks.cache.memory_cache import MemoryCache
from tasks.embedding.hashing_embedder import HashingEmbedder
from tasks.events.memory_bus import MemoryBus
from tasks.events.model import make_event
from tasks.search.hybrid import hybrid_search
from tasks.vectors.memory_store import MemoryStore
from tests.store_support import NS, snippets


def test_memory_cache_tags_invalidate_in_one_step() -> None:
    cache = MemoryCache()
    cache.set_many({"a": 1, "b": [2]}, tags=["repo:x"])
    cache.set("c", {"n": 3}, tags=["repo:y"])
    assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": [2], "c": {"n": 3}}
    assert cache.invalidate_tags(["repo:x"]) == 1
    assert cache.get_many(["a", "b", "c"]) == {"c": {"n": 3}}
    cache.set("a", 10, tags=["repo:x"])  # written after the bump: fresh
    assert cache.get("a") == 10


def test_memory_cache_refuses_what_redis_refuses() -> None:
    cache = MemoryCache()
    with pytest.raises(CacheKeyError):
        cache.set("bad key*", 1)
    with pytest.raises(CacheKeyError):
        cache.set("k", object())


def test_memory_cache_computes_once_for_concurrent_misses() -> None:
    cache, calls, gate = MemoryCache(), [], threading.Event()

    def compute() -> int:
        calls.append(1)
        gate.wait(1)
        return 7

    threads = [threading.Thread(target=cache.get_or_compute, args=("k", compute)) for _ in range(4)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert calls == [1] and cache.get("k") == 7


def test_memory_store_answers_both_halves_of_a_hybrid_query() -> None:
    embedder, store = HashingEmbedder(64), MemoryStore(64)
    chunks = snippets()
    store.upsert(NS, chunks, embedder.embed([c.text for c in chunks]))
    hits = hybrid_search("fibonacci", store=store, embedder=embedder, namespace=NS, limit=2)
    assert hits[0].path == "app/maths.py" and hits[0].text.startswith("def fibonacci")
    store.delete(NS, [chunks[2].id])
    assert store.count(NS) == 3 and chunks[2].id not in store.ids(NS)
    assert store.text_search(NS, ["fibonacci"], 5) == []


def test_memory_store_refuses_vectors_of_another_width() -> None:
    store = MemoryStore(64)
    with pytest.raises(Exception, match="64-dim store"):
        store.upsert(NS, snippets()[:1], np.zeros((1, 32), dtype=np.float32))


def test_memory_bus_reads_after_an_id() -> None:
    bus = MemoryBus(maxlen=3)
    ids = [bus.publish(make_event("progress", done=i, total=5, unit="files")) for i in range(5)]
    assert [e["done"] for _, e in bus.read()] == [2, 3, 4]  # capped like the stream
    assert [e["done"] for _, e in bus.read(after=str(ids[3]))] == [4]
    assert bus.last_id() == ids[-1]
    assert bus.read(after=str(ids[-1]), block_ms=10) == []
