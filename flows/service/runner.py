"""The service's request runner: each operation on a thread pool of its kind, flows only once
the Prefect API answers, progress events streamed back, activity counted for the idle exit.

Searches, related code and status run at once (a search pool); indexing and sandbox runs
wait for the Prefect API and run on pools of their own, so a long index never delays a search.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from config import Settings
from config.errors import ConfigError, ServiceError
from flows.cli.progress import follow
from flows.service import operations

Emit = Callable[[dict[str, Any]], None]
_POOLS = {"search": 4, "index": 2, "sandbox": 4}
_READS = frozenset({"search", "related", "status"})  # on the search pool, no flow


class Runner:
    """Runs operations for the local socket and the MCP tools of one service process."""

    def __init__(self, settings: Settings, info: dict[str, Any]) -> None:
        self.settings = settings
        self.info = info  # pid, fingerprint, URLs: what hello() shows
        self.pools = {
            kind: ThreadPoolExecutor(n, thread_name_prefix=f"codeflow-{kind}")
            for kind, n in _POOLS.items()
        }
        self.flows_ready = threading.Event()
        self.ready_at = 0.0
        self.flows_failed: str | None = None
        self.active = 0
        self.served = 0
        self.last_active = time.monotonic()
        self.stopping: asyncio.Event | None = None
        self.stop_reason = ""

    def hello(self) -> dict[str, Any]:
        return {
            **self.info,
            "ready": self.flows_ready.is_set() and self.flows_failed is None,
            "error": self.flows_failed,
            "active": self.active,
            "served": self.served,
            "idle_s": round(time.monotonic() - self.last_active, 1),
            "sandbox_pool": self._pool(),
        }

    def _pool(self) -> dict[str, int] | None:
        if not self.flows_ready.is_set():
            return None  # services are still being built by the warm-up
        from tasks.services import services_for

        return services_for(self.settings).sandbox_pool()

    def idle_for(self) -> float:
        """Seconds without a request, counted from the end of the warm-up (0 while a
        request runs or the service is still starting)."""
        if self.active or not self.flows_ready.is_set():
            return 0.0
        return time.monotonic() - max(self.last_active, self.ready_at)

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason
        if self.stopping is not None:
            self.stopping.set()

    async def run(self, op: str, body: dict[str, Any], emit: Emit) -> tuple[Any, int]:
        """Run ``op`` with ``body``'s arguments; (result, exit status)."""
        self.active += 1
        try:
            return await self._dispatch(op, dict(body), emit)
        finally:
            self.active -= 1
            self.served += 1
            self.last_active = time.monotonic()

    async def _dispatch(self, op: str, body: dict[str, Any], emit: Emit) -> tuple[Any, int]:
        if op == "index":
            return await self._index(body, emit), 0
        if op == "sandbox":
            await self._flows()
            call = _bound(operations.sandbox_run, self.settings, body, prepare=False)
            result: tuple[Any, int] = await self._on("sandbox", _flow_run(call))
            return result
        if op not in _READS:
            raise ConfigError(f"unknown operation {op!r}")
        function = getattr(operations, op)
        return await self._on("search", _bound(function, self.settings, body)), 0

    async def _index(self, body: dict[str, Any], emit: Emit) -> dict[str, Any]:
        trace_id = str(body.pop("trace_id", "") or uuid.uuid4().hex)
        backends = {"embedder": body.get("embedder"), "store": body.get("store")}
        target = {k: body.pop(k, None) for k in ("cwd", "path")}
        root = await self._on(
            "search",
            _bound(
                operations.index_target, self.settings, {**target, "branch": body.get("branch")}
            ),
        )
        await self._on(
            "search", functools.partial(operations.check_backends, self.settings, **backends)
        )
        await self._flows()
        call = _bound(operations.index, self.settings, {**body, "root": root, "trace_id": trace_id})
        summary: dict[str, Any] = await self._following(trace_id, emit, call)
        return summary

    async def _following(self, trace_id: str, emit: Emit, call: Callable[[], Any]) -> Any:
        """``call`` on the index pool while its progress events go to ``emit``."""
        from tasks.services import services_for

        loop, stop = asyncio.get_running_loop(), threading.Event()
        bus = services_for(self.settings).bus

        def forward(event: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(emit, event)

        watcher = threading.Thread(target=follow, args=(bus, trace_id, forward, stop), daemon=True)
        watcher.start()
        try:
            return await self._on("index", _flow_run(call))
        finally:
            stop.set()

    async def _on(self, kind: str, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pools[kind], call)

    async def _flows(self) -> None:
        """Wait until the Prefect API answers and the flows are imported."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.flows_ready.wait)
        if self.flows_failed is not None:
            raise ServiceError(self.flows_failed)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


def _bound(
    function: Callable[..., Any], settings: Settings, body: dict[str, Any], **fixed: Any
) -> Callable[[], Any]:
    """``function(settings, **body, **fixed)`` as a call, after checking the arguments: a
    request naming unknown arguments is a clear error, not a TypeError inside a thread."""
    arguments = {**body, **fixed}
    try:
        inspect.signature(function).bind(settings, **arguments)
    except TypeError as exc:
        raise ConfigError(f"bad request: {exc}") from None
    return functools.partial(function, settings, **arguments)


def _flow_run(call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` (which runs a flow) without Prefect's flow heartbeats: their thread sleeps in
    1 s steps and held the end of every run for up to 1 s (a no-op index took 1.1 s instead
    of 0.15 s). The cost: a run of a killed service stays Running in the UI."""

    def run() -> Any:
        from flows.cli.prefect_api import without_heartbeats

        with without_heartbeats():
            return call()

    return run


def pid_info() -> dict[str, Any]:
    return {"pid": os.getpid(), "started_at": time.time()}
