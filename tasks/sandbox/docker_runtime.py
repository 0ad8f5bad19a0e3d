"""DockerRuntime: run one untrusted program in one fresh, hardened, disposable container.

This is the security boundary of the sandbox (the AST policy is only a courtesy). Each
execution gets its own container, created with no network, a read-only root, a
size-limited ``noexec`` tmpfs on ``/tmp``, a non-root user, every capability dropped,
``no-new-privileges``, a pid limit, an init process, memory == memory+swap, a CPU quota,
``nofile``/``fsize`` ulimits, no logs kept by the engine and no host mounts. Code, stdin and
input files go in on the attach socket (see :mod:`tasks.sandbox.wire`); only bounded
stdout/stderr come back, so the host never follows a path the sandbox wrote.

Around the run: the inspected container is compared with what was asked for before the code
is sent and again after it ran (:class:`LimitsNotApplied` on any difference); the wall
clock is enforced inside (``timeout -s KILL``) and from here (socket deadline, then kill);
removal is guaranteed in ``finally`` and, for crashed owners, by :meth:`sweep`.

>>> runtime = DockerRuntime()                        # doctest: +SKIP
>>> runtime.check()                                  # doctest: +SKIP
>>> runtime.run(ExecutionRequest("print('hi')")).stdout  # doctest: +SKIP
'hi\\n'
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig, Ulimit
from requests.exceptions import RequestException

from config.errors import DockerUnavailable, ImageMissing, LimitsNotApplied, SandboxError
from tasks.sandbox.image import DEFAULT_DOCKER_URL, SANDBOX_UID
from tasks.sandbox.models import (
    SIGKILL_EXIT,
    ExecutionRequest,
    ExecutionResult,
    Limits,
    classify_outcome,
)
from tasks.sandbox.wire import (
    CONTAINER_TMP,
    OutputCollector,
    bootstrap_command,
    encode_payload,
    expected_tmpfs,
    limit_mismatches,
)

LABEL = "codeflow.sandbox"
OWNER_LABEL = "codeflow.owner"
DEFAULT_IMAGE = "codeflow-sandbox:latest"
START_HINT = "start Docker (is the daemon running and /var/run/docker.sock readable?)"
BUILD_HINT = "run `codeflow sandbox build-image`"


@dataclass(slots=True)
class Prepared:
    """A created, attached and started container blocked on reading its payload."""

    container_id: str
    sock: Any
    limits: Limits
    attrs: dict[str, Any]
    created: float


@dataclass(slots=True)
class _Outcome:
    exit_code: int | None
    host_timeout: bool
    killed_for_flood: bool
    exec_s: float
    oom_killed: bool = False


class DockerRuntime:
    """Adapter over docker-py. Thread-safe: each call works on its own container and socket."""

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        image: str = DEFAULT_IMAGE,
        *,
        grace_s: float = 2.0,
        max_age_s: float = 7200.0,
    ) -> None:
        self._client = client or _connect()
        self._api = self._client.api
        self.image = image
        self.user = f"{SANDBOX_UID}:{SANDBOX_UID}"
        self.grace_s = grace_s
        self.max_age_s = max_age_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._image_id = ""

    def check(self) -> str:
        """Fail early and clearly: engine up, image present (never pulled). Returns the ID."""
        try:
            self._client.ping()
            self._image_id = str(self._client.images.get(self.image).id)
        except ImageNotFound as exc:
            raise ImageMissing(f"sandbox image {self.image!r} is missing; {BUILD_HINT}") from exc
        except (DockerException, RequestException) as exc:
            raise DockerUnavailable(f"Docker engine unreachable; {START_HINT}") from exc
        return self._image_id

    @property
    def image_id(self) -> str:
        return self._image_id or self.check()

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        """Run ``request`` in a fresh container; user failures come back as data."""
        started = time.monotonic()
        prepared = self.prepare(request.limits, request.run_id)
        return self.execute(prepared, request, started)

    def prepare(self, limits: Limits, run_id: str = "", *, pooled: bool = False) -> Prepared:
        """Create, verify, attach and start a container that waits for its payload."""
        container_id = self._create(limits, run_id, pooled)
        try:
            attrs = self._api.inspect_container(container_id)
            self._verify(attrs, limits)
            sock = self._api.attach_socket(
                container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self._api.start(container_id)
        except (DockerException, RequestException, OSError) as exc:
            self.remove(container_id)
            raise SandboxError(
                f"sandbox container failed to start: {exc}",
                container_id=container_id,
                run_id=run_id,
            ) from exc
        except BaseException:
            self.remove(container_id)
            raise
        return Prepared(container_id, sock, limits, attrs, time.monotonic())

    def execute(
        self, prepared: Prepared, request: ExecutionRequest, started: float | None = None
    ) -> ExecutionResult:
        """Send the payload to a prepared container, collect, classify, always remove."""
        started = time.monotonic() if started is None else started
        collector = OutputCollector(request.limits.output_bytes)
        try:
            outcome = self._exchange(prepared, request, collector)
            state = self._api.inspect_container(prepared.container_id)
            self._verify(state, request.limits)
            outcome.oom_killed = bool(state.get("State", {}).get("OOMKilled"))
        except (APIError, RequestException, OSError) as exc:
            raise SandboxError(
                f"sandbox container failed: {exc}",
                container_id=prepared.container_id,
                run_id=request.run_id,
            ) from exc
        finally:
            _close(prepared.sock)
            self.remove(prepared.container_id)
        return _result(request, prepared, collector, outcome, started)

    def _create(self, limits: Limits, run_id: str, pooled: bool) -> str:
        try:
            response = self._api.create_container(
                self.image,
                command=bootstrap_command(),
                user=self.user,
                working_dir=CONTAINER_TMP,
                stdin_open=True,
                tty=False,
                network_disabled=True,
                hostname="sandbox",
                labels=self._labels(run_id, pooled),
                host_config=self._host_config(limits),
            )
        except ImageNotFound as exc:
            raise ImageMissing(f"sandbox image {self.image!r} is missing; {BUILD_HINT}") from exc
        except APIError as exc:
            raise SandboxError(f"the engine refused the sandbox container: {exc}") from exc
        except (DockerException, RequestException) as exc:
            raise DockerUnavailable(f"Docker engine unreachable ({exc}); {START_HINT}") from exc
        container_id = str(response["Id"])
        if response.get("Warnings"):
            self.remove(container_id)
            raise LimitsNotApplied(
                f"engine warned while creating the sandbox: {response['Warnings']}"
            )
        return container_id

    def _labels(self, run_id: str, pooled: bool) -> dict[str, str]:
        return {
            LABEL: "1",
            OWNER_LABEL: self.owner,
            "codeflow.run_id": run_id,
            "codeflow.created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "codeflow.pooled": "1" if pooled else "0",
        }

    def _host_config(self, limits: Limits) -> dict[str, Any]:
        fsize = limits.fsize_mb * 1024 * 1024
        return dict(
            self._api.create_host_config(
                network_mode="none",
                read_only=True,
                tmpfs={CONTAINER_TMP: expected_tmpfs(limits)},
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=limits.pids,
                init=True,
                mem_limit=limits.memory_bytes,
                memswap_limit=limits.memory_bytes,
                nano_cpus=limits.nano_cpus,
                shm_size=16 * 1024 * 1024,
                ipc_mode="private",
                ulimits=[
                    Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
                    Ulimit(name="fsize", soft=fsize, hard=fsize),
                ],
                log_config=LogConfig(type="none"),
            )
        )

    def _verify(self, attrs: dict[str, Any], limits: Limits) -> None:
        problems = limit_mismatches(attrs, limits, self.user)
        if problems:
            raise LimitsNotApplied(
                "sandbox limits not applied: " + "; ".join(problems), container_id=attrs.get("Id")
            )

    def _exchange(
        self, prepared: Prepared, request: ExecutionRequest, collector: OutputCollector
    ) -> _Outcome:
        raw = getattr(prepared.sock, "_sock", prepared.sock)
        raw.sendall(encode_payload(request))
        sent = time.monotonic()
        deadline = sent + request.limits.timeout_s + self.grace_s
        host_timeout, flood = _pump(raw, collector, deadline)
        if host_timeout or flood:
            _close(prepared.sock)  # stop reading first: a blocked writer would stall the kill
            self._kill(prepared.container_id)
        status = self._api.wait(prepared.container_id, timeout=int(self.grace_s) + 10)
        return _Outcome(status.get("StatusCode"), host_timeout, flood, time.monotonic() - sent)

    def _kill(self, container_id: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            self._api.kill(container_id)

    def remove(self, container_id: str) -> None:
        """Force-remove; a container already gone (or being removed) is fine."""
        with contextlib.suppress(NotFound):
            try:
                self._api.remove_container(container_id, force=True)
            except APIError as exc:
                if exc.status_code != 409:
                    raise

    def sweep(self, *, everything: bool = False) -> int:
        """Remove sandbox containers left behind by crashed owners; return how many.

        A container is an orphan when its owner process on this host is gone, or, for an
        owner on another host (a shared engine), when it is older than ``max_age_s``.
        ``everything=True`` removes every labelled container, including those of live
        processes (an operator's reset).
        """
        try:
            found = self._api.containers(all=True, filters={"label": f"{LABEL}=1"})
        except (DockerException, RequestException) as exc:
            raise DockerUnavailable(f"Docker engine unreachable; {START_HINT}") from exc
        doomed = [c["Id"] for c in found if everything or self._is_orphan(c)]
        for container_id in doomed:
            self.remove(container_id)
        return len(doomed)

    def _is_orphan(self, summary: dict[str, Any]) -> bool:
        """Same host: the owner process is gone. Other hosts: older than ``max_age_s``."""
        host, _, pid = str(summary.get("Labels", {}).get(OWNER_LABEL, "")).rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            return not _process_alive(int(pid))
        return time.time() - float(summary.get("Created", 0)) > self.max_age_s


def _result(
    request: ExecutionRequest,
    prepared: Prepared,
    collector: OutputCollector,
    outcome: _Outcome,
    started: float,
) -> ExecutionResult:
    """Classify from exit code, OOM flag, timeout and truncation together.

    The engine's OOMKilled flag is not always set; a SIGKILL (137) that neither the
    deadline nor our flood guard explains is read as the kernel's OOM killer (so an
    operator's ``docker kill`` also reads as ``oom``).
    """
    sigkill = outcome.exit_code == SIGKILL_EXIT
    timed_out = outcome.host_timeout or (
        sigkill and not outcome.killed_for_flood and outcome.exec_s >= request.limits.timeout_s
    )
    oom = outcome.oom_killed or (sigkill and not timed_out and not outcome.killed_for_flood)
    status = classify_outcome(
        exit_code=outcome.exit_code,
        oom_killed=oom,
        timed_out=timed_out and not oom,
        truncated=collector.truncated,
    )
    return ExecutionResult(
        status=status,
        exit_code=outcome.exit_code,
        stdout=collector.text(1),
        stderr=collector.text(2),
        duration_s=round(time.monotonic() - started, 4),
        truncated=collector.truncated,
        oom_killed=outcome.oom_killed,
        timed_out=timed_out and not oom,
        run_id=request.run_id,
        container_id=prepared.container_id,
        image_id=str(prepared.attrs.get("Image", "")),
    )


def _pump(raw: socket.socket, collector: OutputCollector, deadline: float) -> tuple[bool, bool]:
    """Read the attach stream until EOF; return (host deadline passed, output flood)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True, False
        raw.settimeout(remaining)
        try:
            chunk = raw.recv(65536)
        except TimeoutError:
            return True, False
        if not chunk:
            return False, False
        collector.feed(chunk)
        if collector.flooding:
            return False, True


def _connect() -> docker.DockerClient:
    try:
        return docker.DockerClient(base_url=DEFAULT_DOCKER_URL, max_pool_size=64)
    except DockerException as exc:
        raise DockerUnavailable(f"Docker engine unreachable; {START_HINT}") from exc


def _close(sock: Any) -> None:
    raw = getattr(sock, "_sock", sock)
    if raw is None:
        return
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
    with contextlib.suppress(OSError):
        raw.close()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
