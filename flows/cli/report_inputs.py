"""What ``codeflow report`` reads, each source on its own: one that cannot be read (Redis or
Prefect's API away) leaves a note in the report instead of failing it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from config.errors import CodeflowError

if TYPE_CHECKING:
    from config import Settings
    from flows.cli.prefect_api import PrefectApi
    from tasks.reports.frames import Report, ReportInputs

log = logging.getLogger(__name__)


def gather(settings: Settings, since: float, until: float, repo_id: str | None) -> Report:
    """Read every source and build the report."""
    from flows.cli.prefect_api import start_prefect_api

    api = start_prefect_api(settings)  # before anything imports Prefect; starts meanwhile
    from tasks.reports.frames import ReportInputs, build_report

    inputs = ReportInputs(since=since, until=until, repo_id=repo_id)
    _codeflow_sources(settings, inputs)
    _prefect_runs(api, inputs)
    return build_report(inputs)


def _codeflow_sources(settings: Settings, inputs: ReportInputs) -> None:
    from flows.cli.cache_commands import redis_client
    from tasks.redis_io.connections import read_cache_stats
    from tasks.redis_io.outage import OUTAGE_ERRORS
    from tasks.reports.sources import read_events, read_manifests
    from tasks.services import services_for

    svc = services_for(settings)
    inputs.manifests = read_manifests(svc.manifests)
    try:
        inputs.events = read_events(svc.bus, inputs.since, inputs.until)
        inputs.cache_stats = read_cache_stats(redis_client(settings))
    except OUTAGE_ERRORS as exc:
        _unreadable(inputs, exc)
    except CodeflowError as exc:  # RedisUnavailable from the bus
        _unreadable(inputs, exc)


def _unreadable(inputs: ReportInputs, exc: Exception) -> None:
    inputs.notes.append(f"codeflow's events and cache statistics could not be read: {exc}")


def _prefect_runs(api: PrefectApi, inputs: ReportInputs) -> None:
    from tasks.reports.sources import read_prefect_runs

    try:
        api.ready()
        inputs.prefect_runs, inputs.prefect_tasks = read_prefect_runs(inputs.since)
    except Exception as exc:  # Prefect away or refusing: the events still tell of the runs
        log.debug("reading Prefect's runs failed", exc_info=True)
        inputs.notes.append(
            f"Prefect's API could not be read ({type(exc).__name__}: {exc}); flow runs come "
            "from codeflow's events, without task runs"
        )
