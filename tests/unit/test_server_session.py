"""The session's replay → live handover, driven step by step with in-memory collaborators
(a real stream-like Source and a recording Transport, no server, no Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from server.auth import Grant
from server.metrics import ServerMetrics
from server.protocol import (
    coalesce_key,
    encode_event_frame,
    frame_payload,
    parse_stream_id,
    wire_frame,
)
from server.session import Limits, Session
from tasks.redis_io.formats import Entry

ROOM = "run:r"


class RecordingTransport:
    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    def send(self, wire: bytes) -> asyncio.Future[None] | None:
        self.frames.put_nowait(orjson.loads(frame_payload(wire)))
        return None

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def take(self, count: int) -> list[dict[str, Any]]:
        return [await asyncio.wait_for(self.frames.get(), 5) for _ in range(count)]


class MemoryStream:
    """A stream and a hub in one: ``publish`` appends, ``dispatch`` delivers live."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.members: dict[str, set[Session]] = {}
        self.reads = 0
        self.before: dict[int, Callable[[], None]] = {}  # read number -> hook
        self.after: dict[int, Callable[[], None]] = {}

    def publish(self, n: int) -> str:
        event = {"kind": "task_run.state", "flow_run_id": "r", "state": "Running", "n": n}
        entry_id = f"{1000 + n}-0"
        self.entries.append((entry_id, orjson.dumps(event), event))
        return entry_id

    def dispatch(self, entry_id: str) -> None:
        _, raw, event = next(e for e in self.entries if e[0] == entry_id)
        for session in self.members.get(ROOM, ()):
            frame = wire_frame(encode_event_frame(ROOM, entry_id, raw))
            session.deliver(ROOM, parse_stream_id(entry_id), frame, None, coalesce_key(ROOM, event))

    def join(self, room: str, session: Session) -> None:
        self.members.setdefault(room, set()).add(session)

    def leave(self, room: str, session: Session) -> None:
        self.members.get(room, set()).discard(session)

    async def read_after(self, after: str, count: int) -> list[Entry]:
        await asyncio.sleep(0)
        number, self.reads = self.reads, self.reads + 1
        if number in self.before:
            self.before[number]()
        cut = parse_stream_id(after)
        snapshot = [e for e in self.entries if parse_stream_id(e[0]) > cut][:count]
        if number in self.after:
            self.after[number]()
        return snapshot


def make_session(stream: MemoryStream, **limits: Any) -> tuple[Session, RecordingTransport]:
    transport = RecordingTransport()
    grant = Grant(frozenset({"*"}), expires=2**40)
    session = Session(transport, grant, stream, ServerMetrics(), Limits(**limits))
    return session, transport


def test_handover_delivers_each_event_once_in_order() -> None:
    async def scenario() -> None:
        stream = MemoryStream()
        ids = [stream.publish(n) for n in range(5)]
        session, transport = make_session(stream, events_per_s=1e6, burst=1e6, replay_page=4)

        def publish_and_dispatch_during_read() -> None:
            # published and dispatched live before the range read sees the stream: both paths
            ids.extend(stream.publish(n) for n in (5, 6))
            stream.dispatch(ids[5])
            stream.dispatch(ids[6])

        def publish_after_snapshot() -> None:
            # dispatched live but missing from the range reply: only the buffer has it
            ids.append(stream.publish(7))
            stream.dispatch(ids[7])

        stream.before[0] = publish_and_dispatch_during_read  # first page: 1..4 (full)
        stream.after[1] = publish_after_snapshot  # second page: 5, 6 (short); 7 from the buffer
        await session.handle(orjson.dumps({"type": "subscribe", "room": ROOM, "since": ids[0]}))
        assert await transport.take(1) == [{"type": "subscribed", "room": ROOM}]
        replayed = await transport.take(7)
        assert stream.reads == 2
        ids.append(stream.publish(8))
        stream.dispatch(ids[8])  # live
        live = await transport.take(1)
        assert [f["id"] for f in replayed + live] == ids[1:]
        assert transport.frames.empty()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_entries_read_before_the_hub_dispatched_them_are_not_sent_twice() -> None:
    """The range read can return entries published after the hub's last read; when the hub
    dispatches them after the handover they must not be delivered again."""

    async def scenario() -> None:
        stream = MemoryStream()
        ids = [stream.publish(n) for n in range(3)]
        session, transport = make_session(stream, events_per_s=1e6, burst=1e6)
        await session.handle(orjson.dumps({"type": "subscribe", "room": ROOM, "since": ids[0]}))
        frames = await transport.take(3)  # subscribed, 1, 2 (the hub has dispatched none)
        for entry_id in ids:  # the hub catches up after the handover
            stream.dispatch(entry_id)
        ids.append(stream.publish(3))
        stream.dispatch(ids[3])
        frames += await transport.take(1)
        assert [f.get("id") for f in frames] == [None, *ids[1:]]
        assert transport.frames.empty()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_buffer_overflow_falls_back_to_reading_the_stream() -> None:
    async def scenario() -> None:
        stream = MemoryStream()
        ids = [stream.publish(0)]
        session, transport = make_session(
            stream, events_per_s=1e6, burst=1e6, replay_page=100, replay_buffer=3
        )

        def flood() -> None:
            for n in range(1, 20):
                ids.append(stream.publish(n))
                stream.dispatch(ids[-1])

        stream.after[0] = flood  # 19 live events the first reply lacks: buffer overflows
        await session.handle(orjson.dumps({"type": "subscribe", "room": ROOM, "since": ids[0]}))
        frames = await transport.take(1 + 19)
        assert [f["id"] for f in frames[1:]] == ids[1:]
        assert transport.frames.empty()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_unsubscribe_stops_live_delivery_and_forbidden_rooms_are_refused() -> None:
    async def scenario() -> None:
        stream = MemoryStream()
        transport = RecordingTransport()
        grant = Grant(frozenset({"run:other"}), expires=2**40)
        session = Session(transport, grant, stream, ServerMetrics(), Limits())
        await session.handle(b'{"type":"subscribe","room":"run:r"}')
        (reply,) = await transport.take(1)
        assert reply["type"] == "error" and reply["code"] == "forbidden"
        assert stream.members.get(ROOM, set()) == set()

    asyncio.run(asyncio.wait_for(scenario(), 10))
