"""One client connection: its subscriptions, replay, throttle, outbox and writer.

The session knows nothing of Tornado: it talks to a :class:`Transport` (send a ready-made
WebSocket frame, close) and to a :class:`Source` (the hub: join and leave rooms, read the
stream). The hub calls :meth:`Session.deliver` synchronously for every live event of a joined
room, with the frame's wire bytes built once for the whole room; frames wait in the
:class:`~server.outbox.Outbox` for the throttle and for the previous write to reach the
socket (awaited writes: a client that stops reading stops draining, its outbox fills, and it
is disconnected).

**Replay.** ``subscribe`` with ``since`` joins the room first, then reads the stream after
``since`` in pages. Live events of that room arriving meanwhile are buffered. When a page comes
back short, the replay has reached the present: buffered events newer than the last replayed
ID are queued and the room turns live, all in one synchronous step, so nothing is missed or
doubled at the handover. If the buffer overflows it is dropped and replay simply goes on
reading the stream, which holds those events too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, Protocol

from config.errors import ProtocolError, RedisUnavailable, TransportClosed
from server.auth import Grant
from server.metrics import ServerMetrics
from server.outbox import Outbox, TokenBucket
from server.protocol import (
    CloseCode,
    ConnectionState,
    ErrorCode,
    Ping,
    StreamId,
    Subscribe,
    Unsubscribe,
    encode_error,
    encode_event_frame,
    encode_pong,
    encode_subscribed,
    parse_client_message,
    parse_stream_id,
    wire_frame,
)
from tasks.events.model import rooms_for
from tasks.redis_io.formats import Entry

log = logging.getLogger(__name__)


class Transport(Protocol):
    def send(self, wire: bytes) -> asyncio.Future[None] | None:
        """Write or queue one complete WebSocket frame now (frame order is call order).
        ``None``: the socket took it all; a future: done once it did, failed if the
        connection died first. Raises :class:`TransportClosed` if it is already closing."""

    def close(self, code: int, reason: str) -> None: ...


class Source(Protocol):
    def join(self, room: str, session: Session) -> None: ...

    def leave(self, room: str, session: Session) -> None: ...

    async def read_after(self, after: str, count: int) -> list[Entry]: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits (defaults from the seed: 10 events/s)."""

    events_per_s: float = 10.0
    burst: float = 20.0
    max_queue: int = 1000
    max_rooms: int = 100
    messages_per_s: float = 20.0
    message_burst: float = 40.0
    max_strikes: int = 50
    replay_page: int = 500
    replay_buffer: int = 256


@dataclass(slots=True)
class _Replay:
    """Live events of a room that arrived while its replay was still reading the stream."""

    buffer: list[tuple[StreamId, bytes, float | None, Hashable | None]] = field(
        default_factory=list
    )
    overflowed: bool = False


class Session:
    """Subscriptions and outgoing flow control of one connected client."""

    def __init__(
        self,
        transport: Transport,
        grant: Grant,
        source: Source,
        metrics: ServerMetrics,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = ConnectionState.OPEN
        self.grant = grant
        self._transport = transport
        self._source = source
        self._metrics = metrics
        self._limits = limits
        self._clock = clock
        # room -> its replay while one runs, else the ID live events must exceed (the last
        # replayed one: the range read can return entries the hub has yet to dispatch)
        self._rooms: dict[str, _Replay | StreamId] = {}
        self._outbox = Outbox(limits.max_queue)
        self._bucket = TokenBucket(limits.events_per_s, limits.burst, clock())
        self._inbound = TokenBucket(limits.messages_per_s, limits.message_burst, clock())
        self._strikes = 0
        self._inflight: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = False

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset(self._rooms)

    # ---- messages from the client ------------------------------------------------------

    async def handle(self, raw: str | bytes) -> None:
        """React to one client frame; bad input gets an error frame, never an exception."""
        if self.state is not ConnectionState.OPEN:
            return
        if self._inbound.take(self._clock()) > 0:
            await self._refuse_rate()
            return
        try:
            message = parse_client_message(raw)
        except ProtocolError as exc:
            await self._send_control(encode_error(ErrorCode(exc.code), exc.message))
            return
        if isinstance(message, Ping):
            await self._send_control(encode_pong())
        elif isinstance(message, Subscribe):
            await self._subscribe(message)
        elif isinstance(message, Unsubscribe):
            self._unsubscribe(message.room)

    async def _refuse_rate(self) -> None:
        self._strikes += 1
        if self._strikes > self._limits.max_strikes:
            self.close(CloseCode.POLICY, "too many messages")
            return
        limit = self._limits.messages_per_s
        await self._send_control(
            encode_error(ErrorCode.RATE_LIMITED, f"at most {limit:g} messages per second")
        )

    async def _subscribe(self, message: Subscribe) -> None:
        room = message.room
        if self.grant.expired():
            self.close(CloseCode.UNAUTHORIZED, "token expired")
            return
        if not self.grant.allows(room):
            error = encode_error(ErrorCode.FORBIDDEN, f"your token does not grant room {room!r}")
            await self._send_control(error)
            return
        if room in self._rooms:
            await self._send_control(encode_subscribed(room))
            return
        if len(self._rooms) >= self._limits.max_rooms:
            limit = self._limits.max_rooms
            error = encode_error(ErrorCode.TOO_MANY_ROOMS, f"at most {limit} rooms per connection")
            await self._send_control(error)
            return
        # Write the acknowledgement before joining: its frame then precedes every event frame.
        written = self._write_control(encode_subscribed(room))
        replay = _Replay() if message.since is not None else None
        self._rooms[room] = replay or _ALL
        self._source.join(room, self)
        if replay is not None and message.since is not None:
            self._spawn(self._replay(room, message.since, replay))
        with contextlib.suppress(TransportClosed):
            await _flushed(written)

    def _unsubscribe(self, room: str) -> None:
        if self._rooms.pop(room, _MISSING) is not _MISSING:
            self._source.leave(room, self)

    # ---- live events from the hub ------------------------------------------------------

    def deliver(
        self, room: str, entry_id: StreamId, frame: bytes, ts: float | None, key: Hashable | None
    ) -> None:
        """Called by the hub, synchronously, for every live event of a room we joined."""
        replay = self._rooms.get(room)
        if type(replay) is tuple:
            if entry_id > replay:
                self._enqueue(frame, ts, key)
        elif isinstance(replay, _Replay) and not replay.overflowed:
            replay.buffer.append((entry_id, frame, ts, key))
            if len(replay.buffer) > self._limits.replay_buffer:
                replay.buffer.clear()
                replay.overflowed = True

    def _enqueue(self, frame: bytes, ts: float | None, key: Hashable | None) -> None:
        if self.state is not ConnectionState.OPEN:
            return
        if not self._outbox and self._timer is None and self._idle() and self._may_send():
            if self._send_now(frame):  # the common case: nothing waiting, write at once
                self._metrics.event_sent(ts)
            return
        coalesced = self._outbox.coalesced
        if not self._outbox.push(frame, ts, key):
            self._metrics.slow_consumers.inc()
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer: too many frames waiting")
            return
        if self._outbox.coalesced != coalesced:
            self._metrics.coalesced.inc()
        self._pump()

    def _pump(self) -> None:
        """Write waiting frames while the socket keeps up and the throttle allows.

        No task per client: a write that the socket takes at once completes synchronously;
        one that does not is awaited through its done-callback, which pumps again. While it
        is pending, frames wait in the outbox (bounded), which is the backpressure."""
        self._timer = None
        while self._outbox and self.state is ConnectionState.OPEN:
            if self._inflight is not None and not self._inflight.done():
                return
            wait = 0.0 if self._draining else self._bucket.take(self._clock())
            if wait > 0:  # no token yet: come back when there is one
                self._timer = asyncio.get_running_loop().call_later(wait, self._pump)
                return
            frame = self._outbox.pop()
            if frame is None or not self._send_now(frame.data):
                return
            self._metrics.event_sent(frame.ts)
        if self._drained is not None and not self._drained.done() and self._idle():
            self._drained.set_result(None)

    def _send_now(self, wire: bytes) -> bool:
        try:
            future = self._transport.send(wire)
        except TransportClosed:
            self._outbox.clear()
            return False
        if future is not None and not future.done():
            self._inflight = future
            future.add_done_callback(self._written)
        return True

    def _written(self, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._outbox.clear()  # the connection is gone; on_close follows
            return
        if self._timer is None:
            self._pump()

    def _may_send(self) -> bool:
        return self._draining or self._bucket.take(self._clock()) == 0.0

    def _idle(self) -> bool:
        return not self._outbox and (self._inflight is None or self._inflight.done())

    # ---- replay ------------------------------------------------------------------------

    async def _replay(self, room: str, since: str, replay: _Replay) -> None:
        cursor = since
        page = self._limits.replay_page
        try:
            while self._rooms.get(room) is replay and self.state is ConnectionState.OPEN:
                entries = await self._source.read_after(cursor, page)
                for entry_id, raw, event in entries:
                    if room in rooms_for(event) and self._rooms.get(room) is replay:
                        await self._send_awaited(
                            wire_frame(encode_event_frame(room, entry_id, raw))
                        )
                        self._metrics.replayed_sent()
                if entries:
                    cursor = entries[-1][0]
                if len(entries) < page and self._rooms.get(room) is replay:
                    if replay.overflowed:
                        replay.buffer.clear()
                        replay.overflowed = False
                        continue
                    self._go_live(room, replay, parse_stream_id(cursor))
        except TransportClosed:
            return
        except RedisUnavailable as exc:
            log.warning("replay of %s failed: %s", room, exc)
            self.close(CloseCode.TRY_AGAIN_LATER, "event stream unavailable: reconnect later")

    def _go_live(self, room: str, replay: _Replay, cursor: StreamId) -> None:
        """Queue buffered events newer than the replay's last ID and turn the room live."""
        self._rooms[room] = cursor
        for entry_id, frame, ts, key in replay.buffer:
            if entry_id > cursor:
                self._enqueue(frame, ts, key)
        replay.buffer.clear()

    # ---- sending and closing -----------------------------------------------------------

    def _write_control(self, frame: bytes) -> asyncio.Future[None] | None:
        try:
            written = self._transport.send(wire_frame(frame))
        except TransportClosed:
            return None
        self._metrics.control_sent()
        return written

    async def _send_control(self, frame: bytes) -> None:
        with contextlib.suppress(TransportClosed):
            await _flushed(self._write_control(frame))

    async def _send_awaited(self, wire: bytes) -> None:
        await _flushed(self._transport.send(wire))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self, code: int, reason: str) -> None:
        """Close from our side (policy, slow consumer, shutdown)."""
        if self.state is ConnectionState.OPEN:
            self.state = ConnectionState.CLOSING
            self._transport.close(code, reason)
        self._release()

    def closed(self) -> None:
        """The connection is gone (either side closed it)."""
        self.state = ConnectionState.CLOSED
        self._release()

    def _release(self) -> None:
        for room in list(self._rooms):
            self._source.leave(room, self)
        self._rooms.clear()
        self._outbox.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        # Replay tasks are not cancelled (they may be awaiting a write); they see the state
        # and stop.

    async def drain(self) -> None:
        """Flush waiting frames without the throttle (graceful shutdown)."""
        self._draining = True
        if self._idle():
            return
        self._drained = asyncio.get_running_loop().create_future()
        self._pump()
        await self._drained


async def _flushed(future: asyncio.Future[None] | None) -> None:
    """Wait until a write reached the socket; raise TransportClosed if it never will."""
    if future is None:
        return
    if not future.done():
        await asyncio.wait([future])
    if future.cancelled() or future.exception() is not None:
        raise TransportClosed("connection closed")


_MISSING: Final = object()
_ALL: Final[StreamId] = (-1, -1)
