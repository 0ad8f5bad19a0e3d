"""The objects a flow run works with, built from Settings inside the run (never passed as
flow parameters: clients can't be serialised or hashed). One per process and Settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from config import Settings
from tasks.cache.redis_cache import RedisCache
from tasks.events.bus import EventBus
from tasks.index.manifests import ManifestStore
from tasks.redis_io.connections import connect, redis_url_for, with_db

if TYPE_CHECKING:
    from tasks.cache.embedding_cache import EmbeddingCache
    from tasks.embedding.cpu_workers import WorkerPool
    from tasks.embedding.local_embedder import Embedder
    from tasks.vectors.lance_store import LanceStore
    from tasks.vectors.pinecone_store import PineconeStore

RESULTS_DB = 1  # Prefect task results get their own Redis database index
# The embedding cache moves megabytes per call (8,192 vectors of 1 KB): on two busy cores a
# healthy Redis can take longer than the short interactive timeout to answer one, and a
# timeout would make the cache pass through, dropping vectors a later run needs. An outage
# still shows at once (refused or reset connections do not wait for the timeout).
BULK_TIMEOUT_S = 10.0


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    bus: EventBus
    search_cache: RedisCache
    sandbox_cache: RedisCache
    embedding_store: RedisCache
    manifests: ManifestStore

    @functools.cached_property
    def embedder(self) -> Embedder:
        from tasks.backends import build_embedder

        return build_embedder(self.settings)

    @functools.cached_property
    def store(self) -> LanceStore | PineconeStore:
        from tasks.backends import build_store

        return build_store(self.settings)

    @functools.cached_property
    def embedder_identity(self) -> tuple[str, int]:
        """(id, dimensions) of the configured embedder; a local model is not loaded for it."""
        if self.settings.embedder == "local":
            from tasks.embedding.local_embedder import local_embedder_id

            dimensions = self.settings.embedding_dimensions
            return local_embedder_id(dimensions), dimensions
        return self.embedder.id, self.embedder.dimensions

    @functools.cached_property
    def embeddings(self) -> EmbeddingCache:
        from tasks.cache.embedding_cache import EmbeddingCache

        return EmbeddingCache(self.embedding_store, *self.embedder_identity)

    @functools.cached_property
    def pool(self) -> WorkerPool:
        """Worker processes for chunking and local embedding (``CODEFLOW_CPU_WORKERS``)."""
        from tasks.embedding.cpu_workers import default_workers, worker_pool

        size = self.settings.cpu_workers
        return worker_pool(default_workers() if size is None else size)

    @property
    def embeds_in_workers(self) -> bool:
        return self.settings.embedder == "local" and self.pool.size > 0

    @functools.cached_property
    def batch_embedder(self) -> Embedder:
        """The embedder of the flow's embed tasks: the local model runs in the worker
        processes when there are any (queries keep :attr:`embedder`, in-process)."""
        if self.embeds_in_workers:
            from tasks.embedding.cpu_workers import PooledLocalEmbedder

            return PooledLocalEmbedder(self.pool, self.settings.embedding_dimensions)
        return self.embedder

    def results_url(self) -> str:
        """Where Prefect keeps task results: the same server, database ``RESULTS_DB``."""
        return with_db(redis_url_for(self.settings), RESULTS_DB)


@functools.lru_cache(maxsize=8)
def runtime(settings: Settings) -> Runtime:
    url = redis_url_for(settings)
    client = connect(url, timeout_s=settings.redis_timeout_s)
    bulk = connect(url, timeout_s=max(settings.redis_timeout_s, BULK_TIMEOUT_S))
    ttl = settings.cache_ttl_seconds

    def cache(name: str, on: redis.Redis = client) -> RedisCache:
        namespace = f"{settings.tenant}.{name}" if settings.tenant else name
        return RedisCache(on, namespace, ttl_s=ttl, retry_after_s=settings.redis_retry_after_s)

    return Runtime(
        settings=settings,
        redis=client,
        bus=EventBus(client, maxlen=settings.events_maxlen, ttl_s=ttl),
        search_cache=cache("search"),
        sandbox_cache=cache("sandbox"),
        embedding_store=cache("embeddings", bulk),
        # One set of manifests per kind of vector store: each holds its own vectors.
        manifests=ManifestStore(settings.home / "manifests" / settings.store),
    )
