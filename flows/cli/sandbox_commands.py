"""``codeflow sandbox build-image`` and ``codeflow sandbox run FILE|-``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from config import Settings
from config.errors import ConfigError
from tasks.sandbox.models import ExecutionResult, Violation
from tasks.sandbox.policy import syntax_error


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = commands.add_parser("sandbox", help="run untrusted Python in a hardened container")
    sub = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    build = sub.add_parser("build-image", help="build the sandbox image offline (debootstrap)")
    build.set_defaults(handler=run_build_image)
    run = sub.add_parser("run", help="run a Python file (or - for stdin) in a fresh container")
    run.add_argument("file", help="a Python file, or - to read the code from stdin")
    run.add_argument(
        "--timeout", type=float, help="wall-clock seconds (default SANDBOX_TIMEOUT_MS)"
    )
    run.add_argument("--memory", type=int, default=512, help="memory (= memory+swap) in MB")
    run.add_argument("--no-cache", action="store_true", help="always execute; don't reuse results")
    run.add_argument(
        "--no-ast-check", action="store_true", help="skip the AST courtesy check (not a boundary)"
    )
    run.add_argument(
        "--runtime", choices=["runc", "runsc"], help="container runtime (default SANDBOX_RUNTIME)"
    )
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.set_defaults(handler=run_in_sandbox)


def run_build_image(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.sandbox.image import build_image

    name = settings.sandbox_image.split(":", 1)[0]
    tag = build_image(name, cache_dir=settings.home / "sandbox", progress=_progress)
    print(tag)
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _read_code(source: str) -> str | ExecutionResult:
    """The file's code, or the ``rejected`` result of code that is not Python at all (bytes
    that are not UTF-8, a syntax error): that is about the user's code, so it is a result,
    not a tool error. A file that cannot be read is a tool error."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else open(source, "rb").read()  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from None
    try:
        code = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return ExecutionResult.rejected(Violation(line, 0, "encoding", "not UTF-8 text"))
    problem = syntax_error(code)
    return ExecutionResult.rejected(problem) if problem is not None else code


def run_in_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    if args.timeout is not None and not 0 < args.timeout <= 3600:
        raise ConfigError("--timeout must be between 0 and 3600 seconds")
    code = _read_code(args.file)
    if isinstance(code, ExecutionResult):  # nothing to run: no engine, no flow needed
        _print_result({**code.to_dict(), "cached": False}, args.json)
        return 3
    from flows.cli.prefect_api import start_prefect_api
    from tasks.sandbox.docker_runtime import DockerRuntime

    if args.runtime is not None:
        settings = settings.model_copy(update={"sandbox_runtime": args.runtime})
    api = start_prefect_api(settings)  # starts while Docker is checked
    docker_runtime = DockerRuntime(image=settings.sandbox_image, runtime=settings.sandbox_runtime)
    docker_runtime.check()  # Docker reachable, image built: one clear line otherwise
    docker_runtime.sweep()  # containers left by a crashed run
    from flows.sandbox_run import run_sandboxed

    api.ready()
    with api.flow_runs():
        result = run_sandboxed(
            code,
            timeout_s=args.timeout,
            memory_mb=args.memory,
            use_cache=not args.no_cache,
            ast_check=not args.no_ast_check,
            runtime=settings.sandbox_runtime,
        )
    _print_result(result, args.json)
    return 0 if result["status"] == "ok" else 3


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        keys = (
            "status",
            "exit_code",
            "stdout",
            "stderr",
            "duration_s",
            "violations",
            "cached",
            "truncated",
            "oom_killed",
            "timed_out",
            "run_id",
            "image_id",
            "runtime",
            "seccomp",
            "resources",
        )
        print(json.dumps({k: result.get(k) for k in keys}))
        return
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    print(
        f"[{result['status']}] exit {result['exit_code']} in {result['duration_s']:.2f} s"
        + (" (cached)" if result["cached"] else ""),
        file=sys.stderr,
    )
