"""Pipeline 1: the incremental vectorization flow ``vectorize_repository``.

    fingerprint -> detect changes -> load & chunk -> embedding-cache lookup
    -> embed misses in parallel batches -> upsert & sweep -> commit

Steps 3-6 stream through :class:`~tasks.pipeline.scheduler.Scheduler`, as Prefect task runs
(:class:`~tasks.pipeline.vectorize_tasks.PrefectSteps`). Stale vectors are deleted only after
every new one is written, and the manifest is committed last.

Under a runner that ships tasks to other processes (Dask), the flow reads the files and its
tasks get their bytes, the Redis server's URL (never an embedded server of their own) and no
worker pool: each Dask worker process chunks and embeds itself.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

import tasks.embedding.local_embedder
import tasks.vectors.lance_store  # noqa: F401 - not inside a run (LanceDB alone takes ~1-3 s)
from config import Settings, load_settings, with_backends
from config.errors import ConfigError
from tasks.embedding import Embedder
from tasks.embedding.usage import EmbeddingUsage, usage_of
from tasks.index.changes import Changes
from tasks.index.chunking import chunker_id
from tasks.index.manifests import IndexManifest, namespace_for
from tasks.index.plans import next_manifest, stale_ids
from tasks.pipeline.dask_workers import shippable
from tasks.pipeline.hooks import FLOW_HOOKS, remember_repo
from tasks.pipeline.index_steps import chunking_policy
from tasks.pipeline.long_lived import freeze_startup
from tasks.pipeline.scheduler import Reporter, Scheduler
from tasks.pipeline.vectorize_tasks import (
    PrefectSteps,
    cached_embed_batch,
    commit_index,
    detect_changes,
    fingerprint_repository,
    opaque,
    ships_tasks,
    sweep_stale,
)
from tasks.repo.git_repository import Fingerprint
from tasks.services import Services, services_for
from tasks.vectors.lance_tables import COMPACT_TARGET_ROWS

WRITE_BATCH = COMPACT_TARGET_ROWS  # whole fragments: compaction never rewrites them
INLINE_FILES = 500  # fewer files to load than this: chunk and embed in-process
TASK_RUNNER: Any = ThreadPoolTaskRunner(max_workers=4)


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
    freeze_startup()  # full GCs then skip the objects of the imports (tasks.pipeline.long_lived)
    settings = with_backends(load_settings(), embedder, store)
    ships = ships_tasks()
    if ships:
        settings = shippable(settings)
    svc = services_for(settings)
    outages = svc.redis_errors()
    fp = fingerprint_repository(path)
    label = _branch_label(fp, branch)
    namespace = namespace_for(fp.repo_id, label)
    run_id = str(flow_run.get_id() or "")
    remember_repo(run_id, fp.repo_id)
    base = {"flow_run_id": run_id, "flow_name": "vectorize_repository", "repo_id": fp.repo_id}
    reporter = Reporter(svc.bus, {**base, "trace_id": trace_id})
    embedder_id, _ = svc.embedder_identity
    previous, changes = detect_changes(settings, opaque(fp), label, full, embedder_id)
    if previous is not None and _up_to_date(previous, changes, fp):  # nothing to do
        summary = _summary(fp, changes, previous, None, stale=[], started=started)
        return _finish(reporter, summary, run_id, svc.redis_errors() - outages, warm=None)
    in_workers = not ships and svc.pool.size > 0 and len(changes.to_load) >= INLINE_FILES
    warm = _WarmUp(settings, svc, in_workers, ships) if changes.to_load else None
    target = (namespace, fp.repo_id, label)
    assert svc.results_url is not None, "a flow run's services keep Prefect's results"
    steps = PrefectSteps(settings, target, svc.results_url, in_workers=in_workers, ships=ships)
    scheduler = Scheduler(
        steps,
        reporter,
        keys=svc.embeddings.keys,
        embed_batch=settings.embedding_batch,
        write_batch=WRITE_BATCH,
        before_embed=warm.ready if warm is not None else lambda: None,
    )
    scheduler.submit_loads(fp.root, changes.to_load)
    stored = svc.store.ids(namespace) if previous is None else set()
    committed = _committed(previous)  # IDs the store may hold: committed, pending, found
    known = committed | stored | set(previous.pending if previous else ())
    loaded = scheduler.run(known, frozenset() if changes.full_scan else committed)
    base_manifest = IndexManifest(
        repo_id=fp.repo_id,
        branch=label,
        root=fp.root,
        commit=fp.head,
        embedder=embedder_id,
        chunker=chunker_id(chunking_policy(svc)),
    )
    manifest = next_manifest(previous, base_manifest, changes, fp.files, loaded)
    current = {i for ids in manifest.chunks.values() for i in ids}
    stale = stale_ids(previous, changes, current, stored)
    if stale or loaded.chunks:
        sweep_stale(settings, namespace, opaque(stale))
    commit_index(settings, opaque(manifest), namespace, run_id)
    summary = _summary(fp, changes, manifest, scheduler, stale=stale, started=started)
    return _finish(reporter, summary, run_id, svc.redis_errors() - outages, warm=warm)


def _finish(
    reporter: Reporter,
    summary: dict[str, Any],
    run_id: str,
    redis_errors: int,
    *,
    warm: _WarmUp | None,
) -> dict[str, Any]:
    """Complete the run's summary (its ID, the embedder's usage, Redis calls that met an
    outage), publish and return it."""
    summary["flow_run_id"] = run_id
    summary["redis_errors"] = redis_errors
    if warm is not None:
        summary.update(warm.usage().as_summary())
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


class _WarmUp(threading.Thread):
    """Load the embedder and register the result storage while files are being chunked;
    :meth:`ready` waits for it (re-raising its error) before the first embedding.

    ``in_workers``: this run chunks and embeds in the worker processes (runs with fewer
    than ``INLINE_FILES`` files to load do both in-process: starting workers costs more).
    ``ships``: the tasks run in other processes (Dask), which load the model themselves;
    their embedders' usage is not counted here.
    """

    def __init__(self, settings: Settings, svc: Services, in_workers: bool, ships: bool) -> None:
        super().__init__(daemon=True)
        self.settings, self.svc, self.in_workers = settings, svc, in_workers
        self.ships = ships
        self.error: BaseException | None = None
        self.usage_before = EmbeddingUsage()
        if in_workers and svc.embeds_in_workers:  # workers load the model while they chunk
            svc.pool.preload_embedder(settings.embedding_dimensions)
        self.start()

    @property
    def embedder(self) -> Embedder:
        return self.svc.batch_embedder if self.in_workers else self.svc.embedder

    def usage(self) -> EmbeddingUsage:
        """What this process's embedder spent during the run."""
        if self.ships:
            return EmbeddingUsage()
        return usage_of(self.embedder).minus(self.usage_before)

    def run(self) -> None:
        try:
            if not self.ships:
                self.usage_before = usage_of(self.embedder)  # may load the model
            assert self.svc.results_url is not None
            cached_embed_batch(self.svc.results_url, self.settings.cache_ttl_seconds)
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


def _summary(
    fp: Fingerprint,
    changes: Changes,
    manifest: IndexManifest,
    scheduler: Scheduler | None,
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
        "chunks_embedded": scheduler.embedded if scheduler else 0,
        "cache_hits": scheduler.hits if scheduler else 0,
        "chunks_unchanged": scheduler.unchanged if scheduler else 0,
        "chunks_deleted": len(stale),
        "skipped": skip_counts,
        "duration_s": round(time.perf_counter() - started, 3),
    }
