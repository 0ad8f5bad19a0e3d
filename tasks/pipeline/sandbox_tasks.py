"""The sandbox flow's Prefect tasks: one per layer, a few lines each over
:class:`~tasks.pipeline.sandbox_steps.InlineSandboxSteps`.

Layer 1 (AST policy) is a courtesy for early, readable feedback; the container (layers 2-4,
inside :class:`~tasks.sandbox.docker_runtime.DockerRuntime`) is the security boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from config import Settings
from tasks.pipeline.hooks import TASK_HOOKS
from tasks.pipeline.sandbox_steps import InlineSandboxSteps
from tasks.sandbox.models import ExecutionRequest, ExecutionResult, Violation
from tasks.services import services_for

_PLAIN: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, **TASK_HOOKS}


def _steps(settings: Settings) -> InlineSandboxSteps:
    return InlineSandboxSteps(services_for(settings))


@task(name="pre-validate", **_PLAIN)
def pre_validate(settings: Settings, code: str) -> list[Violation]:
    return _steps(settings).pre_validate(code)


@task(name="cached-result", **_PLAIN)
def cached_result(settings: Settings, key: str) -> ExecutionResult | None:
    return _steps(settings).cached(key)


@task(name="execute-in-container", retries=1, retry_delay_seconds=1, **_PLAIN)
def execute(settings: Settings, request: ExecutionRequest) -> ExecutionResult:
    """Isolation, limits and post-validation: one fresh container, verified, then removed."""
    return _steps(settings).execute(request)


@task(name="record-result", **_PLAIN)
def record(settings: Settings, key: str, result: ExecutionResult) -> None:
    """Cache what is deterministic (never timeouts or infrastructure errors)."""
    _steps(settings).record(key, result)


@dataclass
class PrefectSandboxSteps:
    """The steps as task runs of the current flow (a
    :class:`~tasks.pipeline.sandbox_steps.SandboxSteps`)."""

    settings: Settings

    def pre_validate(self, code: str) -> list[Violation]:
        return pre_validate(self.settings, code)

    def image_id(self) -> str:
        return _steps(self.settings).image_id()

    def cached(self, key: str) -> ExecutionResult | None:
        return cached_result(self.settings, key)

    def execute(self, request: ExecutionRequest) -> ExecutionResult:
        return execute(self.settings, request)

    def record(self, key: str, result: ExecutionResult) -> None:
        record(self.settings, key, result)
