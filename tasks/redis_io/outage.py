"""Redis being unreachable, as the exceptions that say so and as log lines.

Kept apart from :mod:`tasks.pipeline.batch_locks` (which needs prefect-redis, hence Prefect) so that
the command line can install :class:`RedisOutageLogs` before anything imports Prefect.
"""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


class RedisOutageLogs(logging.Filter):
    """Turn log records whose exception is a Redis outage into one warning line, without
    the traceback. Prefect logs its cached-result writes that fail (Redis gone mid-run)
    with a full traceback at ERROR although the run goes on; the command line installs
    this filter so that an outage reads as what it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = _redis_outage(record.exc_info[1] if record.exc_info else None)
        if exc is not None:
            record.msg = f"{record.getMessage()} (Redis unreachable: {exc}); the run goes on"
            record.args, record.exc_info, record.exc_text = None, None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _redis_outage(exc: BaseException | None) -> BaseException | None:
    """``exc`` or the exception it was raised from, if that is a Redis outage."""
    seen = 0
    while exc is not None and seen < 10:  # a cause chain is short; never loop on a cycle
        if isinstance(exc, REDIS_DOWN):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None
