"""Pipeline 2: ``run_sandboxed`` executes untrusted Python in a hardened, disposable container.

pre-validate (AST policy) -> cached result? -> execute in a fresh container (isolation,
limits, post-validation, removal) -> record (cache + ``sandbox.result`` event)
"""

from __future__ import annotations

import base64
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from config import load_settings
from tasks.events.model import make_event
from tasks.pipeline.hooks import FLOW_HOOKS
from tasks.pipeline.sandbox_tasks import cached_result, execute, pre_validate, record
from tasks.sandbox.docker_runtime import DockerRuntime
from tasks.sandbox.models import ExecutionRequest, ExecutionResult, Limits, Violation
from tasks.services import runtime


@flow(name="run_sandboxed", **FLOW_HOOKS)
def run_sandboxed(
    code: str,
    *,
    stdin: str = "",
    files: dict[str, str] | None = None,
    timeout_s: float | None = None,
    memory_mb: int = 512,
    use_cache: bool = True,
    ast_check: bool = True,
) -> dict[str, Any]:
    """Run ``code``; ``files`` maps names to base64 contents placed beside it in /tmp/work."""
    settings = load_settings()
    violations = pre_validate(code) if ast_check else []
    if violations:
        result = ExecutionResult.blocked([Violation(**v) for v in violations])
        return _finish(result, cached=False)
    limits = Limits(timeout_s=timeout_s or settings.sandbox_timeout_s, memory_mb=memory_mb)
    request = ExecutionRequest(
        code=code,
        stdin=stdin.encode(),
        files={name: base64.b64decode(data) for name, data in (files or {}).items()},
        limits=limits,
    )
    key = "r:" + request.content_hash(DockerRuntime(image=settings.sandbox_image).check())
    hit = cached_result(settings, key) if use_cache else None
    if hit is not None:
        return _finish(ExecutionResult.from_dict(hit), cached=True)
    result = execute(settings, request)
    record(settings, key, result)
    return _finish(result, cached=False)


def _finish(result: ExecutionResult, *, cached: bool) -> dict[str, Any]:
    out = {**result.to_dict(), "cached": cached}
    event = make_event(
        "sandbox.result",
        flow_run_id=str(flow_run.get_id() or ""),
        flow_name="run_sandboxed",
        status=result.status,
        exit_code=result.exit_code,
        duration_s=round(result.duration_s, 3),
        truncated=result.truncated,
        cached=cached,
    )
    runtime(load_settings()).bus.publish(event)
    return out
