"""The vectorize pipeline's steps as plain functions over :class:`~tasks.services.Services`.

The Prefect tasks (:mod:`~tasks.pipeline.vectorize_tasks`) are these functions plus retries,
caching and hooks; :class:`InlineSteps` runs steps 3-6 on them directly, in the calling
thread, which is how the scheduler is unit-tested on the in-memory services.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

from tasks.embedding import Vectors
from tasks.events.model import invalidation_event
from tasks.index.changes import Changes, diff_manifests
from tasks.index.chunking import ChunkingPolicy, chunk_files, chunker_id
from tasks.index.manifests import IndexManifest, search_tag
from tasks.index.plans import LoadResult
from tasks.records import Chunk
from tasks.repo.git_repository import Fingerprint, GitRepository

if TYPE_CHECKING:
    from tasks.services import Services

T = TypeVar("T")
P = TypeVar("P")
#: Where a run writes: (namespace, repo_id, branch).
Target = tuple[str, str, str]


@dataclass(frozen=True)
class ReadFiles:
    """Files read from a work tree: ``contents`` by path, ``skipped`` path -> reason. What a
    load ships to a task runner in other processes, instead of a path on this disk."""

    contents: dict[str, bytes]
    skipped: dict[str, str]


def fingerprint(path: str) -> Fingerprint:
    with GitRepository.open(path) as repo:
        return repo.fingerprint()


def chunking_policy(svc: Services) -> ChunkingPolicy:
    return ChunkingPolicy(max_file_bytes=svc.settings.max_file_bytes)


def detect(
    svc: Services, fp: Fingerprint, branch: str, full: bool, embedder_id: str
) -> tuple[IndexManifest | None, Changes]:
    """The last committed manifest and what changed since (everything, when the embedder or
    the chunker changed, or ``full`` asks for it)."""
    previous = svc.manifests.load(fp.repo_id, branch)
    stale = previous is not None and (
        previous.embedder != embedder_id or previous.chunker != chunker_id(chunking_policy(svc))
    )
    changes = diff_manifests(
        previous.files if previous else None, fp.files, force_full_scan=full or stale
    )
    return previous, changes


def load(svc: Services, root: str, paths: list[str], in_workers: bool) -> LoadResult:
    """Read ``paths`` under ``root`` (never following a link) and chunk them."""
    return chunk_read(svc, read(svc, root, paths), in_workers)


def read(svc: Services, root: str, paths: list[str]) -> ReadFiles:
    """The bytes of ``paths`` under ``root`` and why others were skipped: never following a
    link, no file over ``max_file_bytes`` (:meth:`GitRepository.read_files`)."""
    with GitRepository.open(root) as repo:
        contents, skipped = repo.read_files(paths, max_bytes=svc.settings.max_file_bytes)
    return ReadFiles(contents, skipped)


def chunk_read(svc: Services, files: ReadFiles, in_workers: bool) -> LoadResult:
    """Chunk files already read (binary and minified ones are skipped with a reason)."""
    chunk = svc.pool.chunk if in_workers else chunk_files
    chunks, skips = chunk(list(files.contents.items()), chunking_policy(svc))
    skipped = {**files.skipped, **{s.path: s.reason for s in skips}}
    return LoadResult(chunks=chunks, skipped=skipped)


def embed(svc: Services, keys: list[str], texts: list[str], in_workers: bool) -> Vectors:
    """Embed ``texts`` and keep each vector in the embedding cache under its key."""
    vectors = (svc.batch_embedder if in_workers else svc.embedder).embed(texts)
    svc.embeddings.store(keys, vectors)
    return vectors


def cached_vectors(svc: Services, keys: list[str], texts: list[str]) -> Vectors:
    """The vectors of ``texts`` from the embedding cache, embedding any it no longer holds."""
    found = svc.embeddings.lookup(keys)
    lost = [i for i in range(len(keys)) if i not in found]
    if lost:
        again = svc.embedder.embed([texts[i] for i in lost])
        svc.embeddings.store([keys[i] for i in lost], again)
        found.update(zip(lost, again, strict=True))
    return np.vstack([found[i] for i in range(len(keys))])


def write(
    svc: Services, target: Target, chunks: list[Chunk], vectors: Vectors, known: frozenset[str]
) -> int:
    """Note the IDs as pending (write-ahead), then write: append what the store cannot hold
    yet, merge what it may (``known``: committed or pending IDs), so re-runs never duplicate."""
    namespace, repo_id, branch = target
    svc.manifests.note_pending(repo_id, branch, [c.id for c in chunks])
    fresh = [i for i, c in enumerate(chunks) if c.id not in known]
    again = [i for i, c in enumerate(chunks) if c.id in known]
    svc.store.append(namespace, [chunks[i] for i in fresh], vectors[fresh])
    svc.store.upsert(namespace, [chunks[i] for i in again], vectors[again])
    return len(chunks)


def sweep(svc: Services, namespace: str, stale: list[str]) -> int:
    """Delete vectors no longer current (after the new ones are written), then compact."""
    if stale:
        svc.store.delete(namespace, stale)
    svc.store.optimize(namespace)
    return len(stale)


def commit(
    svc: Services, manifest: IndexManifest, namespace: str, flow_run_id: str | None = None
) -> None:
    """Record the manifest last, then invalidate this namespace's cached search results and
    say so on the bus (rooms ``cache``, ``repo:<id>`` and the run's)."""
    svc.manifests.save(manifest)
    tag = search_tag(namespace)
    count = svc.search_cache.invalidate_tags([tag])
    event = invalidation_event(
        svc.search_cache.namespace,
        "tag",
        [tag],
        count,
        repo_id=manifest.repo_id,
        branch=manifest.branch,
        index=namespace,
        flow_run_id=flow_run_id or None,
    )
    svc.bus.publish(event)


@dataclass(eq=False)
class Done(Generic[T]):
    """A step that already ran."""

    value: T

    def done(self) -> bool:
        return True

    def wait(self) -> None:
        pass

    def result(self) -> T:
        return self.value


@dataclass
class InlineSteps:
    """Steps 3-6 run at once in the calling thread (a :class:`~tasks.pipeline.scheduler.Steps`)."""

    svc: Services
    target: Target
    in_workers: bool = False

    def load(self, root: str, paths: list[str]) -> Done[LoadResult]:
        return Done(load(self.svc, root, paths, self.in_workers))

    def look_up(self, keys: list[str]) -> dict[int, Vectors]:
        return self.svc.embeddings.lookup(keys)

    def embed(self, keys: list[str], texts: list[str]) -> Done[Vectors]:
        return Done(embed(self.svc, keys, texts, self.in_workers))

    def write(self, chunks: list[Chunk], vectors: Vectors, known: frozenset[str]) -> Done[int]:
        return Done(write(self.svc, self.target, chunks, vectors, known))

    def first_done(self, pending: Sequence[P]) -> P:
        return pending[0]

    def close(self) -> None:
        """Nothing waits anywhere."""
