"""Pipeline 1: the incremental vectorization flow ``vectorize_repository``.

    fingerprint -> detect changes -> load & chunk -> embedding-cache lookup
    -> embed misses in parallel batches -> upsert & sweep -> commit

Work is batched (files per load task, chunks per embed task: never one task per file), and
progress (files, then chunks) is published on the event bus as it happens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prefect import flow
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from config import Settings, load_settings
from tasks.changes import Changes
from tasks.errors import ConfigError
from tasks.events import make_event
from tasks.gitrepo import Fingerprint
from tasks.indexing import LoadResult, batched, next_manifest, stale_ids
from tasks.manifests import IndexManifest, namespace_for
from tasks.prefect_hooks import FLOW_HOOKS, remember_repo
from tasks.records import Chunk
from tasks.runtime import Runtime, runtime
from tasks.vectorize_tasks import (
    cached_embed_batch,
    commit_index,
    decode_matrix,
    detect_changes,
    fingerprint_repository,
    load_and_chunk,
    lookup_embeddings,
    upsert_and_sweep,
)

FILES_PER_TASK = 400
LOOKUP_BATCH = 2000

Vectors = np.ndarray[Any, np.dtype[np.float32]]


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


TASK_RUNNER: Any = ThreadPoolTaskRunner(max_workers=4)


@flow(name="vectorize_repository", task_runner=TASK_RUNNER, **FLOW_HOOKS)
def vectorize_repository(
    path: str, branch: str | None = None, full: bool = False, trace_id: str | None = None
) -> dict[str, Any]:
    """Index the git repository at ``path`` incrementally; returns the run summary."""
    started = time.perf_counter()
    settings = load_settings()
    rt = runtime(settings)
    fp = fingerprint_repository(path)
    label = _branch_label(fp, branch)
    namespace = namespace_for(fp.repo_id, label)
    run_id = str(flow_run.get_id() or "")
    remember_repo(run_id, fp.repo_id)
    base = {
        "flow_run_id": run_id,
        "flow_name": "vectorize_repository",
        "repo_id": fp.repo_id,
        "trace_id": trace_id,
    }
    reporter = Reporter(rt, base)
    previous, changes = detect_changes(settings, fp, label, full)
    loaded = _load(settings, fp, changes, reporter)
    vectors, hits = _vectors_for(settings, rt, loaded.chunks, reporter)
    manifest = next_manifest(previous, _base_manifest(fp, label, rt), changes, fp.files, loaded)
    current = {i for ids in manifest.chunks.values() for i in ids}
    stored = rt.store.ids(namespace) if previous is None else ()
    stale = stale_ids(previous, changes, current, stored)
    _note_pending(rt, previous, fp, label, loaded.chunks)
    upsert_and_sweep(settings, namespace, loaded.chunks, vectors, stale)
    commit_index(settings, manifest, namespace)
    summary = _summary(
        fp, changes, manifest, loaded=loaded, hits=hits, stale=stale, started=started
    )
    summary["flow_run_id"] = run_id
    reporter.summary(summary)
    return summary


def _branch_label(fp: Fingerprint, branch: str | None) -> str:
    current = fp.branch or f"detached-{(fp.head or '')[:12]}"  # as GitRepository.branch_label
    if branch and branch != fp.branch:
        raise ConfigError(
            f"branch {branch!r} is not checked out at {fp.root} (HEAD is on {current}); "
            "check it out first or omit --branch"
        )
    return current


def _base_manifest(fp: Fingerprint, label: str, rt: Runtime) -> IndexManifest:
    return IndexManifest(
        repo_id=fp.repo_id, branch=label, root=fp.root, commit=fp.head, embedder=rt.embedder.id
    )


def _load(settings: Settings, fp: Fingerprint, changes: Changes, reporter: Reporter) -> LoadResult:
    paths = changes.to_load
    futures = [
        load_and_chunk.submit(settings, fp.root, batch) for batch in batched(paths, FILES_PER_TASK)
    ]
    result, done = LoadResult(), 0
    reporter.progress("files", 0, len(paths))
    for future in as_completed(futures):
        part = future.result()
        result.merge(part)
        done += len({c.path for c in part.chunks} | part.skipped.keys())
        reporter.progress("files", min(done, len(paths)), len(paths))
    reporter.progress("files", len(paths), len(paths))
    result.chunks.sort(key=lambda c: (c.path, c.start_line))
    return result


def _vectors_for(
    settings: Settings, rt: Runtime, chunks: list[Chunk], reporter: Reporter
) -> tuple[Vectors, int]:
    """Vectors for ``chunks`` in order: cached ones looked up, the misses embedded."""
    dims = rt.embedder.dimensions
    vectors = np.zeros((len(chunks), dims), dtype=np.float32)
    texts = [c.text for c in chunks]
    missing: list[int] = []
    for start in range(0, len(texts), LOOKUP_BATCH):
        found = lookup_embeddings(settings, texts[start : start + LOOKUP_BATCH])
        for offset in range(min(LOOKUP_BATCH, len(texts) - start)):
            if offset in found:
                vectors[start + offset] = found[offset]
            else:
                missing.append(start + offset)
    hits = len(chunks) - len(missing)
    _embed_missing(
        settings, rt, texts=texts, missing=missing, vectors=vectors, reporter=reporter, hits=hits
    )
    return vectors, hits


def _embed_missing(
    settings: Settings,
    rt: Runtime,
    *,
    texts: list[str],
    missing: list[int],
    vectors: Vectors,
    reporter: Reporter,
    hits: int,
) -> None:
    total, done = len(texts), hits
    reporter.progress("chunks", done, total)
    if not missing:
        return
    embed = cached_embed_batch(rt.results_url(), settings.cache_ttl_seconds)
    size = settings.embed_batch_size
    groups = [missing[i : i + size] for i in range(0, len(missing), size)]
    futures = {
        embed.submit(settings, rt.embedder.id, [texts[i] for i in group]): group for group in groups
    }
    for future in as_completed(list(futures)):
        group = futures[future]
        vectors[group] = decode_matrix(future.result(), rt.embedder.dimensions)
        rt.embeddings.store([texts[i] for i in group], vectors[group])
        done += len(group)
        reporter.progress("chunks", done, total)


def _note_pending(
    rt: Runtime,
    previous: IndexManifest | None,
    fp: Fingerprint,
    label: str,
    chunks: list[Chunk],
) -> None:
    """Write-ahead: record the IDs about to be written, so an interrupted run is swept."""
    if not chunks:
        return
    note = previous or IndexManifest(repo_id=fp.repo_id, branch=label, root=fp.root)
    note.pending = sorted(set(note.pending) | {c.id for c in chunks})
    rt.manifests.save(note)


def _summary(
    fp: Fingerprint,
    changes: Changes,
    manifest: IndexManifest,
    *,
    loaded: LoadResult,
    hits: int,
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
        "chunks_embedded": len(loaded.chunks) - hits,
        "cache_hits": hits,
        "chunks_deleted": len(stale),
        "skipped": skip_counts,
        "duration_s": round(time.perf_counter() - started, 3),
    }
