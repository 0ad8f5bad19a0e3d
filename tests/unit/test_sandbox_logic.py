"""The sandbox flow's logic (run_program) on the in-memory services and a scripted runtime."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from config import load_settings
from tasks.pipeline.sandbox_steps import InlineSandboxSteps, Program, run_program
from tasks.sandbox.models import ExecutionRequest, ExecutionResult, Limits
from tasks.sandbox.scripted_runtime import ScriptedRuntime
from tasks.services import Services, in_memory_services


def services(tmp_path: Path, runtime: ScriptedRuntime) -> Services:
    settings = load_settings({"CODEFLOW_HOME": str(tmp_path)})
    return in_memory_services(settings, tmp_path, sandbox=runtime)


def test_a_result_is_cached_and_reused(tmp_path: Path) -> None:
    runtime = ScriptedRuntime()
    steps = InlineSandboxSteps(services(tmp_path, runtime))
    first, cached_first = run_program(steps, Program("print(42)"))
    second, cached_second = run_program(steps, Program("print(42)"))
    assert (cached_first, cached_second) == (False, True)
    assert second == first and len(runtime.requests) == 1


def test_other_limits_or_stdin_are_another_run(tmp_path: Path) -> None:
    runtime = ScriptedRuntime()
    steps = InlineSandboxSteps(services(tmp_path, runtime))
    run_program(steps, Program("print(1)"))
    run_program(steps, Program("print(1)", limits=Limits(memory_mb=256)))
    run_program(steps, Program("print(1)", stdin=b"x"))
    assert len(runtime.requests) == 3


def test_no_cache_always_runs(tmp_path: Path) -> None:
    runtime = ScriptedRuntime()
    steps = InlineSandboxSteps(services(tmp_path, runtime))
    for _ in range(2):
        assert run_program(steps, Program("print(1)", use_cache=False))[1] is False
    assert len(runtime.requests) == 2


def test_refused_code_never_reaches_the_runtime(tmp_path: Path) -> None:
    runtime = ScriptedRuntime()
    result, cached = run_program(
        InlineSandboxSteps(services(tmp_path, runtime)), Program("import subprocess")
    )
    assert result.status == "blocked" and not cached and runtime.requests == []
    assert result.violations[0].rule == "import"


def test_without_the_ast_check_the_runtime_decides(tmp_path: Path) -> None:
    runtime = ScriptedRuntime()
    result, _ = run_program(
        InlineSandboxSteps(services(tmp_path, runtime)),
        Program("import subprocess", ast_check=False),
    )
    assert result.status == "ok" and len(runtime.requests) == 1


@pytest.mark.parametrize(("status", "cached_again"), [("timeout", False), ("error", True)])
def test_timeouts_are_never_cached(tmp_path: Path, status: str, cached_again: bool) -> None:
    def answer(request: ExecutionRequest) -> ExecutionResult:
        return ExecutionResult(status, 1, "", "", request.limits.timeout_s)  # type: ignore[arg-type]

    steps = InlineSandboxSteps(services(tmp_path, ScriptedRuntime(answer)))
    run_program(steps, Program("while True: pass"))
    assert run_program(steps, Program("while True: pass"))[1] is cached_again


def test_a_new_image_is_a_new_cache_key(tmp_path: Path) -> None:
    runtime = ScriptedRuntime(image_id="sha256:one")
    steps = InlineSandboxSteps(services(tmp_path, runtime))
    run_program(steps, Program("print(1)"))
    runtime.image_id = "sha256:two"
    assert run_program(steps, Program("print(1)"))[1] is False


def test_code_that_is_not_python_is_rejected_before_anything_runs(tmp_path: Path) -> None:
    runtime = ScriptedRuntime()
    steps = InlineSandboxSteps(services(tmp_path, runtime))
    for ast_check in (True, False):
        result, cached = run_program(steps, Program("x = 1\nif x\n", ast_check=ast_check))
        assert (result.status, result.exit_code, cached) == ("rejected", None, False)
        assert result.violations[0].line == 2 and result.violations[0].rule == "syntax"
    assert runtime.requests == []


def test_bytes_that_are_not_utf8_are_a_rejected_result() -> None:
    from flows.service.operations import program_text

    result = program_text(b"print(1)\ns = '\xe9t\xe9'\n")
    assert isinstance(result, dict) and result["status"] == "rejected"
    assert result["violations"][0]["line"] == 2 and "UTF-8" in result["stderr"]
    assert program_text(b"print('fine')\n") == "print('fine')\n"


def test_services_close_their_sandbox_once_and_build_it_again_on_use(tmp_path: Path) -> None:
    runtime = ScriptedRuntime()
    svc = services(tmp_path, runtime)
    assert svc.warm_sandbox() is False  # no pool asked for: nothing to start
    svc.close()
    assert runtime.closed == 0  # never built, nothing to close
    assert svc.sandbox is runtime
    svc.close()
    svc.close()
    assert runtime.closed == 1
    assert svc.sandbox is runtime and runtime.closed == 1


def test_services_dropped_unclosed_close_their_sandbox(tmp_path: Path) -> None:
    """An entry evicted from services_for's cache must not leave a warm pool running."""
    runtime = ScriptedRuntime()
    svc = services(tmp_path, runtime)
    assert svc.sandbox is runtime
    del svc
    gc.collect()
    assert runtime.closed == 1
