"""The service process: ``python -m flows.service`` (started on demand by the client, or by
``codeflow service start``), or ``codeflow serve`` in the foreground.

Start-up, in order: take ``service.lock`` (held for life; another holder means a service
already runs), start the persistent Prefect API (its UI included) so it boots while the rest
starts, listen on the Unix socket (a stale socket of a killed service is replaced), start the
realtime app (HTTP API, WebSocket, dashboard, MCP at ``/mcp``) on ``CODEFLOW_SERVICE_PORT``,
write ``service.json``, then warm in the background: the flows' imports, the embedder, the
vector store and the sandbox's warm pool. Requests are taken from the first moment; those
that run flows wait for the Prefect API.

It stops on SIGTERM/SIGINT, ``codeflow service stop``, or after ``CODEFLOW_SERVICE_IDLE_S``
without requests; it then lets running requests finish (briefly), stops the Prefect API,
removes the warm pool's containers, the socket and ``service.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import IO, TYPE_CHECKING, Any, TextIO

import tornado.httpserver
import tornado.netutil
import tornado.web

from config import Settings, load_settings
from config.environment import apply_service_defaults, settings_digest
from config.prefect_env import prefect_api_url
from flows.service import local_api
from flows.service.paths import ServicePaths
from flows.service.runner import Runner, pid_info

if TYPE_CHECKING:
    from flows.cli.prefect_api import PrefectApi
    from server.main import Realtime

log = logging.getLogger("codeflow.service")

DRAIN_S = 10.0  # running requests get this long to finish at shutdown


def main() -> int:
    """``python -m flows.service``: the background service."""
    settings = load_settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(settings, port=settings.service_port, host="127.0.0.1")


def run(
    settings: Settings,
    *,
    port: int,
    host: str,
    idle_s: float | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the service until told to stop; ``out`` gets the dashboard URL (``codeflow
    serve``). Returns the exit status."""
    paths = ServicePaths.under(settings.home)
    paths.make()
    lock = _take_lock(paths)
    if lock is None:
        _already_running(paths, settings)
        return 0 if out is None else 1
    info = {**pid_info(), "fingerprint": settings_digest(), "home": str(settings.home)}
    apply_service_defaults()
    with open(paths.log, "ab") as prefect_log:
        prefect = _start_prefect(settings, prefect_log)
        runner = Runner(load_settings(), info)
        idle = settings.service_idle_s if idle_s is None else idle_s
        try:
            asyncio.run(_serve(runner, paths, prefect, port=port, host=host, out=out, idle_s=idle))
        finally:
            prefect.stop()
            runner.close()
            _close_services(runner.settings)
            paths.state.unlink(missing_ok=True)
    log.info("stopped (%s)", runner.stop_reason or "signal")
    return 0


def _already_running(paths: ServicePaths, settings: Settings) -> None:
    state = paths.read_state() or {}
    print(
        f"codeflow: a service already runs for {settings.home} (pid {state.get('pid', '?')}, "
        f"HTTP API {state.get('http_url', '?')}); `codeflow service stop` stops it",
        file=sys.stderr,
    )


def _take_lock(paths: ServicePaths) -> IO[str] | None:
    """``service.lock``, held until this process exits (the kernel releases it even on a
    kill), or None when another process holds it."""
    handle = open(paths.lock, "a")  # noqa: SIM115 - kept open for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _start_prefect(settings: Settings, log_file: IO[bytes]) -> PrefectApi:
    from flows.cli.prefect_api import start_prefect_server

    return start_prefect_server(settings, log_file)


async def _serve(
    runner: Runner,
    paths: ServicePaths,
    prefect: PrefectApi,
    *,
    port: int,
    host: str,
    out: TextIO | None,
    idle_s: float,
) -> None:
    runner.stopping = asyncio.Event()
    async with _local_socket(runner, paths), _realtime(runner, port, host) as realtime:
        runner.info.update(_urls(realtime, prefect))
        paths.write_state(runner.hello())
        if out is not None:
            print(f"codeflow realtime server: {realtime.dashboard_url()}", file=out, flush=True)
        warming = asyncio.get_running_loop().run_in_executor(None, _warm, runner, prefect)
        _on_signals(runner)
        idle = asyncio.create_task(_idle_watch(runner, idle_s))
        await runner.stopping.wait()
        idle.cancel()
        await _drain(runner)
        warming.cancel()


@contextlib.asynccontextmanager
async def _local_socket(runner: Runner, paths: ServicePaths) -> AsyncIterator[None]:
    app = tornado.web.Application(local_api.routes(runner))
    server = tornado.httpserver.HTTPServer(app)
    server.add_socket(tornado.netutil.bind_unix_socket(str(paths.socket), mode=0o600))
    log.info("listening on %s", paths.socket)
    try:
        yield
    finally:
        server.stop()
        paths.socket.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def _realtime(runner: Runner, port: int, host: str) -> AsyncIterator[Realtime]:
    from flows.service.mcp_tools import mcp_app
    from server.main import start_realtime
    from tasks.redis_io.connections import redis_url_for

    settings = runner.settings
    async with mcp_app(runner) as mcp:
        realtime = await start_realtime(
            settings, redis_url=redis_url_for(settings), port=port, host=host, mounts={"/mcp": mcp}
        )
        try:
            yield realtime
        finally:
            await realtime.stop()


def _urls(realtime: Realtime, prefect: PrefectApi) -> dict[str, Any]:
    base = realtime.base_url()
    api = prefect.url or prefect_api_url() or ""
    urls = {"http_url": base, "mcp_url": f"{base}/mcp", "prefect_api_url": api}
    return {**urls, "prefect_ui_url": api.removesuffix("/api")}


def _warm(runner: Runner, prefect: PrefectApi) -> None:
    """Import the flows while the Prefect API boots (both take seconds; two cores do them at
    once), wait for it, then load what searches and runs need."""
    try:
        for module in ("flows.sync", "flows.sandbox_run"):
            importlib.import_module(module)  # now, not on the first request
        prefect.ready()
    except Exception as exc:
        runner.flows_failed = f"the service's Prefect API did not start: {exc}"
        log.exception("Prefect API")
    finally:
        runner.ready_at = time.monotonic()
        runner.flows_ready.set()
    _warm_services(runner.settings)


def _warm_services(settings: Settings) -> None:
    """The embedder's weights, the vector store, the sandbox's pool: loaded now, so the
    first request does not wait for them. A backend that is unavailable is reported by the
    request that needs it, not here."""
    from tasks.services import services_for

    services = services_for(settings)
    for name in ("embedder", "store"):
        try:
            getattr(services, name)
        except Exception as exc:  # reported again, clearly, by the first request
            log.warning("not warmed: %s: %s", name, exc)
    try:
        from flows.service.operations import prepare_docker

        prepare_docker(settings)  # leftovers of a killed service swept before the pool fills
    except Exception as exc:
        log.warning("sandbox not warmed: %s", exc)
        return
    services.warm_sandbox()


def _close_services(settings: Settings) -> None:
    """The warm pool's containers removed (a no-op when none was started)."""
    from tasks.services import services_for

    services_for(settings).close()


def _on_signals(runner: Runner) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.request_stop, signal.Signals(signum).name)


async def _idle_watch(runner: Runner, idle_s: float) -> None:
    """Stop after ``idle_s`` seconds without a request (0: never)."""
    if idle_s <= 0:
        return
    while True:
        await asyncio.sleep(min(idle_s, 30.0))
        if runner.idle_for() >= idle_s:
            runner.request_stop(f"idle for {idle_s:g} s")
            return


async def _drain(runner: Runner) -> None:
    deadline = time.monotonic() + DRAIN_S
    while runner.active and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
