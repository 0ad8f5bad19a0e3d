"""``codeflow sandbox build-image`` and ``codeflow sandbox run FILE|-``."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from config.errors import ConfigError
from flows.service.client import ServiceClient

if TYPE_CHECKING:
    from config import Settings


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
    run.set_defaults(handler=run_in_sandbox, remote=remote_run)


def run_build_image(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.sandbox.image import build_image

    name = settings.sandbox_image.split(":", 1)[0]
    tag = build_image(name, cache_dir=settings.home / "sandbox", progress=_progress)
    print(tag)
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _request(args: argparse.Namespace) -> dict[str, Any]:
    """The run as the service takes it: the program's bytes (base64) and its limits."""
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
    return {
        "code_b64": base64.b64encode(data).decode(),
        "timeout_s": args.timeout,
        "memory_mb": args.memory,
        "use_cache": not args.no_cache,
        "ast_check": not args.no_ast_check,
        "runtime": args.runtime,
    }


def run_in_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from flows.service import operations

    request = _request(args)
    if args.runtime is not None:
        settings = settings.model_copy(update={"sandbox_runtime": args.runtime})
    runs = isinstance(operations.program_text(base64.b64decode(request["code_b64"])), str)
    with _prefect_api(settings) if runs else contextlib.nullcontext():
        result, status = operations.sandbox_run(settings, **request, prepare=not runs)
    _print_result(result, args.json)
    return status


@contextlib.contextmanager
def _prefect_api(settings: Settings) -> Iterator[None]:
    """Prefect's temporary API, started while Docker is checked and leftovers swept."""
    from flows.cli.prefect_api import start_prefect_api
    from flows.service.operations import prepare_docker

    api = start_prefect_api(settings)
    prepare_docker(settings)
    api.ready()
    with api.flow_runs():
        yield


def remote_run(args: argparse.Namespace, remote: ServiceClient) -> int:
    result, status = remote.call("sandbox", _request(args))
    _print_result(result, args.json)
    return int(status)


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    print(
        f"[{result['status']}] exit {result['exit_code']} in {result['duration_s']:.2f} s"
        + (" (cached)" if result["cached"] else ""),
        file=sys.stderr,
    )
