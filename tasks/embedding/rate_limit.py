"""A client-side limiter for requests *and* tokens per minute that follows the server.

Pure logic (a lock, a clock and a sleep function; no I/O), shared by every thread that calls
one API with one key. Each budget is a GCRA ("virtual scheduling") bucket: a request costing
``c`` units is admitted when the bucket's theoretical arrival time minus the burst tolerance
has passed, and then moves that time ``c / rate`` seconds on. Guarantees, for any window of
``W`` seconds:

* requests admitted <= ``rpm * W / 60 + burst + 1``; with ``burst=0`` (the default) requests are
  evenly spaced ``60 / rpm`` seconds apart, so no 60-second window holds more than ``rpm``;
* tokens admitted <= ``tpm * W / 60 + burst`` + the last request's tokens (a single request
  may be larger than a minute's share: it goes, and the next one waits for the debt).

The server's view wins where it is stricter. :meth:`RateLimiter.observe` reads OpenAI's
``x-ratelimit-limit-*``, ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` headers: a
lower limit than configured replaces the configured one (other clients may share the key),
and a remaining budget smaller than the next request holds that budget until the reset time.
:meth:`RateLimiter.penalize` holds everything for a ``Retry-After``.

>>> limiter = RateLimiter(rpm=600, tpm=1_000_000)
>>> limiter.acquire(tokens=1200)   # returns the seconds it waited
0.0
>>> limiter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"})
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations (``"20ms"``, ``"1s"``, ``"6m0s"``, ``"1h2m3.5s"``) or plain
    seconds (``"2.5"``, as in ``Retry-After``) -> seconds; ``None`` if unreadable."""
    value = text.strip().lower()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


@dataclass
class Budget:
    """One GCRA bucket (units per minute) plus what the server last said about it."""

    per_minute: float
    burst: float = 0.0
    tat: float = 0.0  # theoretical arrival time, in clock seconds
    server_remaining: float | None = None
    server_reset_at: float = 0.0

    @property
    def rate(self) -> float:
        return self.per_minute / 60.0

    def wait(self, now: float, cost: float) -> float:
        """Seconds until ``cost`` units may go (0 if now)."""
        paced = self.tat - self.burst / self.rate - now
        held = 0.0
        remaining = self.server_remaining
        if remaining is not None and now < self.server_reset_at and cost > remaining:
            held = self.server_reset_at - now
        return max(0.0, paced, held)

    def commit(self, now: float, cost: float) -> None:
        self.tat = max(self.tat, now) + cost / self.rate
        if self.server_remaining is not None:
            if now >= self.server_reset_at:
                self.server_remaining = None
            else:
                self.server_remaining -= cost

    def follow(
        self, now: float, limit: int | None, remaining: int | None, reset: float | None
    ) -> None:
        """Adopt a stricter server limit; remember its remaining budget until the reset."""
        if limit is not None and 0 < limit < self.per_minute:
            self.per_minute = float(limit)
        if remaining is not None and reset is not None:
            self.server_remaining = float(remaining)
            self.server_reset_at = now + reset


@dataclass
class LimiterStats:
    """What the limiter did: how often and how long callers waited, how often the server
    pushed back (429s reported through :meth:`RateLimiter.penalize`)."""

    admitted: int = 0
    waits: int = 0
    waited_s: float = 0.0
    penalties: int = 0


class RateLimiter:
    """Requests-per-minute and tokens-per-minute budgets, thread-safe, server-following.

    ``clock`` and ``sleep`` are injectable so tests run on a fake clock without sleeping.
    """

    def __init__(
        self,
        *,
        rpm: float,
        tpm: float,
        request_burst: float = 0.0,
        token_burst: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rpm <= 0 or tpm <= 0:
            raise ValueError(f"rate limits must be positive, got rpm={rpm} tpm={tpm}")
        self.requests = Budget(float(rpm), burst=request_burst)
        self.tokens = Budget(float(tpm), burst=token_burst)
        self.stats = LimiterStats()
        self._hold_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def _wait(self, now: float, tokens: int) -> float:
        return max(
            self._hold_until - now,
            self.requests.wait(now, 1),
            self.tokens.wait(now, tokens),
            0.0,
        )

    def acquire(self, tokens: int) -> float:
        """Block until one request of ``tokens`` tokens may be sent; return seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait(now, tokens)
                if wait <= 0:
                    self.requests.commit(now, 1)
                    self.tokens.commit(now, tokens)
                    self.stats.admitted += 1
                    if waited:
                        self.stats.waits += 1
                        self.stats.waited_s += waited
                    return waited
            self._sleep(wait)
            waited += wait

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow OpenAI-style ``x-ratelimit-*`` response headers (names lower-case)."""
        with self._lock:
            now = self._clock()
            for kind, budget in (("requests", self.requests), ("tokens", self.tokens)):
                reset_raw = headers.get(f"x-ratelimit-reset-{kind}")
                budget.follow(
                    now,
                    _int_header(headers, f"x-ratelimit-limit-{kind}"),
                    _int_header(headers, f"x-ratelimit-remaining-{kind}"),
                    parse_duration(reset_raw) if reset_raw is not None else None,
                )

    def penalize(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (a 429's ``Retry-After``)."""
        with self._lock:
            self.stats.penalties += 1
            self._hold_until = max(self._hold_until, self._clock() + max(0.0, seconds))
