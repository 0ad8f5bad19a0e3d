"""The vectorize flow's Prefect tasks: a few lines each over logic and adapters.

Retries use exponential backoff with jitter. Only ``embed_batch`` persists its result: in
Redis through prefect-redis (JSON serializer, cache policy INPUTS + TASK_SOURCE, a Redis lock
manager with SERIALIZABLE isolation), so two agents asking to embed the same batch at the
same time embed it once. The other tasks are cheap or have side effects, and don't cache.
"""

from __future__ import annotations

import base64
import functools
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.tasks import exponential_backoff

from config import Settings
from tasks.changes import Changes, diff_manifests
from tasks.chunking import ChunkingPolicy, chunk_files
from tasks.gitrepo import Fingerprint, GitRepository
from tasks.indexing import LoadResult
from tasks.manifests import IndexManifest
from tasks.prefect_hooks import TASK_HOOKS
from tasks.records import Chunk
from tasks.runtime import runtime

RESULTS_BLOCK = "codeflow-results"
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
    settings: Settings, embedder_id: str, texts: list[str], in_workers: bool = True
) -> str:
    """Embed ``texts``; returns the float32 matrix as base64 (JSON-serialisable, exact)."""
    rt = runtime(settings)
    vectors = (rt.batch_embedder if in_workers else rt.embedder).embed(texts)
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode()


@functools.cache
def cached_embed_batch(results_url: str, ttl_s: int) -> Any:
    """``embed_batch`` with its result cached in Redis and concurrent duplicates locked."""
    from prefect_redis import RedisDatabase
    from prefect_redis.locking import RedisLockManager

    storage = RedisDatabase(connection_url=results_url, key_ttl=ttl_s)
    storage.save(RESULTS_BLOCK, overwrite=True)  # saved, so results name it; passed as an
    # instance, so tasks don't read the block back from the Prefect API on every run
    policy = (INPUTS - "settings" - "in_workers") + TASK_SOURCE  # the same vectors either way
    return embed_batch.with_options(
        cache_policy=policy.configure(
            lock_manager=RedisLockManager(connection_url=results_url),
            isolation_level="SERIALIZABLE",
        ),
        persist_result=True,
        result_storage=storage,
        result_serializer="json",
    )


def decode_matrix(text: str, dimensions: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(-1, dimensions).copy()


@task(name="write-vectors", **_RETRY, **_PLAIN)
def write_vectors(
    settings: Settings,
    target: tuple[str, str, str],
    chunks: list[Chunk],
    vectors: np.ndarray[Any, np.dtype[np.float32]],
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
