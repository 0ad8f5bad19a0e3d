"""The hub: one reader of the event stream per process, fanning events out to local rooms.

Every server process runs one :class:`Hub`, which follows the whole stream with ``XREAD
BLOCK`` from the newest entry it has seen. That is the horizontal scaling: processes share
nothing but Redis, and each sees every event. For each entry the hub decodes the event once,
works out its rooms (:func:`tasks.events.model.rooms_for`) and, per room with listeners, builds
the complete WebSocket frame once and hands the same bytes to every session in the room.

If Redis goes away the reader retries with backoff from its last ID, so nothing published
meanwhile is skipped once Redis is back (as long as the capped stream still holds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from config.errors import RedisUnavailable
from server.history import RunHistory
from server.metrics import ServerMetrics
from server.protocol import (
    StreamId,
    coalesce_key,
    encode_event_frame,
    parse_stream_id,
    wire_frame,
)
from server.session import Session
from tasks.events.model import rooms_for
from tasks.redis_io import aio
from tasks.redis_io.formats import Entry

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 5.0


class Hub:
    """Rooms of local sessions, fed by one stream reader task."""

    def __init__(
        self,
        client: aio.Client,
        reader: aio.Client,
        stream: str,
        metrics: ServerMetrics,
        *,
        history: RunHistory | None = None,
        block_ms: int = 2000,
        batch: int = 1000,
    ) -> None:
        self.stream = stream
        self._client = client
        self._reader = reader
        self._metrics = metrics
        self.history = history or RunHistory()
        self._block_ms = block_ms
        self._batch = batch
        self._rooms: dict[str, set[Session]] = {}
        self._cursor: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    @property
    def cursor(self) -> StreamId | None:
        """The newest stream ID dispatched (``None`` until Redis was first reached)."""
        return None if self._cursor is None else parse_stream_id(self._cursor)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ---- rooms (the session's Source protocol) -------------------------------------------

    def join(self, room: str, session: Session) -> None:
        self._rooms.setdefault(room, set()).add(session)

    def leave(self, room: str, session: Session) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.discard(session)
            if not members:
                del self._rooms[room]

    def listeners(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    async def read_after(self, after: str, count: int) -> list[Entry]:
        """Stream entries strictly after ``after`` (for replay); raises RedisUnavailable."""
        return await aio.entries_after(self._client, self.stream, after, count)

    # ---- the reader --------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                if self._cursor is None:
                    self._cursor = await aio.newest_id(self._reader, self.stream)
                    self.ready.set()
                entries = await aio.next_entries(
                    self._reader, self.stream, self._cursor, self._batch, self._block_ms
                )
            except RedisUnavailable as exc:
                self._metrics.redis_outage()
                log.warning("event stream unreachable (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            backoff = 0.1
            self.dispatch(entries)

    def dispatch(self, entries: Sequence[Entry]) -> None:
        """Fan stream entries out to the sessions of their rooms (synchronous: no await, so a
        session's replay handover sees a consistent cursor)."""
        for entry_id, raw, event in entries:
            self._cursor = entry_id
            self._metrics.events_read.inc()
            if event:
                self._metrics.runs.observe(event)
                self.history.observe(entry_id, event)
                self._fan_out(entry_id, raw, event)

    def _fan_out(self, entry_id: str, raw: bytes, event: dict[str, Any]) -> None:
        stream_id: StreamId | None = None
        for room in rooms_for(event):
            members = self._rooms.get(room)
            if not members:
                continue
            stream_id = stream_id or parse_stream_id(entry_id)
            frame = wire_frame(encode_event_frame(room, entry_id, raw))
            key = coalesce_key(room, event)
            ts = event.get("ts")
            for session in tuple(members):
                session.deliver(room, stream_id, frame, ts, key)
