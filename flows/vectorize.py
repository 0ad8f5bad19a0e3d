"""Pipeline 1: the incremental vectorization flow ``vectorize_repository``.

    fingerprint -> detect changes -> load & chunk -> embedding-cache lookup
    -> embed misses in parallel batches -> upsert & sweep -> commit

Steps 3-6 stream: as soon as a batch of files is chunked, its chunks are looked up in the
embedding cache, the misses are submitted for embedding, and finished vectors are written,
so chunking, embedding and writing overlap instead of running one after the other. Work is
batched (files per load task, chunks per embed task: never one task per file). Stale
vectors are deleted only after every new one is written, and the manifest is committed last.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import numpy as np
from prefect import flow
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

import tasks.embedding.local_embedder
import tasks.vectors.lance_store  # noqa: F401 - not inside a run (LanceDB alone takes ~1-3 s)
from config import Settings, load_settings, with_backends
from tasks.embedding.local_embedder import Embedder
from tasks.embedding.usage import EmbeddingUsage, usage_of
from tasks.errors import ConfigError
from tasks.events.model import make_event
from tasks.index.changes import Changes
from tasks.index.manifests import IndexManifest, namespace_for
from tasks.index.plans import LoadResult, batched, next_manifest, stale_ids
from tasks.pipeline.hooks import FLOW_HOOKS, remember_repo
from tasks.pipeline.long_lived import freeze_startup
from tasks.pipeline.vectorize_tasks import (
    batch_vectors,
    cached_embed_batch,
    commit_index,
    detect_changes,
    drop_handoffs,
    fingerprint_repository,
    load_and_chunk,
    lookup_embeddings,
    sweep_stale,
    write_vectors,
)
from tasks.records import Chunk
from tasks.repo.git_repository import Fingerprint
from tasks.services import Runtime, runtime
from tasks.vectors.lance_tables import COMPACT_TARGET_ROWS

FILES_PER_TASK = 400
LOAD_WINDOW = 2
WRITE_BATCH = COMPACT_TARGET_ROWS  # whole fragments: compaction never rewrites them
INLINE_FILES = 500  # fewer files to load than this: chunk and embed in-process

T = TypeVar("T")
Vectors = np.ndarray[Any, np.dtype[np.float32]]
TASK_RUNNER: Any = ThreadPoolTaskRunner(max_workers=4)


@dataclass
class Reporter:
    """Publishes progress events for one run, at most every ``interval_s`` per unit."""

    rt: Runtime
    base: dict[str, Any]
    interval_s: float = 0.2
    _last: dict[str, float] = field(default_factory=dict)

    def progress(self, unit: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last.get(unit, 0.0) < self.interval_s:
            return
        self._last[unit] = now
        self.rt.bus.publish(make_event("progress", done=done, total=total, unit=unit, **self.base))

    def summary(self, summary: dict[str, Any]) -> None:
        self.rt.bus.publish(make_event("index.summary", **{**self.base, **summary}))


@flow(name="vectorize_repository", task_runner=TASK_RUNNER, **FLOW_HOOKS)
def vectorize_repository(
    path: str,
    *,
    branch: str | None = None,
    full: bool = False,
    trace_id: str | None = None,
    embedder: Literal["local", "openai"] | None = None,
    store: Literal["lancedb", "pinecone"] | None = None,
) -> dict[str, Any]:
    """Index the git repository at ``path`` incrementally; returns the run summary.

    ``embedder``/``store`` override CODEFLOW_EMBEDDER/CODEFLOW_STORE for this run.
    """
    started = time.perf_counter()
    freeze_startup()  # full GCs then skip the ~420K objects of the imports (0.45 s each)
    settings = with_backends(load_settings(), embedder, store)
    rt = runtime(settings)
    fp = fingerprint_repository(path)
    label = _branch_label(fp, branch)
    namespace = namespace_for(fp.repo_id, label)
    run_id = str(flow_run.get_id() or "")
    remember_repo(run_id, fp.repo_id)
    base = {"flow_run_id": run_id, "flow_name": "vectorize_repository", "repo_id": fp.repo_id}
    reporter = Reporter(rt, {**base, "trace_id": trace_id})
    embedder_id, _ = rt.embedder_identity
    previous, changes = detect_changes(settings, opaque(fp), label, full, embedder_id)
    if previous is not None and _up_to_date(previous, changes, fp):  # nothing to do
        idle = Stream(settings, rt, reporter, (namespace, fp.repo_id, label))
        summary = _summary(fp, changes, previous, idle, stale=[], started=started)
        return _finish(reporter, summary, run_id, warm=None)
    in_workers = rt.pool.size > 0 and len(changes.to_load) >= INLINE_FILES
    warm = _WarmUp(settings, rt, in_workers) if changes.to_load else None
    stream = Stream(settings, rt, reporter, (namespace, fp.repo_id, label), warm=warm)
    stream.submit_loads(fp.root, changes.to_load)
    stored = rt.store.ids(namespace) if previous is None else set()
    committed = _committed(previous)  # IDs the store may hold: committed, pending, found
    known = committed | stored | set(previous.pending if previous else ())
    loaded = stream.run(known, frozenset() if changes.full_scan else committed)
    base_manifest = IndexManifest(
        repo_id=fp.repo_id, branch=label, root=fp.root, commit=fp.head, embedder=embedder_id
    )
    manifest = next_manifest(previous, base_manifest, changes, fp.files, loaded)
    current = {i for ids in manifest.chunks.values() for i in ids}
    stale = stale_ids(previous, changes, current, stored)
    if stale or loaded.chunks:
        sweep_stale(settings, namespace, opaque(stale))
    commit_index(settings, opaque(manifest), namespace)
    summary = _summary(fp, changes, manifest, stream, stale=stale, started=started)
    return _finish(reporter, summary, run_id, warm=warm)


def _finish(
    reporter: Reporter, summary: dict[str, Any], run_id: str, *, warm: _WarmUp | None
) -> dict[str, Any]:
    """Complete the run's summary (its ID, the embedder's usage), publish and return it."""
    summary["flow_run_id"] = run_id
    if warm is not None:
        summary.update(usage_of(warm.embedder).minus(warm.usage_before).as_summary())
    reporter.summary(summary)
    return summary


def _done(future: PrefectFuture[Any]) -> bool:
    """Whether the task has finished, without waiting (Prefect's ``wait(timeout=0)`` only
    reports futures something already waited on)."""
    wrapped = getattr(future, "wrapped_future", None)
    return bool(wrapped.done()) if wrapped is not None else future.state.is_final()


def opaque(value: T) -> T:
    """``value`` in Prefect's ``quote``: the task receives ``value`` itself, but Prefect
    does not walk it looking for futures to track, which on thousands of chunks, texts or
    manifest entries costs more than the task's own work (measured: ~40% of a cold run).
    Only under the thread-pool runner: other runners (Dask) ship parameters to other
    processes, and a ``quote`` does not survive that trip."""
    context = FlowRunContext.get()
    if context is not None and isinstance(context.task_runner, ThreadPoolTaskRunner):
        return cast(T, quote(value))
    return value


def _branch_label(fp: Fingerprint, branch: str | None) -> str:
    current = fp.branch or f"detached-{(fp.head or '')[:12]}"  # as GitRepository.branch_label
    if branch and branch != fp.branch:
        raise ConfigError(
            f"branch {branch!r} is not checked out at {fp.root} (HEAD is on {current}); "
            "check it out first or omit --branch"
        )
    return current


class _WarmUp(threading.Thread):
    """Load the embedder and register the result storage while files are being chunked;
    :meth:`ready` waits for it (re-raising its error) before the first embedding.

    ``in_workers``: this run chunks and embeds in the worker processes (runs with fewer
    than ``INLINE_FILES`` files to load do both in-process: starting workers costs more).
    """

    def __init__(self, settings: Settings, rt: Runtime, in_workers: bool) -> None:
        super().__init__(daemon=True)
        self.settings, self.rt, self.in_workers = settings, rt, in_workers
        self.error: BaseException | None = None
        self.usage_before = EmbeddingUsage()
        if in_workers and rt.embeds_in_workers:  # workers load the model while they chunk
            rt.pool.preload_embedder(settings.embedding_dimensions)
        self.start()

    @property
    def embedder(self) -> Embedder:
        return self.rt.batch_embedder if self.in_workers else self.rt.embedder

    def run(self) -> None:
        try:
            self.usage_before = usage_of(self.embedder)  # may load the model
            cached_embed_batch(self.rt.results_url(), self.settings.cache_ttl_seconds)
        except BaseException as exc:  # handed to the flow's thread by ready()
            self.error = exc

    def ready(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _up_to_date(previous: IndexManifest | None, changes: Changes, fp: Fingerprint) -> bool:
    """Nothing to commit: same files, same commit, same place, no unfinished run."""
    return (
        previous is not None
        and not changes.has_changes
        and not changes.full_scan
        and not previous.pending
        and (previous.commit, previous.root) == (fp.head, fp.root)
    )


def _committed(previous: IndexManifest | None) -> frozenset[str]:
    """IDs the last committed run stored: such a chunk needs no embedding and no write (its
    ID covers path, line and text). Not used for full scans, which rewrite everything."""
    if previous is None:
        return frozenset()
    return frozenset(i for ids in previous.chunks.values() for i in ids)


@dataclass
class Stream:
    """Steps 3-6 of one run, overlapped: chunk -> look up -> embed -> write."""

    settings: Settings
    rt: Runtime
    reporter: Reporter
    target: tuple[str, str, str]  # namespace, repo_id, branch
    warm: _WarmUp | None = None
    known: frozenset[str] = frozenset()
    loaded: LoadResult = field(default_factory=LoadResult)
    hits: int = 0
    unchanged: int = 0
    unchanged_ids: frozenset[str] = frozenset()
    chunks_seen: int = 0
    _loads: list[PrefectFuture[LoadResult]] = field(default_factory=list)
    _batches: list[list[str]] = field(default_factory=list)
    _root: str = ""
    _paths: int = 0
    # embed-batch future -> (its chunks, their embedding keys, its handoff name)
    _pending: dict[PrefectFuture[int], tuple[list[Chunk], list[str], str]] = field(
        default_factory=dict
    )
    _buffer: list[tuple[list[Chunk], Vectors]] = field(default_factory=list)
    _buffered: int = 0
    _written: int = 0
    _writing: tuple[PrefectFuture[int], int] | None = None  # the write in flight, its size

    def submit_loads(self, root: str, paths: list[str]) -> None:
        """Start chunking; only ``LOAD_WINDOW`` batches are queued at a time, so embedding
        tasks submitted meanwhile are not stuck behind every load in the task runner."""
        self._root, self._paths = root, len(paths)
        self._batches = batched(paths, FILES_PER_TASK)[::-1]
        self.reporter.progress("files", 0, len(paths))
        for _ in range(LOAD_WINDOW):
            self._submit_next_load()

    def _submit_next_load(self) -> None:
        if self._batches:
            batch = self._batches.pop()
            self._loads.append(
                load_and_chunk.submit(self.settings, self._root, opaque(batch), self.in_workers)
            )

    def _next_load(self) -> LoadResult:
        future = next(as_completed(self._loads))
        self._loads.remove(future)
        self._submit_next_load()
        return future.result()

    def run(self, known: frozenset[str], unchanged_ids: frozenset[str]) -> LoadResult:
        """Consume the loads as they finish; ``known``: IDs the store may already hold."""
        self.known, self.unchanged_ids, files_done = known, unchanged_ids, 0
        try:
            while self._loads:
                part = self._next_load()
                self.loaded.merge(part)
                files_done += len({c.path for c in part.chunks} | part.skipped.keys())
                self.reporter.progress("files", min(files_done, self._paths), self._paths)
                self._look_up(part.chunks)
                self._harvest(block=False)
            self.reporter.progress("files", self._paths, self._paths)
            self._harvest(block=True)
            self._flush()
            self._finish_write()
        finally:  # a failed run leaves no vectors waiting and no write running
            drop_handoffs([handoff for _, _, handoff in self._pending.values()])
            if self._writing is not None:  # the run failed already: its error is the one
                self._writing[0].wait()
        self.loaded.chunks.sort(key=lambda c: (c.path, c.start_line))
        return self.loaded

    @property
    def in_workers(self) -> bool:
        return self.warm is not None and self.warm.in_workers

    @property
    def embedded(self) -> int:
        return self.chunks_seen - self.hits - self.unchanged

    def _look_up(self, chunks: list[Chunk]) -> None:
        """Chunks the store holds already (committed, same place, same text) need nothing;
        cached vectors go straight to the write buffer; misses are submitted in batches."""
        self.chunks_seen += len(chunks)
        if self.unchanged_ids:
            kept = [c for c in chunks if c.id not in self.unchanged_ids]
            self.unchanged += len(chunks) - len(kept)
            chunks = kept
        if not chunks:
            return
        keys = self.rt.embeddings.keys([c.text for c in chunks])
        found = lookup_embeddings(self.settings, opaque(keys))
        if found:
            hit_chunks = [chunks[i] for i in sorted(found)]
            self._add([*hit_chunks], np.vstack([found[i] for i in sorted(found)]))
            self.hits += len(found)
        misses = [i for i in range(len(chunks)) if i not in found]
        if not misses:
            return
        if self.warm is not None:
            self.warm.ready()
        embed = cached_embed_batch(self.rt.results_url(), self.settings.cache_ttl_seconds)
        size = self.settings.embedding_batch
        for start in range(0, len(misses), size):
            picked = misses[start : start + size]
            group, group_keys = [chunks[i] for i in picked], [keys[i] for i in picked]
            texts, handoff = opaque([c.text for c in group]), uuid.uuid4().hex
            future = embed.submit(
                self.settings, opaque(group_keys), texts, self.in_workers, handoff
            )
            self._pending[future] = (group, group_keys, handoff)

    def _harvest(self, *, block: bool) -> None:
        """Move finished embeddings into the write buffer (all of them, as they finish, when
        ``block``; only those already finished otherwise)."""
        futures = list(self._pending)
        finished = as_completed(futures) if block else [f for f in futures if _done(f)]
        for future in finished:
            group, keys, handoff = self._pending.pop(future)
            future.result()  # raises the task's error
            texts = [c.text for c in group]
            self._add(group, batch_vectors(self.settings, handoff, keys, texts))

    def _add(self, chunks: list[Chunk], vectors: Vectors) -> None:
        self._buffer.append((chunks, vectors))
        self._buffered += len(chunks)
        if self._buffered >= WRITE_BATCH:
            self._flush()

    def _flush(self) -> None:
        """Start writing the buffer as a task, once the previous write is done: one write at
        a time, in order, while chunking and embedding go on (a write of 32K rows takes ~1 s
        of the flow, which the workers used to wait out)."""
        if not self._buffer:
            return
        chunks = [c for part, _ in self._buffer for c in part]
        vectors = np.vstack([v for _, v in self._buffer])
        self._buffer, self._buffered = [], 0
        self._finish_write()
        future = write_vectors.submit(
            self.settings, self.target, opaque(chunks), opaque(vectors), opaque(self.known)
        )
        self._writing = (future, len(chunks))

    def _finish_write(self) -> None:
        """Wait for the write in flight, if any; raises its error."""
        if self._writing is None:
            return
        future, size = self._writing
        self._writing = None
        future.result()
        self._written += size
        self.reporter.progress("chunks", self._written, max(self.chunks_seen, self._written))


def _summary(
    fp: Fingerprint,
    changes: Changes,
    manifest: IndexManifest,
    stream: Stream,
    *,
    stale: list[str],
    started: float,
) -> dict[str, Any]:
    skip_counts: dict[str, int] = {}
    for reason in manifest.skipped.values():
        skip_counts[reason] = skip_counts.get(reason, 0) + 1
    return {
        "repo_id": fp.repo_id,
        "branch": manifest.branch,
        "commit": fp.head,
        "files_total": len(manifest.chunks),
        "files_changed": len(changes.added) + len(changes.modified) + len(changes.renamed),
        "files_deleted": len(changes.deleted),
        "files_renamed": len(changes.renamed),
        "full_scan": changes.full_scan,
        "chunks_total": manifest.chunks_total,
        "chunks_embedded": stream.embedded,
        "cache_hits": stream.hits,
        "chunks_unchanged": stream.unchanged,
        "chunks_deleted": len(stale),
        "skipped": skip_counts,
        "duration_s": round(time.perf_counter() - started, 3),
    }
