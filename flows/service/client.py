"""The thin client: find the local service (starting it when nobody has) and stream one
request's messages back. Standard library only, so a command that goes through the service
imports neither Prefect, LanceDB nor numpy.

The wire: HTTP/1.1 over the Unix socket ``ServicePaths.socket``. ``GET /v1/hello`` answers
``{"pid", "fingerprint", ...}``; ``POST /v1/OP`` with a JSON body answers newline-delimited
JSON, one message per line: ``{"event": E}`` (progress, as on the event stream), then exactly
one of ``{"result": R, "exit": N}`` or ``{"error": MESSAGE, "exit": N}``. A reply that ends
without either means the service went away mid-request.

>>> client, hello = connect(paths)                  # doctest: +SKIP
>>> for message in client.stream("search", {...}):  # doctest: +SKIP
...     ...
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from config.errors import ServiceError
from config.paths import file_lock
from flows.service.paths import ServicePaths

START_TIMEOUT_S = 120.0  # a first start on a cold machine imports and warms a lot
HELLO_TIMEOUT_S = 2.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("codeflow-service", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ServiceClient:
    """Requests to the service listening at ``paths.socket``."""

    def __init__(self, paths: ServicePaths) -> None:
        self.paths = paths

    def hello(self) -> dict[str, Any] | None:
        """The service's greeting, or None when nothing answers on the socket."""
        connection = _UnixConnection(str(self.paths.socket), HELLO_TIMEOUT_S)
        try:
            connection.request("GET", "/v1/hello")
            reply = connection.getresponse()
            body = json.loads(reply.read()) if reply.status == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            return None
        finally:
            connection.close()
        return body if isinstance(body, dict) else None

    def stream(self, op: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Send one request; yield its messages. Raises :class:`ServiceError` when the
        service is unreachable or goes away before its final message."""
        connection = _UnixConnection(str(self.paths.socket), None)
        try:
            connection.request(
                "POST", f"/v1/{op}", json.dumps(body), {"Content-Type": "application/json"}
            )
            reply = connection.getresponse()
            yield from self._messages(reply)
        except (OSError, ValueError, http.client.HTTPException):
            raise self._gone() from None
        finally:
            connection.close()

    def _messages(self, reply: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        while line := reply.readline():
            message = json.loads(line)
            yield message
            if "result" in message or "error" in message:
                return
        raise self._gone()

    def _gone(self) -> ServiceError:
        return ServiceError(
            "the codeflow service stopped during the request (its log: "
            f"{self.paths.log}); the next command starts a new one"
        )

    def call(
        self,
        op: str,
        body: dict[str, Any],
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> tuple[Any, int]:
        """(result, exit status); progress events go to ``on_event``; an error reply raises
        :class:`ServiceError` with the service's one-line message."""
        for message in self.stream(op, body):
            if "error" in message:
                raise ServiceError(str(message["error"]))
            if "result" in message:
                return message["result"], int(message.get("exit", 0))
            if "event" in message and on_event is not None:
                on_event(message["event"])
        raise self._gone()  # pragma: no cover - stream() raises first


def connect(paths: ServicePaths) -> tuple[ServiceClient, dict[str, Any]]:
    """A client of the running service and its greeting, the service started first when
    nothing answers (atomically: one starter at a time, under ``start.lock``)."""
    client = ServiceClient(paths)
    hello = client.hello()
    if hello is not None:
        return client, hello
    paths.make()
    with file_lock(paths.start_lock):
        hello = client.hello() or _start(paths, client)
    return client, hello


def _start(paths: ServicePaths, client: ServiceClient) -> dict[str, Any]:
    """Start ``python -m flows.service`` detached (its own session, output to its log) and
    wait until it answers."""
    with open(paths.log, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.service"],
            cwd=paths.directory,  # not the caller's: ``-m`` puts the working folder on sys.path
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while (hello := client.hello()) is None:
        if process.poll() is not None:
            raise ServiceError(
                f"the codeflow service exited at start (status {process.returncode}): "
                f"{_last_line(paths)}; see {paths.log}, or set CODEFLOW_SERVICE=off"
            )
        if time.monotonic() > deadline:
            raise ServiceError(f"the codeflow service did not answer in {START_TIMEOUT_S:.0f} s")
        time.sleep(0.05)  # polling a process we just started: nothing to wait on
    return hello


def _last_line(paths: ServicePaths) -> str:
    try:
        lines = paths.log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"
