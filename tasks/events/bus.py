"""The event bus: compact JSON events in a capped Redis Stream.

Flows and tasks publish; every realtime server instance reads the same stream, so each sees
every event (horizontal scaling), and a client that reconnects asks for what it missed by
the last stream ID it saw (replay). Publishing never raises: while Redis is unreachable events
are dropped and counted, so a run never fails because nobody can watch it.

An event is a flat JSON object with at least ``kind`` and ``ts`` (seconds since the epoch):

>>> event = make_event("progress", flow_run_id="r1", flow_name="vectorize", done=3, total=9,
...                    unit="files")
>>> sorted(event)
['done', 'flow_name', 'flow_run_id', 'kind', 'total', 'ts', 'unit']
>>> rooms_for(event)
['run:r1']
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
import redis

log = logging.getLogger(__name__)

STREAM = "codeflow:events"
KINDS = frozenset(
    {
        "flow_run.state",
        "task_run.state",
        "progress",
        "sandbox.result",
        "cache.invalidated",
        "index.summary",
    }
)
STATES = frozenset(
    {
        "Scheduled",
        "Pending",
        "Running",
        "Retrying",
        "Cached",
        "Completed",
        "Failed",
        "Crashed",
        "Cancelled",
        "Cancelling",
        "Paused",
        "AwaitingRetry",
        "Late",
    }
)
_SECRET_NAME = re.compile(r"secret|password|passwd|api_?key|authorization|credential|(^|_)token$")
_OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)

Event = dict[str, Any]


def make_event(kind: str, **fields: Any) -> Event:
    """Build an event: known kind, ``ts`` stamped, ``None`` fields dropped, no secret fields."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {sorted(KINDS)}")
    state = fields.get("state")
    if state is not None and state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    for name in fields:
        if _SECRET_NAME.search(name.lower()):
            raise ValueError(f"event field {name!r} looks like a secret; events are public")
    event: Event = {"kind": kind, "ts": fields.pop("ts", None) or time.time()}
    event.update((k, v) for k, v in fields.items() if v is not None)
    return event


def rooms_for(event: Mapping[str, Any]) -> list[str]:
    """The rooms an event belongs to: ``runs`` (flow-run states), ``run:<id>``, ``repo:<id>``."""
    rooms = []
    if event.get("kind") == "flow_run.state":
        rooms.append("runs")
    if event.get("flow_run_id"):
        rooms.append(f"run:{event['flow_run_id']}")
    if event.get("repo_id"):
        rooms.append(f"repo:{event['repo_id']}")
    return rooms


def encode_event(event: Mapping[str, Any]) -> bytes:
    return orjson.dumps(event)


def decode_entry(fields: Mapping[bytes, bytes]) -> Event:
    """Decode one stream entry's fields; malformed entries decode to an empty dict."""
    try:
        data = orjson.loads(fields[b"e"])
    except (KeyError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


class EventBus:
    """Publish to and read from the capped stream (``maxlen`` entries, approximately)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str = STREAM,
        maxlen: int = 100_000,
        ttl_s: int = 30 * 86400,
    ) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self.counters: Counter[str] = Counter()

    def publish(self, event: Mapping[str, Any]) -> str | None:
        """Append ``event``; returns its stream ID, or ``None`` if Redis is unreachable."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.stream, {"e": encode_event(event)}, maxlen=self.maxlen, approximate=True)
        pipe.expire(self.stream, self.ttl_s)
        try:
            entry_id, _ = pipe.execute()
        except _OUTAGE_ERRORS as exc:
            self.counters["dropped"] += 1
            log.debug("event dropped, Redis unreachable: %s", exc)
            return None
        self.counters["published"] += 1
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def read(
        self, after: str = "0-0", *, count: int = 1000, block_ms: int | None = None
    ) -> list[tuple[str, Event]]:
        """Events strictly after stream ID ``after`` (``"0-0"``: from the oldest kept)."""
        reply: Any = self.client.xread({self.stream: after}, count=count, block=block_ms)
        return [
            (_text(entry_id), decode_entry(fields))
            for _, entries in reply or []
            for entry_id, fields in entries
        ]

    def last_id(self) -> str:
        """The newest entry's ID (``"0-0"`` for an empty stream)."""
        entries: Any = self.client.xrevrange(self.stream, count=1)
        return _text(entries[0][0]) if entries else "0-0"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
