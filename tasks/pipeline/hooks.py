"""Prefect state hooks that publish flow and task state changes on codeflow's event bus.

Hooks run outside the run context, so they log with plain ``logging``; they never raise (a
failed publish must not change a run's outcome). The repository a run works on is recorded
by the flow body with :func:`remember_repo` so state events can carry ``repo_id``.
"""

from __future__ import annotations

import logging
from typing import Any

from config import load_settings
from tasks.events.model import make_event
from tasks.pipeline.dask_workers import in_dask_worker
from tasks.services import services_for

log = logging.getLogger(__name__)
_repo_of_run: dict[str, str] = {}


def remember_repo(flow_run_id: str, repo_id: str) -> None:
    _repo_of_run[flow_run_id] = repo_id


def publish(kind: str, **fields: Any) -> None:
    """Publish on the bus of this process's settings; in a Dask worker without REDIS_URL
    (whose task then fails, saying so) nothing: an embedded Redis there would be its own."""
    try:
        settings = load_settings()
        if settings.redis_url is None and in_dask_worker():
            return
        services_for(settings).bus.publish(make_event(kind, **fields))
    except Exception:  # a hook must never change the run's outcome
        log.exception("could not publish %s event", kind)


def flow_state(flow: Any, flow_run: Any, state: Any) -> None:
    run_id = str(flow_run.id)
    publish(
        "flow_run.state",
        flow_run_id=run_id,
        flow_name=flow.name,
        flow_run_name=flow_run.name,
        state=state.name,
        message=(state.message or "")[:500] or None,
        repo_id=_repo_of_run.get(run_id),
    )


def task_state(task: Any, task_run: Any, state: Any) -> None:
    run_id = str(task_run.flow_run_id) if task_run.flow_run_id else None
    name = state.name
    if name == "Running" and task_run.run_count > 1:
        name = "Retrying"
    publish(
        "task_run.state",
        flow_run_id=run_id,
        flow_name=_flow_name(),
        task_run_id=str(task_run.id),
        task_name=task.name,
        state=name,
        attempt=task_run.run_count or None,
        message=(state.message or "")[:500] if state.is_failed() else None,
        repo_id=_repo_of_run.get(run_id or ""),
    )


def _flow_name() -> str | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context.flow.name if context and context.flow else None


FLOW_HOOKS: dict[str, Any] = {
    "on_running": [flow_state],
    "on_completion": [flow_state],
    "on_failure": [flow_state],
    "on_crashed": [flow_state],
    "on_cancellation": [flow_state],
}
TASK_HOOKS: dict[str, Any] = {
    "on_running": [task_state],
    "on_completion": [task_state],
    "on_failure": [task_state],
}
