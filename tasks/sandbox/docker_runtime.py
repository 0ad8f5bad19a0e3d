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
import secrets
import socket
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig, Ulimit
from requests.exceptions import RequestException

from config.errors import DockerUnavailable, ImageMissing, LimitsNotApplied, SandboxError
from config.paths import process_alive
from tasks.sandbox import seccomp
from tasks.sandbox.image import DEFAULT_DOCKER_URL, SANDBOX_UID
from tasks.sandbox.live_container import CGROUP_ROOT, PROC, LiveContainer, live_mismatches
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
    done_marker,
    encode_payload,
    expected_tmpfs,
    limit_mismatches,
)

LABEL = "codeflow.sandbox"
OWNER_LABEL = "codeflow.owner"
DEFAULT_IMAGE = "codeflow-sandbox:latest"
START_HINT = "start Docker (is the daemon running and /var/run/docker.sock readable?)"
#: Host tasks of a gVisor sandbox beyond the program's limit. It idles at ~40 threads, but
#: its Go runtime adds one per blocked system call: with 200 forks on a busy machine it
#: passed +128 and the sandbox died (Go's fatal error, exit status 2); +256 held in every
#: trial, and +512 leaves room for more cores.
RUNSC_TASKS = 512
RUNSC_HINT = "run scripts/register-gvisor (it installs runsc and edits the engine's daemon.json)"
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
    resources: dict[str, Any] | None = None


#: Processes in a runc container besides the program's: docker-init, the bootstrap and the
#: ``timeout`` wrapper (tasks: threads count too).
_WRAPPER_TASKS = 3
#: How often the program's task count is sampled (cgroup v1 keeps no peak of its own):
#: every 5 ms at first (most programs are short), then less often, up to every 50 ms.
_FIRST_SAMPLE_S, _MAX_SAMPLE_S = 0.005, 0.05


@dataclass(slots=True)
class _Watch:
    """The host's view of a run in progress: its cgroup, and what was read of it."""

    live: LiveContainer
    counts_tasks: bool
    peak_tasks: int = 0
    resources: dict[str, Any] | None = None

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            self.peak_tasks = max(self.peak_tasks, self.live.tasks())

    def read(self) -> dict[str, Any] | None:
        """What the program used (once: before its container goes, the cgroup with it)."""
        if self.resources is None:
            with contextlib.suppress(OSError):
                usage = self.live.usage()
                processes = max(self.peak_tasks, int(usage.get("processes") or 0))
                # at least the program itself: a short one may end between two samples
                usage["processes"] = (
                    max(1, processes - _WRAPPER_TASKS) if self.counts_tasks else None
                )
                self.resources = usage
        return self.resources


class DockerRuntime:
    """Adapter over docker-py. Thread-safe: each call works on its own container and socket."""

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        image: str = DEFAULT_IMAGE,
        *,
        grace_s: float = 2.0,
        max_age_s: float = 7200.0,
        runtime: str = "runc",
        host: tuple[Path, Path] = (PROC, CGROUP_ROOT),
    ) -> None:
        """``host``: where this process sees the host's ``/proc`` and cgroup tree (another
        place when it runs in a container that mounts them)."""
        self._client = client or _connect()
        self._host_proc, self._host_cgroup = host
        self._api = self._client.api
        self.image = image
        self.runtime = runtime
        self._runtime_checked = False
        self.user = f"{SANDBOX_UID}:{SANDBOX_UID}"
        self.grace_s = grace_s
        self.max_age_s = max_age_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._image_id = ""

    def check(self) -> str:
        """Fail early and clearly: engine up, image present (never pulled), runtime
        registered. Returns what results depend on besides the code: the image ID, the
        runtime and the seccomp profile (a cache key part)."""
        try:
            self._client.ping()
            self._image_id = str(self._client.images.get(self.image).id)
            if not self._runtime_checked:
                self._check_runtime(self._client.info().get("Runtimes") or {})
        except ImageNotFound as exc:
            raise ImageMissing(f"sandbox image {self.image!r} is missing; {BUILD_HINT}") from exc
        except (DockerException, RequestException) as exc:
            raise DockerUnavailable(f"Docker engine unreachable; {START_HINT}") from exc
        profile = seccomp.identity()
        return f"{self._image_id} {self.runtime} {profile['name']}/{profile['version']}"

    def _check_runtime(self, runtimes: dict[str, Any]) -> None:
        if self.runtime not in runtimes:
            hint = RUNSC_HINT if self.runtime == "runsc" else "register it with the engine"
            known = ", ".join(sorted(runtimes)) or "none"
            raise SandboxError(
                f"the container runtime {self.runtime!r} is not registered with the Docker "
                f"engine (it has: {known}); {hint}"
            )
        self._runtime_checked = True

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
            attrs = self._api.inspect_container(container_id)  # now with its process
            self._verify_live(attrs, limits)
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
        nonce = secrets.token_hex(16)
        collector = OutputCollector(request.limits.output_bytes, marker=done_marker(nonce))
        try:
            outcome = self._exchange(prepared, request, collector, nonce)
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
                stdin_open=True,  # and StdinOnce (docker-py's default when attached): our
                tty=False,  # closing the attach stream ends the bootstrap's wait
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

    def engine_limits(self, limits: Limits) -> Limits:
        """The limits the engine is given: under gVisor the container's host tasks include
        the sandbox's own threads (dozens, idle), so its pids limit is raised by
        ``RUNSC_TASKS``; the program's processes live inside gVisor's kernel."""
        if self.runtime != "runsc":
            return limits
        return replace(limits, pids=limits.pids + RUNSC_TASKS)

    def _host_config(self, limits: Limits) -> dict[str, Any]:
        limits = self.engine_limits(limits)
        fsize = limits.fsize_mb * 1024 * 1024
        return dict(
            self._api.create_host_config(
                network_mode="none",
                read_only=True,
                tmpfs={CONTAINER_TMP: expected_tmpfs(limits)},
                cap_drop=["ALL"],
                security_opt=["no-new-privileges", seccomp.security_option()],
                runtime=self.runtime,
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
        """What the engine recorded against what was asked (before start, and after)."""
        problems = limit_mismatches(attrs, self.engine_limits(limits), self.user)
        host = attrs.get("HostConfig") or {}
        if host.get("Runtime") != self.runtime:
            problems.append(f"Runtime is {host.get('Runtime')!r}, expected {self.runtime!r}")
        if seccomp.applied(host.get("SecurityOpt") or []) != seccomp.identity():
            problems.append(f"the seccomp profile applied is not {seccomp.identity()}")
        if problems:
            raise LimitsNotApplied(
                "sandbox limits not applied: " + "; ".join(problems), container_id=attrs.get("Id")
            )

    def _live(self, pid: int) -> LiveContainer:
        return LiveContainer(pid, proc=self._host_proc, root=self._host_cgroup)

    def _verify_live(self, attrs: dict[str, Any], limits: Limits) -> None:
        """What the kernel applied: the started container's cgroup limits and its first
        process's seccomp, no_new_privs and capabilities (under gVisor that process is the
        sandbox's own, whose capabilities are not the program's)."""
        pid = int((attrs.get("State") or {}).get("Pid") or 0)
        try:
            live = self._live(pid)
            limits_seen, security_seen = live.limits(), live.security()
        except OSError as exc:
            raise LimitsNotApplied(
                f"cannot read the sandbox container's cgroup and status from this host ({exc})",
                container_id=attrs.get("Id"),
            ) from exc
        problems = live_mismatches(
            limits_seen,
            security_seen,
            self.engine_limits(limits),
            check_capabilities=self.runtime == "runc",
        )
        if problems:
            raise LimitsNotApplied(
                "sandbox limits not in force: " + "; ".join(problems), container_id=attrs.get("Id")
            )

    def _exchange(
        self,
        prepared: Prepared,
        request: ExecutionRequest,
        collector: OutputCollector,
        nonce: str,
    ) -> _Outcome:
        raw = getattr(prepared.sock, "_sock", prepared.sock)
        pid = int((prepared.attrs.get("State") or {}).get("Pid") or 0)
        watch = _Watch(self._live(pid), counts_tasks=self.runtime == "runc")
        raw.sendall(encode_payload(request, nonce))
        sent = time.monotonic()
        deadline = sent + request.limits.timeout_s + self.grace_s
        host_timeout, flood = _pump(raw, collector, deadline, watch)
        if host_timeout or flood:
            watch.read()
            _close(prepared.sock)  # stop reading first: a blocked writer would stall the kill
            self._kill(prepared.container_id)
        status = self._api.wait(prepared.container_id, timeout=int(self.grace_s) + 10)
        outcome = _Outcome(status.get("StatusCode"), host_timeout, flood, time.monotonic() - sent)
        outcome.resources = watch.resources
        return outcome

    def _kill(self, container_id: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            self._api.kill(container_id)

    def remove(self, container_id: str) -> None:
        """Force-remove; a container already gone (or being removed) is fine."""
        try:
            self._api.remove_container(container_id, force=True)
        except NotFound:
            return
        except APIError as exc:
            if exc.status_code != 409:
                raise SandboxError(
                    f"the engine did not remove sandbox container {container_id[:12]}: {exc}",
                    container_id=container_id,
                ) from exc
        except (DockerException, RequestException) as exc:
            raise DockerUnavailable(
                f"Docker engine unreachable; {START_HINT}", container_id=container_id
            ) from exc

    def close(self) -> None:
        """Nothing to release: each run removes its own container."""

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
            return not process_alive(int(pid))
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
        runtime=str((prepared.attrs.get("HostConfig") or {}).get("Runtime", "")),
        seccomp=seccomp.applied((prepared.attrs.get("HostConfig") or {}).get("SecurityOpt") or []),
        resources=outcome.resources,
    )


def _pump(
    raw: socket.socket, collector: OutputCollector, deadline: float, watch: _Watch
) -> tuple[bool, bool]:
    """Read the attach stream until EOF; return (host deadline passed, output flood). When
    the bootstrap says the program ended, read what it used, then close our side of the
    stream: the bootstrap, which waits for that, exits with the program's status."""
    every = _FIRST_SAMPLE_S
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True, False
        raw.settimeout(min(remaining, every))
        try:
            chunk = raw.recv(65536)
        except TimeoutError:
            watch.sample()
            every = min(every * 2, _MAX_SAMPLE_S)
            continue
        if not chunk:
            return False, False
        ended = collector.ended
        collector.feed(chunk)
        if collector.flooding:
            return False, True
        if collector.ended and not ended:
            watch.read()
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_WR)


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
