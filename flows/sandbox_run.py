"""Pipeline 2: ``run_sandboxed`` executes untrusted Python in a hardened, disposable container.

pre-validate (AST policy) -> cached result? -> execute in a fresh container (isolation,
limits, post-validation, removal) -> record (cache + ``sandbox.result`` event); the logic is
:func:`~tasks.pipeline.sandbox_steps.run_program`.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from prefect import flow
from prefect.runtime import flow_run

from config import load_settings
from flows.automations import refuse_repeated_start
from tasks.events.model import make_event
from tasks.pipeline.hooks import FLOW_HOOKS
from tasks.pipeline.sandbox_steps import Program, result_fields, run_program
from tasks.pipeline.sandbox_tasks import PrefectSandboxSteps
from tasks.sandbox.models import Limits
from tasks.services import services_for


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
    runtime: Literal["runc", "runsc"] | None = None,
) -> dict[str, Any]:
    """Run ``code``; ``files`` maps names to base64 contents placed beside it in /tmp/work.
    ``runtime`` overrides SANDBOX_RUNTIME for this run."""
    refuse_repeated_start(flow_run.run_count)  # a run that keeps losing its worker stops
    settings = load_settings()
    if runtime is not None:
        settings = settings.model_copy(update={"sandbox_runtime": runtime})
    program = Program(
        code=code,
        stdin=stdin.encode(),
        files={name: base64.b64decode(data) for name, data in (files or {}).items()},
        limits=Limits(timeout_s=timeout_s or settings.sandbox_timeout_s, memory_mb=memory_mb),
        use_cache=use_cache,
        ast_check=ast_check,
    )
    result, cached = run_program(PrefectSandboxSteps(settings), program)
    run_id = str(flow_run.get_id() or "")
    event = make_event(
        "sandbox.result",
        flow_run_id=run_id,
        flow_name="run_sandboxed",
        **result_fields(result, cached),
    )
    services_for(settings).bus.publish(event)
    return {**result.to_dict(), "cached": cached}
