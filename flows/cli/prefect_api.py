"""Prefect's temporary API server, started early so it overlaps a command's own start-up.

Without ``PREFECT_API_URL``, Prefect runs each flow against a temporary API server that it
starts when the flow starts, and the flow waits the 3.5-10 s that server needs to answer
(the first start, which creates its database, is the slowest). A command such as
``codeflow index`` spends about as long before its flow begins: importing Prefect, LanceDB
and the flow, and checking its backends. :func:`start_prefect_api` starts
the same server (the same ``uvicorn`` command and environment Prefect's
``SubprocessASGIServer`` uses) as the command begins and points ``PREFECT_API_URL`` at it,
so both happen at once; :meth:`PrefectApi.ready` waits for it before the first flow, and
the server stops when the command exits, as Prefect's own does. Flows run inside
:meth:`PrefectApi.flow_runs`, which leaves out heartbeats nobody would read.

Nothing changes when the user points Prefect at a server (``PREFECT_API_URL`` in the
environment or in the active Prefect profile) or turns ephemeral mode off: then there is
nothing to start.

>>> api = start_prefect_api(settings)   # before anything imports prefect  # doctest: +SKIP
>>> api.ready()                         # before the first flow runs        # doctest: +SKIP
>>> with api.flow_runs():               # no heartbeats on a temporary API  # doctest: +SKIP
...     vectorize_repository(path)
"""

from __future__ import annotations

import atexit
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from config.errors import ConfigError
from config.prefect_env import (
    STARTUP_TIMEOUT_S,
    apply_prefect_environment,
    startup_timeout_s,
    uses_ephemeral_api,
)

if TYPE_CHECKING:
    from config import Settings

_SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}
EVENTS_TIMEOUT_S = 5.0


@dataclass
class PrefectApi:
    """A temporary API server this process started (``process`` is None when it started
    none because Prefect is configured to use another)."""

    url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    timeout_s: float = STARTUP_TIMEOUT_S

    def ready(self) -> None:
        """Wait until the server answers; raise a clear error if it died or never did."""
        if self.process is None or self.url is None:
            return
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(
                    f"Prefect's temporary API server exited with status {self.process.returncode}"
                    " before it answered; set PREFECT_API_URL to use a running server"
                )
            if _answers(self.url + "/health"):
                return
            time.sleep(0.1)  # polling a subprocess we do not control: no event to wait on
        raise ConfigError(f"Prefect's temporary API server did not answer in {self.timeout_s} s")

    @contextmanager
    def flow_runs(self) -> Iterator[None]:
        """Run this process's flows inside (after :meth:`ready`): on the temporary server
        this process started, without Prefect's flow heartbeats, and with the runs' events
        delivered before the block ends. Elsewhere (another server), Prefect's settings
        stand.

        Heartbeats let a lasting server mark a crashed run; a temporary server dies with the
        process, so nobody reads them, and Prefect's heartbeat thread, which sleeps in 1 s
        steps, held each run's end for up to 1 s. Without that pause the events of the last
        states were often still queued at exit, where Prefect logs "Still processing items";
        waiting for its events worker here (``EVENTS_TIMEOUT_S`` at most) keeps stderr clean.
        """
        if self.process is None:
            yield
            return
        try:
            with without_heartbeats():
                yield
        finally:
            _deliver_events(EVENTS_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def without_heartbeats() -> AbstractContextManager[object]:
    """Prefect's settings with flow heartbeats off, for flows on a temporary API."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def _deliver_events(timeout_s: float) -> None:
    """Wait, ``timeout_s`` at most, until Prefect's events workers have sent what they hold.
    Only workers that already exist are waited on: Prefect keeps them in its private
    ``_instances`` (read defensively), and ``EventsWorker.instance()`` would start a new one,
    and with it a server, where none runs."""
    from prefect.events.worker import EventsWorker

    instances = getattr(EventsWorker, "_instances", {})
    workers = [w for w in list(instances.values()) if isinstance(w, EventsWorker)]

    def wait_for_all() -> None:
        for worker in workers:
            worker.wait_until_empty()

    waiter = threading.Thread(target=wait_for_all, daemon=True)
    waiter.start()
    waiter.join(timeout_s)


def start_prefect_api(settings: Settings) -> PrefectApi:
    """Apply codeflow's Prefect environment and, when this process would run its flows on
    Prefect's temporary API server, start that server now. Call before importing prefect."""
    environ = apply_prefect_environment(settings)
    if "prefect" in sys.modules or not uses_ephemeral_api(environ):
        return PrefectApi()  # Prefect read its settings already, or uses another server
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", _prefect_parent(), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "error", "--lifespan", "on"],
        env={**environ, **_SERVER_ENV},
    )  # fmt: skip
    api = PrefectApi(url, process, startup_timeout_s(environ))
    atexit.register(api.stop)
    environ["PREFECT_API_URL"] = url
    return api


def _prefect_parent() -> str:
    import importlib.util

    spec = importlib.util.find_spec("prefect")  # found without importing it
    if spec is None or spec.origin is None:
        raise ConfigError("prefect is not installed; reinstall codeflow")
    return str(Path(spec.origin).parent.parent)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:  # noqa: S310 - our own loopback URL
            return bool(reply.status == 200)
    except OSError:
        return False


def start_prefect_server(settings: Settings, log: IO[bytes]) -> PrefectApi:
    """A lasting Prefect server with its UI (``prefect server start``) on a free loopback
    port, its database under ``CODEFLOW_HOME/prefect``: what the local service runs, so that
    the runs it starts stay recorded and visible. Nothing is started when Prefect is
    configured to use another server. The server dies with this process (even a killed one:
    the kernel signals it). Call before importing prefect."""
    environ = apply_prefect_environment(settings)
    if "prefect" in sys.modules or not uses_ephemeral_api(environ):
        return PrefectApi()
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "WARNING", "--analytics-off"],
        env=dict(environ), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only async-signal-safe work inside
    )  # fmt: skip
    api = PrefectApi(f"http://127.0.0.1:{port}/api", process, startup_timeout_s(environ))
    environ["PREFECT_API_URL"] = api.url or ""
    return api


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel for SIGTERM when the parent dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
