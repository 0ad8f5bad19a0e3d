"""The sandbox pipeline's logic, over four steps it does not know the runner of.

    pre-validate (AST policy) -> cached result? -> execute in a fresh container -> record

:func:`run_program` is what the ``run_sandboxed`` flow does; the flow hands it
:class:`~tasks.pipeline.sandbox_tasks.PrefectSandboxSteps` (one task run per layer), unit
tests hand it :class:`InlineSandboxSteps` on the in-memory services.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tasks.sandbox.models import ExecutionRequest, ExecutionResult, Limits, Violation
from tasks.sandbox.policy import check_code, syntax_error

if TYPE_CHECKING:
    from tasks.services import Services


class SandboxSteps(Protocol):
    def pre_validate(self, code: str) -> list[Violation]: ...

    def image_id(self) -> str: ...

    def cached(self, key: str) -> ExecutionResult | None: ...

    def execute(self, request: ExecutionRequest) -> ExecutionResult: ...

    def record(self, key: str, result: ExecutionResult) -> None: ...


@dataclass(frozen=True)
class Program:
    """What to run, and how."""

    code: str
    stdin: bytes = b""
    files: Mapping[str, bytes] | None = None
    limits: Limits = field(default_factory=Limits)
    use_cache: bool = True
    ast_check: bool = True


def run_program(steps: SandboxSteps, program: Program) -> tuple[ExecutionResult, bool]:
    """The program's result, and whether it came from the cache. Code that is not Python
    (``rejected``) or that the AST policy refuses (``blocked``) never reaches a container;
    timeouts and infrastructure errors are never cached."""
    problem = syntax_error(program.code)
    if problem is not None:
        return ExecutionResult.rejected(problem), False
    violations = steps.pre_validate(program.code) if program.ast_check else []
    if violations:
        return ExecutionResult.blocked(violations), False
    request = ExecutionRequest(
        code=program.code,
        stdin=program.stdin,
        files=dict(program.files or {}),
        limits=program.limits,
    )
    key = "r:" + request.content_hash(steps.image_id())
    hit = steps.cached(key) if program.use_cache else None
    if hit is not None:
        return hit, True
    result = steps.execute(request)
    steps.record(key, result)
    return result, False


def result_fields(result: ExecutionResult, cached: bool) -> dict[str, Any]:
    """What a ``sandbox.result`` event says about a result (never its output)."""
    return {
        "status": result.status,
        "exit_code": result.exit_code,
        "duration_s": round(result.duration_s, 3),
        "truncated": result.truncated,
        "cached": cached,
    }


@dataclass
class InlineSandboxSteps:
    """The steps as plain calls on ``svc`` (its sandbox runtime and sandbox cache)."""

    svc: Services

    def pre_validate(self, code: str) -> list[Violation]:
        return check_code(code)

    def image_id(self) -> str:
        return self.svc.sandbox.check()

    def cached(self, key: str) -> ExecutionResult | None:
        value = self.svc.sandbox_cache.get(key)
        return ExecutionResult.from_dict(value) if isinstance(value, dict) else None

    def execute(self, request: ExecutionRequest) -> ExecutionResult:
        return self.svc.sandbox.run(request)

    def record(self, key: str, result: ExecutionResult) -> None:
        if result.cacheable:
            self.svc.sandbox_cache.set(key, result.to_dict())
