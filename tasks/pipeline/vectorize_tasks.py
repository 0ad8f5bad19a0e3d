"""The vectorize flow's Prefect tasks: each is a step of :mod:`~tasks.pipeline.index_steps`
with retries, a cache policy and hooks.

Retries use exponential backoff with jitter. Only ``embed_batch`` persists its result: in
Redis through prefect-redis (JSON serializer, cache policy INPUTS + TASK_SOURCE, a Redis lock
manager with SERIALIZABLE isolation), so two agents asking to embed the same batch at the
same time embed it once. The other tasks are cheap or have side effects, and don't cache.

``embed_batch`` stores its vectors in the embedding cache and returns their count, so
Prefect's result does not hold a second copy of them (hundreds of megabytes of base64 JSON
in Redis on a cold index). Under the thread pool the flow takes the vectors handed over
in-process; under runners that ship tasks to other processes (Dask) it reads them back from
the embedding cache (:class:`PrefectSteps`).

Shipped tasks carry contents, never a path on the flow's disk: the flow reads the files and
``chunk_files`` chunks their bytes, in the Dask worker's own process (no nested worker pool).
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from config import Settings
from tasks.embedding import Vectors
from tasks.index.changes import Changes
from tasks.index.manifests import IndexManifest
from tasks.index.plans import LoadResult
from tasks.pipeline import index_steps
from tasks.pipeline.dask_workers import require_shared_redis
from tasks.pipeline.hooks import TASK_HOOKS
from tasks.pipeline.index_steps import ReadFiles, Target
from tasks.records import Chunk
from tasks.repo.git_repository import Fingerprint
from tasks.services import Services, services_for

T = TypeVar("T")
RESULTS_BLOCK = "codeflow-results"
_RETRY: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=0.5),
    "retry_jitter_factor": 0.5,
}
_PLAIN: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, **TASK_HOOKS}


@task(name="fingerprint", **_PLAIN)
def fingerprint_repository(path: str) -> Fingerprint:
    return index_steps.fingerprint(path)


@task(name="detect-changes", **_PLAIN)
def detect_changes(
    settings: Settings, fingerprint: Fingerprint, branch: str, full: bool, embedder_id: str
) -> tuple[IndexManifest | None, Changes]:
    return index_steps.detect(_services(settings), fingerprint, branch, full, embedder_id)


@task(name="load-and-chunk", **_RETRY, **_PLAIN)
def load_and_chunk(
    settings: Settings, root: str, paths: list[str], in_workers: bool = True
) -> LoadResult:
    return index_steps.load(_services(settings), root, paths, in_workers)


@task(name="chunk-files", **_RETRY, **_PLAIN)
def chunk_files(settings: Settings, files: ReadFiles) -> LoadResult:
    """Chunk files the flow read, in this process: what runners that ship tasks run."""
    return index_steps.chunk_read(_services(settings), files, in_workers=False)


@task(name="lookup-embeddings", **_RETRY, **_PLAIN)
def lookup_embeddings(settings: Settings, keys: list[str]) -> dict[int, Any]:
    """Cached vectors by index in ``keys`` (see :meth:`EmbeddingCache.keys`)."""
    return _services(settings).embeddings.lookup(keys)


@task(name="embed-batch", **_RETRY, **TASK_HOOKS)
def embed_batch(
    settings: Settings,
    keys: list[str],
    texts: list[str],
    in_workers: bool = True,
    handoff: str = "",
) -> int:
    """Embed ``texts`` into the embedding cache under ``keys``; returns how many it stored.
    With a ``handoff`` name the vectors also wait in this process for the flow. (A count,
    not the keys: Prefect walks a list result item by item.)"""
    vectors = index_steps.embed(_services(settings), keys, texts, in_workers)
    if handoff:
        _hand_over(handoff, vectors)
    return len(keys)


_HANDOFF: dict[str, Vectors] = {}
_HANDOFF_LOCK = threading.Lock()


def _hand_over(name: str, vectors: Vectors) -> None:
    # Thread-pool runs only: runners that ship tasks to other processes (Dask) pass no
    # handoff name, and the flow reads the vectors back from the embedding cache.
    with _HANDOFF_LOCK:
        _HANDOFF[name] = vectors


def _take_handoff(name: str) -> Vectors | None:
    with _HANDOFF_LOCK:
        return _HANDOFF.pop(name, None)


def drop_handoffs(names: list[str]) -> None:
    """Forget vectors no one will take (the run that asked for them failed)."""
    with _HANDOFF_LOCK:
        for name in names:
            _HANDOFF.pop(name, None)


@functools.cache
def cached_embed_batch(results_url: str, ttl_s: int) -> Any:
    """``embed_batch`` with its result cached in Redis and concurrent duplicates locked."""
    from pydantic import SecretStr

    from tasks.pipeline.batch_locks import BatchLockManager
    from tasks.pipeline.result_storage import RedisResults
    from tasks.redis_io.connections import results_prefix_for

    prefix = results_prefix_for(results_url)
    url = SecretStr(results_url)
    storage = RedisResults(connection_url=url, key_prefix=prefix, key_ttl=ttl_s)
    storage.save(RESULTS_BLOCK, overwrite=True)  # saved, so results name it; passed as an
    # instance, so tasks don't read the block back from the Prefect API on every run
    # The keys hash embedder id, dimensions and text: hashing them, not the texts, is the
    # same policy at a fraction of the cost. The other inputs do not change the vectors.
    policy = (INPUTS - "settings" - "texts" - "in_workers" - "handoff") + TASK_SOURCE
    return embed_batch.with_options(
        cache_policy=policy.configure(
            lock_manager=BatchLockManager(results_url),
            isolation_level="SERIALIZABLE",
        ),
        persist_result=True,
        result_storage=storage,
        result_serializer="json",
    )


@task(name="write-vectors", **_RETRY, **_PLAIN)
def write_vectors(
    settings: Settings,
    target: Target,
    chunks: list[Chunk],
    vectors: Vectors,
    known: frozenset[str],
) -> int:
    return index_steps.write(_services(settings), target, chunks, vectors, known)


@task(name="sweep-stale", **_RETRY, **_PLAIN)
def sweep_stale(settings: Settings, namespace: str, stale: list[str]) -> int:
    return index_steps.sweep(_services(settings), namespace, stale)


@task(name="commit-index", **_PLAIN)
def commit_index(
    settings: Settings, manifest: IndexManifest, namespace: str, flow_run_id: str
) -> None:
    index_steps.commit(_services(settings), manifest, namespace, flow_run_id)


def _services(settings: Settings) -> Services:
    return services_for(require_shared_redis(settings))


def ships_tasks() -> bool:
    """Whether this flow run's task runner runs tasks in other processes (anything but the
    thread pool: Dask): their parameters are pickled, and nothing on this machine's disk or
    in this process's memory reaches them."""
    context = FlowRunContext.get()
    return context is not None and not isinstance(context.task_runner, ThreadPoolTaskRunner)


def opaque(value: T) -> T:
    """``value`` in Prefect's ``quote``: the task receives ``value`` itself, but Prefect
    does not walk it looking for futures to track, which on thousands of chunks, texts or
    manifest entries costs more than the task's own work (``benchmarks/vectorize/floor``).
    Only under the thread-pool runner: other runners (Dask) ship parameters to other
    processes, and a ``quote`` does not survive that trip."""
    context = FlowRunContext.get()
    if context is not None and isinstance(context.task_runner, ThreadPoolTaskRunner):
        return quote(value)  # type: ignore[return-value]
    return value


@dataclass(eq=False)
class Submitted(Generic[T]):
    """A submitted task; ``then`` turns its result into the step's (in the flow's thread)."""

    future: PrefectFuture[Any]
    then: Callable[[Any], T] = lambda value: value

    def done(self) -> bool:
        """Whether it has finished, without waiting (Prefect's ``wait(timeout=0)`` only
        reports futures something already waited on)."""
        wrapped = getattr(self.future, "wrapped_future", None)
        return bool(wrapped.done()) if wrapped is not None else self.future.state.is_final()

    def wait(self) -> None:
        self.future.wait()

    def result(self) -> T:
        return self.then(self.future.result())


@dataclass
class PrefectSteps:
    """Steps 3-6 as Prefect task runs of the current flow (a
    :class:`~tasks.pipeline.scheduler.Steps`).

    ``ships``: the runner runs tasks in other processes (:func:`ships_tasks`); loads then
    read the files here and ship their bytes, and vectors come back through the embedding
    cache rather than a hand-off in this process."""

    settings: Settings
    target: Target
    results_url: str
    in_workers: bool = False
    ships: bool = False
    _handoffs: set[str] = field(default_factory=set)

    def load(self, root: str, paths: list[str]) -> Submitted[LoadResult]:
        if self.ships:
            files = index_steps.read(services_for(self.settings), root, paths)
            return Submitted(chunk_files.submit(self.settings, files))
        return Submitted(load_and_chunk.submit(self.settings, root, opaque(paths), self.in_workers))

    def look_up(self, keys: list[str]) -> dict[int, Vectors]:
        found: dict[int, Vectors] = lookup_embeddings(self.settings, opaque(keys))
        return found

    def embed(self, keys: list[str], texts: list[str]) -> Submitted[Vectors]:
        embed = cached_embed_batch(self.results_url, self.settings.cache_ttl_seconds)
        handoff = "" if self.ships else uuid.uuid4().hex  # "": read back from the cache
        if handoff:
            self._handoffs.add(handoff)
        future = embed.submit(self.settings, opaque(keys), opaque(texts), self.in_workers, handoff)
        return Submitted(future, lambda _: self.vectors_of(handoff, keys, texts))

    def vectors_of(self, handoff: str, keys: list[str], texts: list[str]) -> Vectors:
        """Handed over in this process, else (Prefect's cache answered: another agent or an
        earlier attempt embedded the batch) read back from the embedding cache."""
        self._handoffs.discard(handoff)
        vectors = _take_handoff(handoff)
        if vectors is not None:
            return vectors
        return index_steps.cached_vectors(services_for(self.settings), keys, texts)

    def write(self, chunks: list[Chunk], vectors: Vectors, known: frozenset[str]) -> Submitted[int]:
        future = write_vectors.submit(
            self.settings, self.target, opaque(chunks), opaque(vectors), opaque(known)
        )
        return Submitted(future)

    def first_done(self, pending: Sequence[Any]) -> Any:
        by_future = {p.future: p for p in pending}
        return by_future[next(as_completed(list(by_future)))]

    def close(self) -> None:
        drop_handoffs(list(self._handoffs))
        self._handoffs.clear()
