"""Per-caller rate limits for the HTTP API, as pure logic: a token bucket per key.

Each caller (a hash of its token, see :func:`token_key`) gets ``per_minute`` requests a
minute with ``burst`` saved up. :meth:`KeyedRateLimiter.check` answers ``None`` (go ahead)
or the seconds until the caller's next request would be allowed; the HTTP layer turns that
into 429 and ``Retry-After`` (:func:`retry_after_s`). Time is passed in through ``clock``,
so tests drive it without sleeping.

>>> clock = iter([0.0, 0.0, 0.0, 30.0]).__next__
>>> limiter = KeyedRateLimiter(per_minute=2, burst=2, clock=clock)
>>> [limiter.check("k") for _ in range(3)], limiter.check("k")
([None, None, 30.0], None)

Memory stays bounded: a bucket that has refilled completely is the same as no bucket, so
buckets idle that long are dropped as later calls pass by, and at most ``max_keys`` are kept
(beyond that the least recently seen goes, which at worst gives that caller a fresh burst).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from server.outbox import TokenBucket

DEFAULT_MAX_KEYS = 10_000


def token_key(token: str) -> str:
    """The limiter key of ``token``: a hash, so the token itself is never kept."""
    return hashlib.blake2b(token.encode(), digest_size=16, person=b"codeflow-rl").hexdigest()


def retry_after_s(wait_s: float) -> int:
    """``Retry-After`` in whole seconds: rounded up, at least 1."""
    return max(1, math.ceil(wait_s))


class KeyedRateLimiter:
    """A :class:`~server.outbox.TokenBucket` per key: ``per_minute`` requests a minute, at
    most ``burst`` at once. Synchronous and lock-free: call it from one thread (the event
    loop)."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("per_minute must be positive, burst and max_keys at least 1")
        self.rate = per_minute / 60.0
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._refill_s = burst / self.rate
        self._buckets: OrderedDict[str, tuple[TokenBucket, float]] = OrderedDict()

    def check(self, key: str) -> float | None:
        """Count one request of ``key``: ``None`` if allowed, else the seconds to wait (the
        refused request costs nothing)."""
        now = self._clock()
        self._drop_idle(now)
        entry = self._buckets.pop(key, None)
        bucket = entry[0] if entry else TokenBucket(self.rate, self.burst, now)
        self._buckets[key] = (bucket, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        wait = bucket.take(now)
        return None if wait == 0.0 else wait

    def __len__(self) -> int:
        return len(self._buckets)

    def _drop_idle(self, now: float) -> None:
        """Drop buckets unseen for a full refill; the oldest come first (insertion order)."""
        while self._buckets:
            _, last_seen = next(iter(self._buckets.values()))
            if now - last_seen < self._refill_s:
                return
            self._buckets.popitem(last=False)
