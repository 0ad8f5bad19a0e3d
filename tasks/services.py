"""The services a run works with, built from Settings inside the run (never passed as flow
parameters: clients can't be serialised or hashed). One per process and Settings.

Every service is typed by the Protocol it implements (:class:`~tasks.cache.Cache`,
:class:`~tasks.events.EventLog`, :class:`~tasks.vectors.IndexStore`,
:class:`~tasks.embedding.Embedder`, :class:`~tasks.sandbox.SandboxRuntime`), so the same
code runs on Redis, LanceDB and Docker (:func:`services_for`) or on their in-memory twins
(:func:`in_memory_services`, for unit tests).
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from config import Settings
from config.errors import SandboxError
from tasks.cache import SANDBOX_NAMESPACE, SEARCH_NAMESPACE, Cache
from tasks.events import EventLog
from tasks.index.manifests import ManifestStorage, ManifestStore

if TYPE_CHECKING:
    from tasks.cache.embedding_cache import EmbeddingCache
    from tasks.embedding import Embedder
    from tasks.embedding.cpu_workers import WorkerPool
    from tasks.sandbox import SandboxRuntime
    from tasks.vectors import IndexStore

# The embedding cache moves megabytes per call (8,192 vectors of 1 KB): on two busy cores a
# healthy Redis can take longer than the short interactive timeout to answer one, and a
# timeout would make the cache pass through, dropping vectors a later run needs. An outage
# still shows at once (refused or reset connections do not wait for the timeout).
BULK_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)


@dataclass
class Services:
    """A run's caches, bus and manifests, and its embedder, store and sandbox (built on
    first use: loading a model or opening LanceDB costs seconds that many commands skip)."""

    settings: Settings
    bus: EventLog
    search_cache: Cache
    sandbox_cache: Cache
    embedding_store: Cache
    manifests: ManifestStorage
    make_embedder: Callable[[], Embedder]
    make_store: Callable[[], IndexStore]
    make_sandbox: Callable[[], SandboxRuntime]
    #: Where Prefect keeps task results (:func:`~tasks.redis_io.connections.results_url_for`);
    #: ``None``: nowhere.
    results_url: str | None = None
    _sandbox: SandboxRuntime | None = field(default=None, init=False, repr=False)
    _sandbox_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def redis_errors(self) -> int:
        """Redis calls of this process's caches and bus that met an outage so far."""
        caches = (self.search_cache, self.sandbox_cache, self.embedding_store)
        return sum(c.counters["errors"] for c in caches) + self.bus.counters["dropped"]

    @functools.cached_property
    def embedder(self) -> Embedder:
        return self.make_embedder()

    @functools.cached_property
    def store(self) -> IndexStore:
        return self.make_store()

    @property
    def sandbox(self) -> SandboxRuntime:
        """Built on first use, once however many threads ask (a warm pool starts filling
        then); a failure to build it (no engine, no image) raises and is tried again next
        time. Closed by :meth:`close`, or when this object is garbage-collected."""
        with self._sandbox_lock:
            if self._sandbox is None:
                self._sandbox = self.make_sandbox()
                # dropped by services_for's cache (or anyone) unclosed: closed when collected
                weakref.finalize(self, self._sandbox.close)
            return self._sandbox

    def warm_sandbox(self) -> bool:
        """Start the warm pool now (``CODEFLOW_SANDBOX_POOL_SIZE`` > 0), so that it fills
        before the first run: what a long-lived service calls at start-up. Never raises for
        the sandbox: without an engine or an image it logs why and returns False, and the
        first run raises the clear error. True when a pool is filling.

        >>> svc = services_for(load_settings())     # doctest: +SKIP
        >>> svc.warm_sandbox()                      # doctest: +SKIP
        True
        """
        if self.settings.sandbox_pool_size == 0:
            return False
        try:
            self.sandbox  # noqa: B018 - built now: the pool starts filling
        except SandboxError as exc:
            log.warning("sandbox warm pool not started: %s", exc)
            return False
        return True

    def sandbox_pool(self) -> dict[str, int] | None:
        """The warm pool's counters (``hits``, ``misses``, ``idle``) once it was built; None
        without a pool. Never builds one."""
        pool = self._sandbox
        counters = ("hits", "misses", "idle")
        if pool is None or not all(hasattr(pool, name) for name in counters):
            return None
        return {name: int(getattr(pool, name)) for name in counters}

    def close(self) -> None:
        """Release the sandbox runtime (a warm pool's waiting containers are removed).
        Idempotent; a later use builds a new one. Caches, bus and the shared worker pool
        need no closing (the worker pool closes at exit)."""
        with self._sandbox_lock:
            sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.close()

    @functools.cached_property
    def embedder_identity(self) -> tuple[str, int]:
        """(id, dimensions) of the configured embedder; a local model is not loaded for it."""
        if self.settings.embedder == "local" and "embedder" not in vars(self):
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


@functools.lru_cache(maxsize=8)
def services_for(settings: Settings) -> Services:
    """The services ``settings`` describe: Redis (given or embedded), the chosen embedder and
    vector store, Docker."""
    from tasks.backends import build_embedder, build_store
    from tasks.cache.redis_cache import RedisCache
    from tasks.events.bus import EventBus
    from tasks.redis_io.connections import SyncClient, connect, redis_url_for, results_url_for

    url = redis_url_for(settings)
    client = connect(url, timeout_s=settings.redis_timeout_s)
    bulk = connect(url, timeout_s=max(settings.redis_timeout_s, BULK_TIMEOUT_S))

    def cache(name: str, on: SyncClient) -> RedisCache:
        return RedisCache(
            on,
            _namespace(settings, name),
            ttl_s=settings.cache_ttl_seconds,
            retry_after_s=settings.redis_retry_after_s,
        )

    return Services(
        settings=settings,
        bus=EventBus(client, maxlen=settings.events_maxlen, ttl_s=settings.cache_ttl_seconds),
        search_cache=cache(SEARCH_NAMESPACE, client),
        sandbox_cache=cache(SANDBOX_NAMESPACE, client),
        embedding_store=cache("embeddings", bulk),
        manifests=_manifests(settings, settings.home),
        make_embedder=lambda: build_embedder(settings),
        make_store=lambda: build_store(settings),
        make_sandbox=lambda: _docker_sandbox(settings),
        results_url=results_url_for(url),
    )


def in_memory_services(
    settings: Settings,
    home: Path,
    *,
    embedder: Embedder | None = None,
    sandbox: SandboxRuntime | None = None,
) -> Services:
    """Services on the in-memory twins: :class:`MemoryCache`, :class:`MemoryBus`,
    :class:`MemoryStore`, :class:`HashingEmbedder` (unless ``embedder`` is given) and
    :class:`ScriptedRuntime` (unless ``sandbox`` is); manifests under ``home``."""
    from tasks.cache.memory_cache import MemoryCache
    from tasks.embedding.hashing_embedder import HashingEmbedder
    from tasks.events.memory_bus import MemoryBus
    from tasks.sandbox.scripted_runtime import ScriptedRuntime
    from tasks.vectors.memory_store import MemoryStore

    chosen = embedder or HashingEmbedder(settings.embedding_dimensions)
    runtime = sandbox or ScriptedRuntime()
    services = Services(
        settings=settings,
        bus=MemoryBus(),
        search_cache=MemoryCache(SEARCH_NAMESPACE),
        sandbox_cache=MemoryCache(SANDBOX_NAMESPACE),
        embedding_store=MemoryCache("embeddings"),
        manifests=_manifests(settings, home),
        make_embedder=lambda: chosen,
        make_store=lambda: MemoryStore(chosen.dimensions),
        make_sandbox=lambda: runtime,
    )
    services.embedder  # noqa: B018 - built now, so its identity is the one reported
    return services


def _docker_sandbox(settings: Settings) -> SandboxRuntime:
    """A DockerRuntime, or with ``sandbox_pool_size`` > 0 a warm pool over one, its
    containers shaped like the flow's default request (512 MB; a timeout is not part of a
    container's shape, so any ``--timeout`` uses the pool too)."""
    from tasks.sandbox.docker_runtime import DockerRuntime
    from tasks.sandbox.models import Limits
    from tasks.sandbox.warm_pool import WarmPool

    runtime = DockerRuntime(
        image=settings.sandbox_image,
        runtime=settings.sandbox_runtime,
        host=(settings.sandbox_host_proc, settings.sandbox_host_cgroup),
    )
    if settings.sandbox_pool_size == 0:
        return runtime
    runtime.check()  # engine, image and runtime: one clear error now, not a filler retrying
    limits = Limits(timeout_s=settings.sandbox_timeout_s)
    return WarmPool(runtime, settings.sandbox_pool_size, limits)


def _namespace(settings: Settings, name: str) -> str:
    return f"{settings.tenant}.{name}" if settings.tenant else name


def _manifests(settings: Settings, home: Path) -> ManifestStorage:
    """One set of manifests per kind of vector store (each holds its own vectors): under
    ``home``, or beside the tables in the shared bucket."""
    shared = settings.shared_store
    if shared is None:
        return ManifestStore(home / "manifests" / settings.store)
    from config.storage import MANIFESTS
    from tasks.index.s3_manifests import S3ManifestStore
    from tasks.objects.s3_objects import S3Objects

    return S3ManifestStore(S3Objects(shared), shared.key(MANIFESTS, settings.store))
