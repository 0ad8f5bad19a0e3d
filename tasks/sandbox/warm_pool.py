"""WarmPool: pre-started, single-use sandbox containers that hide start-up latency.

A pooled container is created, verified, attached and started ahead of time; its bootstrap
blocks reading stdin, and its wall-clock timeout only starts once the code arrives. Each
container serves **one** execution and is then removed; a background thread replaces it.
Nothing is ever reused, so one run can't observe another.

Requests whose container shape (memory, CPU, pids, tmpfs, ulimits) differs from the pool's
run in a fresh container instead, as do requests that find the pool empty.

>>> with WarmPool(DockerRuntime(), size=2) as pool:     # doctest: +SKIP
...     pool.wait_ready(timeout=10)
...     pool.run(ExecutionRequest("print(1)")).status
'ok'
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from config.errors import SandboxError
from tasks.sandbox.docker_runtime import DockerRuntime, Prepared
from tasks.sandbox.models import ExecutionRequest, ExecutionResult, Limits

log = logging.getLogger(__name__)
RETRY_AFTER_S = 1.0


class WarmPool:
    """Keep ``size`` containers ready; hand each out at most once. Thread-safe."""

    def __init__(self, runtime: DockerRuntime, size: int, limits: Limits | None = None) -> None:
        if size < 1:
            raise ValueError("a warm pool needs size >= 1")
        self.runtime = runtime
        self.size = size
        self.limits = limits or Limits()
        self.hits = 0
        self.misses = 0
        self._ready: deque[Prepared] = deque()
        self._changed = threading.Condition()
        self._closed = False
        self._filler = threading.Thread(target=self._fill, name="codeflow-warm-pool", daemon=True)
        self._filler.start()

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        """Run on a pre-started container when one fits, else on a fresh one."""
        started = time.monotonic()
        prepared = self._take(request.limits)
        if prepared is None:
            return self.runtime.run(request)
        return self.runtime.execute(prepared, request, started)

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
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._closed or len(self._ready) < self.size)
                if self._closed:
                    return
            try:
                prepared = self.runtime.prepare(self.limits, "warm-pool", pooled=True)
            except SandboxError as exc:
                log.warning("warm pool could not start a container: %s", exc)
                with self._changed:
                    self._changed.wait(timeout=RETRY_AFTER_S)
                continue
            self._offer(prepared)

    def _offer(self, prepared: Prepared) -> None:
        with self._changed:
            if not self._closed:
                self._ready.append(prepared)
                self._changed.notify_all()
                return
        self._discard(prepared)

    def _discard(self, prepared: Prepared) -> None:
        try:
            prepared.sock.close()
        finally:
            self.runtime.remove(prepared.container_id)

    def close(self) -> None:
        """Stop refilling and remove every container still waiting."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._filler.join(timeout=30)
        with self._changed:
            leftovers = list(self._ready)
            self._ready.clear()
        for prepared in leftovers:
            self._discard(prepared)

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
