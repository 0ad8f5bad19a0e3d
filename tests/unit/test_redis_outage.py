"""Log records about Redis being unreachable become one warning line, not a traceback."""

from __future__ import annotations

import logging
import sys

import redis

from tasks.redis_io.outage import RedisOutageLogs


def _record_of(exc: BaseException, message: str = "committing transaction %r") -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.makeLogRecord(
        {"name": "prefect.task_runs", "levelno": logging.ERROR, "levelname": "ERROR",
         "msg": message, "args": ("abc",), "exc_info": info}
    )  # fmt: skip


def _outage_inside() -> RuntimeError:
    """A RuntimeError raised while handling a Redis connection error, as Prefect wraps it."""
    try:
        try:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6391.")
        except redis.ConnectionError as inner:
            raise RuntimeError("commit failed") from inner
    except RuntimeError as outer:
        return outer


def test_a_redis_outage_becomes_one_warning_line() -> None:
    record = _record_of(_outage_inside())
    assert RedisOutageLogs().filter(record)
    assert record.levelno == logging.WARNING and record.levelname == "WARNING"
    assert record.exc_info is None and record.exc_text is None
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert line == (
        "WARNING committing transaction 'abc' (Redis unreachable: Error 111 connecting to "
        "127.0.0.1:6391.); the run goes on"
    )
    assert "Traceback" not in line


def test_other_errors_keep_their_level_and_traceback() -> None:
    record = _record_of(ValueError("bad value"))
    assert RedisOutageLogs().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "Traceback" in logging.Formatter().format(record)


def test_records_without_an_exception_pass_unchanged() -> None:
    record = logging.makeLogRecord({"msg": "hello %s", "args": ("x",), "levelno": logging.INFO})
    assert RedisOutageLogs().filter(record)
    assert record.getMessage() == "hello x" and record.levelno == logging.INFO
