"""WarmPool: pre-started, single-use sandbox containers that hide start-up latency.

A pooled container is created, verified, attached and started ahead of time; its bootstrap
blocks reading stdin, and its wall-clock timeout only starts once the code arrives. Each
container serves **one** execution and is then removed; a background thread replaces it.
Nothing is ever reused, so one run can't observe another.

Requests whose container shape (memory, CPU, pids, tmpfs, ulimits) differs from the pool's
run in a fresh container instead, as do requests that find the pool empty. A pooled
container the engine lost while it waited (``docker rm -f``, an engine restart) fails its
run, which is then made on a fresh container. The pool is a
:class:`~tasks.sandbox.SandboxRuntime`: :func:`~tasks.services.services_for` hands it to
the sandbox flow when ``CODEFLOW_SANDBOX_POOL_SIZE`` > 0.

Bounds: one filler thread adds a container only while fewer than ``size`` wait, so at most
``size`` containers are ever idle (the one being started included). Pooled containers carry
the owner label of this process: if it dies without :meth:`WarmPool.close`, the next
:meth:`~tasks.sandbox.docker_runtime.DockerRuntime.sweep` of any process removes them.

>>> with WarmPool(DockerRuntime(), size=2) as pool:     # doctest: +SKIP
...     pool.wait_ready(timeout=10)
...     pool.run(ExecutionRequest("print(1)")).status
'ok'
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque

from config.errors import LimitsNotApplied, SandboxError
from tasks.sandbox.docker_runtime import DockerRuntime, Prepared
from tasks.sandbox.models import ExecutionRequest, ExecutionResult, Limits

log = logging.getLogger(__name__)
#: After a failed start, the filler waits this long, doubling up to ``MAX_RETRY_AFTER_S``.
RETRY_AFTER_S = 1.0
MAX_RETRY_AFTER_S = 30.0


class WarmPool:
    """Keep ``size`` containers ready; hand each out at most once. Thread-safe.

    ``hits``, ``misses`` (the pool was empty) and ``lost`` (a pooled container had gone)
    count runs of the pool's shape; :attr:`idle` is how many containers wait now.
    """

    def __init__(self, runtime: DockerRuntime, size: int, limits: Limits | None = None) -> None:
        if size < 1:
            raise ValueError("a warm pool needs size >= 1")
        self.runtime = runtime
        self.size = size
        self.limits = limits or Limits()
        self.hits = 0
        self.misses = 0
        self.lost = 0
        self._ready: deque[Prepared] = deque()
        self._changed = threading.Condition()
        self._closed = False
        self._filler = threading.Thread(target=self._fill, name="codeflow-warm-pool", daemon=True)
        self._filler.start()
        atexit.register(self.close)  # containers go with the process, not with the next sweep

    def check(self) -> str:
        """The runtime's identity (image, runtime, seccomp profile); see DockerRuntime."""
        return self.runtime.check()

    @property
    def image_id(self) -> str:
        return self.runtime.image_id

    def sweep(self, *, everything: bool = False) -> int:
        """Remove containers of crashed owners; this pool's are spared (their owner is
        alive) unless ``everything``."""
        return self.runtime.sweep(everything=everything)

    @property
    def idle(self) -> int:
        """Containers started and waiting for a program."""
        with self._changed:
            return len(self._ready)

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        """Run on a pre-started container when one fits, else on a fresh one."""
        started = time.monotonic()
        prepared = self._take(request.limits)
        result = None if prepared is None else self._run_on(prepared, request, started)
        return self.runtime.run(request) if result is None else result

    def _run_on(
        self, prepared: Prepared, request: ExecutionRequest, started: float
    ) -> ExecutionResult | None:
        """The run on a pooled container; None when the infrastructure failed under it (the
        engine lost it while it waited): the caller then runs the program on a fresh one.
        Limits not applied are never retried."""
        try:
            return self.runtime.execute(prepared, request, started)
        except LimitsNotApplied:
            raise
        except SandboxError as exc:
            name = prepared.container_id[:12]
            log.warning("warm container %s failed (%s); running on a fresh one", name, exc)
        with self._changed:
            self.lost += 1
        return None

    def _take(self, limits: Limits) -> Prepared | None:
        if limits.container_shape() != self.limits.container_shape():
            return None
        with self._changed:
            if self._closed or not self._ready:
                self.misses += 1
                return None
            self.hits += 1
            prepared = self._ready.popleft()
            self._changed.notify_all()
            return prepared

    def wait_ready(self, timeout: float) -> bool:
        """Block until the pool is full (or ``timeout`` passes); for start-up and benchmarks."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._closed or len(self._ready) >= self.size, timeout=timeout
            )

    def _fill(self) -> None:
        retry_after = RETRY_AFTER_S
        while self._wait_for_room():
            try:
                prepared = self.runtime.prepare(self.limits, "warm-pool", pooled=True)
            except SandboxError as exc:
                log.warning("warm pool: no container (retry in %.0f s): %s", retry_after, exc)
                with self._changed:
                    self._changed.wait_for(lambda: self._closed, timeout=retry_after)
                retry_after = min(retry_after * 2, MAX_RETRY_AFTER_S)
                continue
            retry_after = RETRY_AFTER_S
            self._offer(prepared)

    def _wait_for_room(self) -> bool:
        """Block while the pool is full; False once it is closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or len(self._ready) < self.size)
            return not self._closed

    def _offer(self, prepared: Prepared) -> None:
        with self._changed:
            if not self._closed:
                self._ready.append(prepared)
                self._changed.notify_all()
                return
        self._discard_or_log(prepared)

    def _discard(self, prepared: Prepared) -> None:
        try:
            prepared.sock.close()
        finally:
            self.runtime.remove(prepared.container_id)

    def close(self) -> None:
        """Stop refilling and remove every container still waiting. Idempotent; runs in
        progress finish, and later runs use fresh containers."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._filler.join(timeout=30)
        with self._changed:
            leftovers = list(self._ready)
            self._ready.clear()
        for prepared in leftovers:
            self._discard_or_log(prepared)
        atexit.unregister(self.close)

    def _discard_or_log(self, prepared: Prepared) -> None:
        try:
            self._discard(prepared)
        except SandboxError as exc:  # the next sweep removes it once this process is gone
            log.warning("warm pool: %s not removed: %s", prepared.container_id[:12], exc)

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
