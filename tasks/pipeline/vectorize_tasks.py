"""The vectorize flow's Prefect tasks: a few lines each over logic and adapters.

Retries use exponential backoff with jitter. Only ``embed_batch`` persists its result: in
Redis through prefect-redis (JSON serializer, cache policy INPUTS + TASK_SOURCE, a Redis lock
manager with SERIALIZABLE isolation), so two agents asking to embed the same batch at the
same time embed it once. The other tasks are cheap or have side effects, and don't cache.

``embed_batch`` stores its vectors in the embedding cache and returns their count, so
Prefect's result does not hold a second copy of them (on a cold index that copy was ~270 MB
of base64 through JSON into Redis). The flow takes the vectors from
:func:`batch_vectors`: handed over in-process, or read back from the embedding cache.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.tasks import exponential_backoff

from config import Settings
from tasks.index.changes import Changes, diff_manifests
from tasks.index.chunking import ChunkingPolicy, chunk_files
from tasks.index.manifests import IndexManifest
from tasks.index.plans import LoadResult
from tasks.pipeline.hooks import TASK_HOOKS
from tasks.records import Chunk
from tasks.repo.git_repository import Fingerprint, GitRepository
from tasks.services import runtime

RESULTS_BLOCK = "codeflow-results"
Vectors = np.ndarray[Any, np.dtype[np.float32]]
_RETRY: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=0.5),
    "retry_jitter_factor": 0.5,
}
_PLAIN: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, **TASK_HOOKS}


@task(name="fingerprint", **_PLAIN)
def fingerprint_repository(path: str) -> Fingerprint:
    with GitRepository.open(path) as repo:
        return repo.fingerprint()


@task(name="detect-changes", **_PLAIN)
def detect_changes(
    settings: Settings, fingerprint: Fingerprint, branch: str, full: bool, embedder_id: str
) -> tuple[IndexManifest | None, Changes]:
    previous = runtime(settings).manifests.load(fingerprint.repo_id, branch)
    stale_embedder = previous is not None and previous.embedder != embedder_id
    changes = diff_manifests(
        previous.files if previous else None,
        fingerprint.files,
        force_full_scan=full or stale_embedder,
    )
    return previous, changes


@task(name="load-and-chunk", **_RETRY, **_PLAIN)
def load_and_chunk(
    settings: Settings, root: str, paths: list[str], in_workers: bool = True
) -> LoadResult:
    with GitRepository.open(root) as repo:
        contents, skipped = repo.read_files(paths, max_bytes=settings.max_file_bytes)
    policy = ChunkingPolicy(max_file_bytes=settings.max_file_bytes)
    chunk = runtime(settings).pool.chunk if in_workers else chunk_files
    chunks, skips = chunk(list(contents.items()), policy)
    skipped.update({s.path: s.reason for s in skips})
    return LoadResult(chunks=chunks, skipped=skipped)


@task(name="lookup-embeddings", **_RETRY, **_PLAIN)
def lookup_embeddings(settings: Settings, keys: list[str]) -> dict[int, Any]:
    """Cached vectors by index in ``keys`` (see :meth:`EmbeddingCache.keys`)."""
    return runtime(settings).embeddings.lookup(keys)


@task(name="embed-batch", **_RETRY, **TASK_HOOKS)
def embed_batch(
    settings: Settings,
    keys: list[str],
    texts: list[str],
    in_workers: bool = True,
    handoff: str = "",
) -> int:
    """Embed ``texts`` and store each vector in the embedding cache under its key (``keys``:
    :meth:`EmbeddingCache.keys` of ``texts``); returns how many it stored. With a ``handoff``
    name, the vectors also wait in this process for :func:`batch_vectors`. (A count, not the
    keys: Prefect walks a list result item by item, ~5 us each.)"""
    rt = runtime(settings)
    vectors = (rt.batch_embedder if in_workers else rt.embedder).embed(texts)
    rt.embeddings.store(keys, vectors)
    if handoff:
        _hand_over(handoff, vectors)
    return len(keys)


_HANDOFF: dict[str, Vectors] = {}
_HANDOFF_LOCK = threading.Lock()


def _hand_over(name: str, vectors: Vectors) -> None:
    # A function of its own: runners that pickle the task (Dask) then pickle a reference to
    # it, not the lock. There the vectors stay in the Dask worker, and the flow reads them
    # from the embedding cache instead.
    with _HANDOFF_LOCK:
        _HANDOFF[name] = vectors


def drop_handoffs(names: list[str]) -> None:
    """Forget vectors no one will take (the run that asked for them failed)."""
    with _HANDOFF_LOCK:
        for name in names:
            _HANDOFF.pop(name, None)


def batch_vectors(settings: Settings, handoff: str, keys: list[str], texts: list[str]) -> Vectors:
    """The vectors of a finished ``embed_batch``: handed over in this process, else (its result
    came from Prefect's cache: another agent, or an earlier attempt, embedded the batch)
    read from the embedding cache, re-embedding any vector the cache no longer holds."""
    with _HANDOFF_LOCK:
        vectors = _HANDOFF.pop(handoff, None)
    if vectors is not None:
        return vectors
    rt = runtime(settings)
    found = rt.embeddings.lookup(keys)
    lost = [i for i in range(len(keys)) if i not in found]
    if lost:
        again = rt.embedder.embed([texts[i] for i in lost])
        rt.embeddings.store([keys[i] for i in lost], again)
        found.update(zip(lost, again, strict=True))
    return np.vstack([found[i] for i in range(len(keys))])


@functools.cache
def cached_embed_batch(results_url: str, ttl_s: int) -> Any:
    """``embed_batch`` with its result cached in Redis and concurrent duplicates locked."""
    from prefect_redis import RedisDatabase

    from tasks.pipeline.batch_locks import BatchLockManager

    storage = RedisDatabase(connection_url=results_url, key_ttl=ttl_s)
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
    target: tuple[str, str, str],
    chunks: list[Chunk],
    vectors: Vectors,
    known: frozenset[str],
) -> int:
    """Note the IDs as pending (write-ahead), then write: append what the store cannot hold
    yet, merge what it may (``known``: committed or pending IDs), so re-runs never duplicate.
    ``target`` is (namespace, repo_id, branch)."""
    namespace, repo_id, branch = target
    rt = runtime(settings)
    rt.manifests.note_pending(repo_id, branch, [c.id for c in chunks])
    fresh = [i for i, c in enumerate(chunks) if c.id not in known]
    again = [i for i, c in enumerate(chunks) if c.id in known]
    rt.store.append(namespace, [chunks[i] for i in fresh], vectors[fresh])
    rt.store.upsert(namespace, [chunks[i] for i in again], vectors[again])
    return len(chunks)


@task(name="sweep-stale", **_RETRY, **_PLAIN)
def sweep_stale(settings: Settings, namespace: str, stale: list[str]) -> int:
    """Delete vectors no longer current (after the new ones are written), then compact."""
    store = runtime(settings).store
    if stale:
        store.delete(namespace, stale)
    store.optimize(namespace)
    return len(stale)


@task(name="commit-index", **_PLAIN)
def commit_index(settings: Settings, manifest: IndexManifest, namespace: str) -> None:
    """Record the manifest last, then invalidate this namespace's cached search results."""
    rt = runtime(settings)
    rt.manifests.save(manifest)
    rt.search_cache.invalidate_tags([f"search:{namespace}"])
