"""The event bus: compact JSON events in a capped Redis Stream.

Flows and tasks publish; every realtime server instance reads the same stream, so each sees
every event (horizontal scaling), and a client that reconnects asks for what it missed by
the last stream ID it saw (replay). Publishing never raises: while Redis is unreachable events
are dropped and counted, so a run never fails because nobody can watch it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from config.errors import RedisUnavailable
from tasks.events.model import Event
from tasks.redis_io.formats import STREAM, decode_entry, stream_fields
from tasks.redis_io.outage import OUTAGE_ERRORS

if TYPE_CHECKING:
    from tasks.redis_io.connections import SyncClient

log = logging.getLogger(__name__)


class EventBus:
    """Publish to and read from the capped stream (``maxlen`` entries, approximately)."""

    def __init__(
        self,
        client: SyncClient,
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
        pipe.xadd(self.stream, stream_fields(event), maxlen=self.maxlen, approximate=True)
        pipe.expire(self.stream, self.ttl_s)
        try:
            entry_id, _ = pipe.execute()
        except OUTAGE_ERRORS as exc:
            self.counters["dropped"] += 1
            log.debug("event dropped, Redis unreachable: %s", exc)
            return None
        self.counters["published"] += 1
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def read(
        self, after: str = "0-0", *, count: int = 1000, block_ms: int | None = None
    ) -> list[tuple[str, Event]]:
        """Events strictly after stream ID ``after`` (``"0-0"``: from the oldest kept); raises
        :class:`RedisUnavailable` when Redis cannot be reached."""
        try:
            reply: Any = self.client.xread({self.stream: after}, count=count, block=block_ms)
        except OUTAGE_ERRORS as exc:
            raise RedisUnavailable(f"cannot read the event stream: {exc}") from exc
        entries = (decode_entry(i, fields) for _, batch in reply or [] for i, fields in batch)
        return [(entry_id, event) for entry_id, _, event in entries]

    def last_id(self) -> str:
        """The newest entry's ID (``"0-0"`` for an empty stream)."""
        try:
            entries: Any = self.client.xrevrange(self.stream, count=1)
        except OUTAGE_ERRORS as exc:
            raise RedisUnavailable(f"cannot read the event stream: {exc}") from exc
        return decode_entry(entries[0][0], {})[0] if entries else "0-0"
