"""Reading what a report is made of: codeflow's event stream, Prefect's flow and task runs,
the cache statistics and the index manifests."""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from tasks.events import EventLog
from tasks.index.manifests import IndexManifest, ManifestStorage
from tasks.reports.history import Event, Row

#: The event kinds reports read (progress and task events are left in the stream).
KINDS = frozenset({"flow_run.state", "index.summary", "sandbox.result"})
PAGE = 5000
_PREFECT_PAGE = 200  # the most Prefect's API returns per request
_RUN_SUFFIX = re.compile(r"-[0-9a-z]{3}$")  # Prefect names task runs <task name>-<3 chars>


def read_events(bus: EventLog, since: float, until: float | None = None) -> list[Event]:
    """Events of :data:`KINDS` published from ``since`` (seconds since the epoch) on; the
    stream's IDs are millisecond timestamps, so reading starts at the right place."""
    found: list[Event] = []
    after = f"{max(0, int(since * 1000) - 1)}-0"
    while True:
        page = bus.read(after, count=PAGE)
        if not page:
            return found
        after = page[-1][0]
        for _, event in page:
            if until is not None and float(event.get("ts") or 0) > until:
                return found
            if event.get("kind") in KINDS:
                found.append(event)


def read_manifests(store: ManifestStorage) -> list[IndexManifest]:
    return list(store.all())


def read_prefect_runs(since: float) -> tuple[list[Row], list[Row]]:
    """Flow runs that started since ``since`` and their task runs, from Prefect's API (the
    configured server, or the temporary one the command line started)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = list(_pages(lambda offset: _flow_runs(client, since, offset)))
        flows = _names(client, "flows", {r.flow_id for r in runs})
        deployments = _names(client, "deployments", {r.deployment_id for r in runs})
        flow_rows = [_flow_row(r, flows, deployments) for r in runs]
        ids = [r.id for r in runs]
        tasks = [
            _task_row(task)
            for start in range(0, len(ids), _PREFECT_PAGE)
            for task in _pages(_task_reader(client, ids[start : start + _PREFECT_PAGE]))
        ]
    return flow_rows, tasks


def _task_reader(client: Any, flow_run_ids: list[uuid.UUID]) -> Callable[[int], list[Any]]:
    return lambda offset: _task_runs(client, flow_run_ids, offset)


def _pages(read: Callable[[int], list[Any]]) -> Iterator[Any]:
    offset = 0
    while True:
        page = read(offset)
        yield from page
        if len(page) < _PREFECT_PAGE:
            return
        offset += len(page)


def _flow_runs(client: Any, since: float, offset: int) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStartTime

    after = datetime.datetime.fromtimestamp(since, datetime.UTC)
    started = FlowRunFilterStartTime.model_validate({"after_": after})
    runs: list[Any] = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(start_time=started), limit=_PREFECT_PAGE, offset=offset
    )
    return runs


def _task_runs(client: Any, flow_run_ids: list[uuid.UUID], offset: int) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    of_runs = FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
    tasks: list[Any] = client.read_task_runs(
        flow_run_filter=of_runs, limit=_PREFECT_PAGE, offset=offset
    )
    return tasks


def _names(client: Any, kind: str, ids: set[Any]) -> dict[Any, str]:
    """Names of flows or deployments by ID."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowFilter,
        FlowFilterId,
    )

    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    if kind == "flows":
        found = client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=wanted)))
    else:
        found = client.read_deployments(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=wanted))
        )
    return {item.id: item.name for item in found}


def _flow_row(run: Any, flows: dict[Any, str], deployments: dict[Any, str]) -> Row:
    start, end = _epoch(run.start_time), _epoch(run.end_time)
    return {
        "flow_run_id": str(run.id),
        "flow": flows.get(run.flow_id, "unknown"),
        "deployment": deployments.get(run.deployment_id),
        "state": run.state.name if run.state else None,
        "start": start,
        "end": end,
        "duration_s": _duration(run, start, end),
    }


def _task_row(task: Any) -> Row:
    start, end = _epoch(task.start_time), _epoch(task.end_time)
    return {
        "flow_run_id": str(task.flow_run_id),
        "task": _RUN_SUFFIX.sub("", task.name),
        "state": task.state.name if task.state else None,
        "start": start,
        "duration_s": _duration(task, start, end),
    }


def _duration(run: Any, start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    total = run.total_run_time.total_seconds() if run.total_run_time else 0.0
    return round(total or end - start, 3)


def _epoch(moment: datetime.datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None
