"""One JSON object per log line, for workers and flow runs (see config/logging.yml).

Prefect's own ``JsonFormatter`` dumps the raw ``LogRecord`` (``msg`` and ``args`` unrendered
unless another handler happened to format the record first), which log pipelines cannot
search. This one always renders the message and keeps the fields people filter on: the run,
task, flow, deployment and worker a line is about, when Prefect attached them.

>>> record = logging.makeLogRecord({"name": "w", "levelname": "INFO", "msg": "%d runs",
...                                 "args": (2,), "created": 0.0, "flow_run_id": "r1"})
>>> print(JsonFormatter().format(record).replace(',"message"', ',\\n "message"'))
{"ts":"1970-01-01T00:00:00.000Z","level":"INFO","logger":"w",
 "message":"2 runs","flow_run_id":"r1"}
"""

from __future__ import annotations

import logging
import time

import orjson

CONTEXT_FIELDS = (
    "flow_run_id",
    "flow_run_name",
    "flow_name",
    "task_run_id",
    "task_run_name",
    "task_name",
    "deployment_name",
    "worker_name",
    "work_pool_name",
)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", <context fields>, "exception"?}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value not in (None, "", "<unknown>"):
                line[name] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"
