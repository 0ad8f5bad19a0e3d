"""Redis being unreachable: the one list of exceptions that say so, and what codeflow makes
of them (a :class:`~config.errors.RedisUnavailable`, or one log line instead of a traceback).

Every Redis call that may meet an outage catches :data:`OUTAGE_ERRORS`; nothing outside this
package names a Redis exception. This module imports only ``redis``, so the command line can
install :class:`RedisOutageLogs` before anything imports Prefect.
"""

from __future__ import annotations

import logging

import redis

from config.errors import RedisUnavailable

#: What a Redis call raises when the server cannot be reached or does not answer in time:
#: redis-py's own errors (a Redis Cluster's too: down, a slot no master serves, no node
#: reachable), and ``OSError`` from the socket layer below them.
_REDIS_OWN: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.RedisClusterUnreachableError,
)
OUTAGE_ERRORS: tuple[type[Exception], ...] = (*_REDIS_OWN, OSError)


def outage_cause(exc: BaseException | None) -> BaseException | None:
    """``exc`` or the exception it was raised from, if that is redis-py reporting an outage
    (a bare ``OSError`` in a cause chain may be anything, so only redis-py's count here)."""
    seen = 0
    while exc is not None and seen < 10:  # a cause chain is short; never loop on a cycle
        if isinstance(exc, (_REDIS_OWN, RedisUnavailable)):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def as_unavailable(exc: BaseException) -> RedisUnavailable | None:
    """The :class:`RedisUnavailable` that ``exc`` amounts to, or ``None`` if it is no outage."""
    cause = outage_cause(exc)
    if cause is None:
        return None
    if isinstance(cause, RedisUnavailable):
        return cause
    return RedisUnavailable(f"cannot reach Redis ({cause}); start it, fix REDIS_URL, or unset it")


class RedisOutageLogs(logging.Filter):
    """Turn log records whose exception is a Redis outage into one warning line, without
    the traceback. Prefect logs its cached-result writes that fail (Redis gone mid-run)
    with a full traceback at ERROR although the run goes on; the command line installs
    this filter so that an outage reads as what it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = outage_cause(record.exc_info[1] if record.exc_info else None)
        if exc is not None:
            record.msg = f"{record.getMessage()} (Redis unreachable: {exc}); the run goes on"
            record.args, record.exc_info, record.exc_text = None, None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
