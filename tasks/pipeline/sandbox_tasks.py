"""The sandbox flow's Prefect tasks: one per layer, a few lines each.

Layer 1 (AST policy) is a courtesy for early, readable feedback; the container (layers 2-4,
inside :class:`~tasks.sandbox.docker_runtime.DockerRuntime`) is the security boundary.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from config import Settings
from tasks.pipeline.hooks import TASK_HOOKS
from tasks.sandbox.docker_runtime import DockerRuntime
from tasks.sandbox.models import ExecutionRequest, ExecutionResult
from tasks.sandbox.policy import check_code
from tasks.services import runtime

_PLAIN: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, **TASK_HOOKS}


@task(name="pre-validate", **_PLAIN)
def pre_validate(code: str) -> list[dict[str, Any]]:
    return [v.to_dict() for v in check_code(code)]


@task(name="cached-result", **_PLAIN)
def cached_result(settings: Settings, key: str) -> dict[str, Any] | None:
    value = runtime(settings).sandbox_cache.get(key)
    return value if isinstance(value, dict) else None


@task(name="execute-in-container", retries=1, retry_delay_seconds=1, **_PLAIN)
def execute(settings: Settings, request: ExecutionRequest) -> ExecutionResult:
    """Isolation, limits and post-validation: one fresh container, verified, then removed."""
    return DockerRuntime(image=settings.sandbox_image).run(request)


@task(name="record-result", **_PLAIN)
def record(settings: Settings, key: str, result: ExecutionResult) -> None:
    """Cache what is deterministic (never timeouts or infrastructure errors)."""
    if result.cacheable:
        runtime(settings).sandbox_cache.set(key, result.to_dict())
