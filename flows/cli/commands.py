"""The ``codeflow`` command line: a thin layer over flows and tasks.

Heavy libraries (Prefect, LanceDB, the embedder, Docker) are imported inside the command that
needs them, so ``codeflow --help`` and the search path stay fast. Every user mistake ends with
one line on stderr (``codeflow: error: ...``) and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from config.environment import uses_service
from config.errors import CodeflowError, SettingsError
from config.native import quiet_blas_threads

if TYPE_CHECKING:
    from config import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]


def package_version() -> str:
    try:
        return version("codeflow")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codeflow",
        description="Keep code searchable and run untrusted code safely, as Prefect flows.",
    )
    parser.add_argument("--version", action="version", version=f"codeflow {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from flows.cli import (
        cache_commands as cli_cache,
    )
    from flows.cli import (
        index_commands as cli_index,
    )
    from flows.cli import (
        repo_commands as cli_repo,
    )
    from flows.cli import (
        report_commands as cli_report,
    )
    from flows.cli import (
        sandbox_commands as cli_sandbox,
    )
    from flows.cli import (
        serve_commands as cli_serve,
    )
    from flows.cli import (
        service_commands as cli_service,
    )

    cli_index.register(commands)
    cli_sandbox.register(commands)
    cli_serve.register(commands)
    cli_service.register(commands)
    cli_repo.register(commands)
    cli_cache.register(commands)
    cli_report.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_blas_threads()  # before numpy loads (the commands import it lazily)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return dispatch(args)
    except (SettingsError, CodeflowError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", status=130)
    except RuntimeError as exc:
        if "Failed to reach API" not in str(exc):  # Prefect's words for a server that is down
            raise
        return fail(f"{exc}: is the Prefect server at PREFECT_API_URL running?")
    except Exception as exc:
        from tasks.redis_io.outage import as_unavailable

        outage = as_unavailable(exc)
        if outage is None:
            raise
        return fail(str(outage))


def dispatch(args: argparse.Namespace) -> int:
    """Through the local service when the command has a remote form and ``CODEFLOW_SERVICE``
    is ``auto`` (the default), without loading the settings model; else in this process."""
    remote = getattr(args, "remote", None)
    if remote is not None and uses_service():
        from flows.cli.remote import remote_for

        client = remote_for()
        if client is not None:
            return int(remote(args, client))
    from config import load_settings

    settings = load_settings()  # a bad value (CODEFLOW_SERVICE=yes too) is one clear line
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per Prefect API call
    quiet_redis_outages()  # this process talks to Redis itself
    handler: Handler = args.handler
    return handler(args, settings)


def quiet_redis_outages() -> None:
    """One line, not a traceback, for each log record about Redis being unreachable."""
    from tasks.redis_io.outage import RedisOutageLogs

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedisOutageLogs())


def fail(message: str, status: int = 1) -> int:
    print(f"codeflow: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
