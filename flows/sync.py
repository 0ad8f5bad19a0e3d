"""Deployment entry points: index a folder *or a git URL*, and keep registered repositories fresh.

``vectorize_source`` is what the ``vectorize`` deployment runs: it validates its parameters
(a mistake fails the run at once, with the reason as the Failed state's message in the UI),
clones or fetches a URL into ``CODEFLOW_HOME/repos/<name>``, then runs
``vectorize_repository`` as a subflow. ``sync_repositories`` is what the scheduled ``sync``
deployment runs: the same for every registered repository that is due.

The embedding fan-out's engine is chosen here, at the entry point, by configuration
(:func:`vectorize_flow`): ``CODEFLOW_TASK_RUNNER=dask`` runs the subflow's tasks on a Dask
cluster through prefect-dask (``CODEFLOW_DASK_ADDRESS``, which needs ``REDIS_URL``, or a
temporary LocalCluster of worker processes); otherwise the flow keeps its own thread pool.

    sync_repositories -> per due entry: checkout-repository -> vectorize_repository (subflow)
"""

from __future__ import annotations

import time
from typing import Any, cast

from prefect import Flow, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner

from config import Settings, load_settings
from config.errors import SettingsError, SyncFailed
from flows.automations import refuse_repeated_start
from flows.vectorize import vectorize_repository
from tasks.pipeline.dask_workers import NEEDS_REDIS
from tasks.pipeline.hooks import FLOW_HOOKS, TASK_HOOKS
from tasks.redis_io.connections import redis_url_for
from tasks.repo.registry import (
    Checkouts,
    RegisteredRepo,
    Registry,
    default_name,
    is_due,
    registry_for,
)
from tasks.repo.source_params import Source, check_branch, check_names, parse_source

_FAILURE_PREFIXES = ("Flow run encountered an exception: ", "Task run encountered an exception: ")


def task_runner_for(settings: Settings) -> TaskRunner[Any] | None:
    """The task runner ``settings`` ask for; ``None`` keeps the flow's own thread pool.

    Raises :class:`SettingsError` for a Dask scheduler without ``REDIS_URL``: its workers
    could not reach this machine's embedded Redis."""
    if settings.task_runner != "dask":
        return None
    from prefect_dask.task_runners import DaskTaskRunner

    if settings.dask_address:
        if settings.redis_url is None:
            message = f"CODEFLOW_DASK_ADDRESS is set but {NEEDS_REDIS}"
            raise SettingsError(message, variable="REDIS_URL")
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(settings))


def local_cluster_kwargs(settings: Settings) -> dict[str, Any]:
    """A LocalCluster of ``CODEFLOW_DASK_WORKERS`` single-threaded worker processes, as a
    cluster of other machines would run them (tasks pickled, nothing shared but Redis and
    the store); their state hooks publish to the flow's Redis, embedded or not."""
    return {
        "n_workers": settings.dask_workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "env": {"REDIS_URL": redis_url_for(settings)},
    }


def vectorize_flow(settings: Settings) -> Flow[..., dict[str, Any]]:
    """``vectorize_repository`` on the configured task runner (use this at every entry point)."""
    runner = task_runner_for(settings)
    if runner is None:
        return vectorize_repository
    return vectorize_repository.with_options(task_runner=runner)


@task(
    name="checkout-repository",
    retries=2,
    retry_delay_seconds=[2, 10],
    cache_policy=NO_CACHE,
    persist_result=False,
    **TASK_HOOKS,
)
def checkout_repository(settings: Settings, url: str, name: str, branch: str | None) -> str:
    """Clone ``url`` into CODEFLOW_HOME/repos/``name`` or fetch it; returns the work tree."""
    return str(Checkouts(settings.home).ensure(url, name, branch))


@flow(name="vectorize_source", **FLOW_HOOKS)
def vectorize_source(source: str, branch: str | None = None, full: bool = False) -> dict[str, Any]:
    """Index one repository incrementally: a folder on the worker's machine or a git URL.

    Args:
        source: A git work tree on the worker's machine (absolute path), or a git URL
            (https://, ssh://, git://, file:// or user@host:path), cloned or fetched into
            CODEFLOW_HOME/repos on the worker.
        branch: For a URL, the branch to check out (default: the remote's default branch);
            for a folder, the run fails unless this branch is checked out there.
        full: Ignore what is already indexed and scan every file.
    """
    refuse_repeated_start(flow_run.run_count)  # a run that keeps losing its worker stops
    settings = load_settings()
    target, wanted = parse_source(source), check_branch(branch)
    path = _work_tree(settings, target, wanted)
    run_id = str(flow_run.get_id() or "")
    return vectorize_flow(settings)(path, branch=wanted, full=full, trace_id=run_id or None)


def _work_tree(settings: Settings, target: Source, branch: str | None) -> str:
    if not target.is_url:
        return target.value
    known = [e for e in registry_for(settings).find(target.value) if e.branch == branch]
    name = known[0].name if known else default_name(target, branch)
    return checkout_repository(settings, target.value, name, branch)


@flow(name="sync_repositories", **FLOW_HOOKS)
def sync_repositories(names: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Fetch and re-index the registered repositories that are due (see `codeflow repo`).

    Args:
        names: Only these registered repositories (default: every one that is due).
        force: Sync every chosen repository even if its own schedule says it is not due.
    """
    refuse_repeated_start(flow_run.run_count)  # a run that keeps losing its worker stops
    settings = load_settings()
    registry = registry_for(settings)
    entries = registry.entries()
    wanted = check_names(names, [e.name for e in entries])
    now = time.time()
    chosen = [
        e
        for e in entries
        if (wanted is None or e.name in wanted) and (force or wanted or is_due(e, now))
    ]
    outcomes = {e.name: _sync_one(settings, registry, e, now) for e in chosen}
    failed = {name: o["error"] for name, o in outcomes.items() if "error" in o}
    if failed:
        reasons = "; ".join(f"{name}: {error}" for name, error in failed.items())
        message = f"{len(failed)} of {len(outcomes)} repositories failed to sync: {reasons}"
        raise SyncFailed(message, failures=failed)
    return {"synced": outcomes, "not_due": sorted(e.name for e in entries if e not in chosen)}


def _sync_one(
    settings: Settings, registry: Registry, entry: RegisteredRepo, now: float
) -> dict[str, Any]:
    """Sync one entry; a failure is recorded and returned, so the others still run."""
    path: str | None = entry.source
    error: str | None = None
    if entry.kind == "url":
        fetched = checkout_repository(
            settings, entry.source, entry.name, entry.branch, return_state=True
        )
        path, error = _outcome(fetched)
    summary: dict[str, Any] = {}
    if path is not None and error is None:
        trace_id = str(flow_run.get_id() or "") or None
        indexed = vectorize_flow(settings)(
            path, branch=entry.branch, trace_id=trace_id, return_state=True
        )
        result, error = _outcome(cast(State[Any], indexed))
        summary = result if isinstance(result, dict) else {}
    registry.record(entry.name, at=now, commit=summary.get("commit"), error=error)
    if error is not None:
        return {"error": error}
    return {k: summary.get(k) for k in ("commit", "files_changed", "chunks_embedded")}


def _outcome(state: State[Any]) -> tuple[Any, str | None]:
    """``(result, None)`` for a completed run, ``(None, reason)`` otherwise."""
    if state.is_completed():
        return state.result(), None
    message = state.message or str(state.name or state.type.value)
    for prefix in _FAILURE_PREFIXES:
        message = message.removeprefix(prefix)
    return None, message[:300]
