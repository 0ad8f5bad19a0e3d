"""The Redis lock manager of the embedding batches: prefect-redis's, with two changes.

Embedding batches are Prefect tasks with cache policy INPUTS + TASK_SOURCE under a Redis
lock (SERIALIZABLE), so two agents asking for the same batch at once embed it once. The
lock saves work; it guards nothing else: two agents that both embed a batch compute the
same vectors and write them under the same IDs. Hence:

- **Locks expire, and nobody waits for one for long.** Prefect asks for locks with no
  hold timeout and waits for them with no limit, so a process killed while holding one
  (``kill -9``, a lost machine) would leave it in Redis for good, and the next run asking
  for that batch would wait forever. Here a lock is held for ``hold_s`` at most (default
  ``LOCK_HOLD_S``, far longer than any batch takes), and a batch waits ``wait_s`` at most
  (default ``LOCK_WAIT_S``) before it goes on without the lock, with a warning.
- **A Redis outage does not fail the batch.** The batch then runs without the lock (one
  warning per outage), as the embedding cache passes its writes through
  (:mod:`tasks.cache.redis_cache`); Prefect itself treats an unreadable or unwritable cached result
  as a miss with a warning. Without this, Redis going away mid-run failed every batch
  after it with a page of tracebacks.
- **Its clients are codeflow's** (:func:`~tasks.redis_io.connections.connect` and its asyncio
  sibling), so the locks work on a Redis Cluster and through a Sentinel as the cache does.
  Each lock is one key (``lock:<key>``): Redis's lock scripts stay within one slot.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prefect_redis.locking import RedisLockManager

from tasks.redis_io import aio
from tasks.redis_io.connections import connect
from tasks.redis_io.outage import OUTAGE_ERRORS

LOCK_HOLD_S = 600.0  # a batch of 8,192 chunks embeds locally in ~1 s, via OpenAI in ~1 min
LOCK_WAIT_S = 60.0  # how long a batch waits for another agent's lock before going on
#: Lock calls are short, but a busy Redis must not turn a lock request into an outage.
LOCK_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


class BatchLockManager(RedisLockManager):  # type: ignore[misc]  # prefect-redis is untyped
    """``RedisLockManager(connection_url=...)`` whose locks expire after ``hold_s``, whose
    waits end after ``wait_s``, and which lets work go on without a lock while Redis cannot
    be reached."""

    def __init__(
        self, connection_url: str, hold_s: float = LOCK_HOLD_S, wait_s: float = LOCK_WAIT_S
    ) -> None:
        super().__init__(connection_url=connection_url)
        self.hold_s, self.wait_s = hold_s, wait_s
        self._unlocked: set[tuple[str, str]] = set()  # (key, holder) let through, no lock
        self._outage = False
        self._guard = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "hold_s": self.hold_s, "wait_s": self.wait_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._unlocked, self._outage, self._guard = set(), False, threading.Lock()

    def _init_clients(self) -> None:
        """prefect-redis builds plain clients from the URL; ours match the server's kind."""
        self.client = connect(self.connection_url, timeout_s=LOCK_TIMEOUT_S)
        self.async_client = aio.connect(self.connection_url, timeout_s=LOCK_TIMEOUT_S)

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        wait, hold = self._limits(acquire_timeout, hold_timeout)
        try:
            acquired = super().acquire_lock(key, holder, wait, hold)
        except OUTAGE_ERRORS as exc:
            return self._let_through(key, holder, outage=exc)
        return self._answer(key, holder, bool(acquired), limited=acquire_timeout is not None)

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        wait, hold = self._limits(acquire_timeout, hold_timeout)
        try:
            acquired = await super().aacquire_lock(key, holder, wait, hold)
        except OUTAGE_ERRORS as exc:
            return self._let_through(key, holder, outage=exc)
        return self._answer(key, holder, bool(acquired), limited=acquire_timeout is not None)

    def release_lock(self, key: str, holder: str) -> None:
        with self._guard:
            if (key, holder) in self._unlocked:
                self._unlocked.discard((key, holder))
                return
        try:
            super().release_lock(key, holder)
        except OUTAGE_ERRORS as exc:  # the lock expires by itself after hold_s
            self._note_outage(exc)

    def is_lock_holder(self, key: str, holder: str) -> bool:
        with self._guard:
            if (key, holder) in self._unlocked:
                return True
        return bool(super().is_lock_holder(key, holder))

    def is_locked(self, key: str) -> bool:
        try:
            return bool(super().is_locked(key))
        except OUTAGE_ERRORS as exc:
            self._note_outage(exc)
            return False

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until the lock is free, ``wait_s`` at most when Prefect gives no timeout;
        True either way, as :meth:`acquire_lock` goes on after that long too."""
        try:
            super().wait_for_lock(key, self.wait_s if timeout is None else timeout)
        except OUTAGE_ERRORS as exc:
            self._note_outage(exc)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        try:
            await super().await_for_lock(key, self.wait_s if timeout is None else timeout)
        except OUTAGE_ERRORS as exc:
            self._note_outage(exc)
        return True

    def _limits(
        self, acquire_timeout: float | None, hold_timeout: float | None
    ) -> tuple[float, float]:
        """How long to wait for a lock and to hold it: the caller's, else ours (Prefect gives
        neither, which means forever)."""
        wait = self.wait_s if acquire_timeout is None else acquire_timeout
        return wait, hold_timeout or self.hold_s

    def _answer(self, key: str, holder: str, acquired: bool, *, limited: bool) -> bool:
        """Redis answered a lock request: the lock, a plain no to a caller that set its own
        limit, or permission to go on without the lock once ``wait_s`` has passed."""
        self._recovered()
        if acquired or limited:
            return acquired
        return self._let_through(key, holder)

    def _let_through(self, key: str, holder: str, outage: Exception | None = None) -> bool:
        """Let ``holder`` work on ``key`` without the lock: Redis is down (``outage``), or
        another holder kept the lock for ``wait_s`` (a run that died holding it, say)."""
        with self._guard:
            self._unlocked.add((key, holder))
        if outage is not None:
            self._note_outage(outage)
        else:
            log.warning(
                "an embedding batch stayed locked by another agent for %.0f s (one that died "
                "holding it, or a slow one); embedding it here too",
                self.wait_s,
            )
        return True

    def _note_outage(self, exc: Exception) -> None:
        with self._guard:
            first, self._outage = not self._outage, True
        if first:
            log.warning(
                "Redis unreachable (%s); embedding batches run without the cross-agent lock "
                "until it is back (two agents may embed the same batch)",
                exc,
            )

    def _recovered(self) -> None:
        with self._guard:
            back, self._outage = self._outage, False
        if back:
            log.info("Redis reachable again; embedding batches are locked again")
