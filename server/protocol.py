"""The WebSocket protocol as pure functions: parse what clients send, encode what we send.

Nothing here does I/O, so every rule of the wire format is unit-tested without a server.
Client → server::

    {"type": "subscribe", "room": "run:42", "since": "1718000000000-0"}   # since is optional
    {"type": "unsubscribe", "room": "run:42"}
    {"type": "ping"}

Server → client::

    {"type": "subscribed", "room": "run:42"}
    {"type": "event", "room": "run:42", "id": "1718000000001-0", "event": {...}}
    {"type": "pong"}
    {"type": "error", "code": "forbidden", "message": "..."}

An event frame is built once per room and broadcast (:func:`encode_event_frame` splices the
event's JSON as stored in the stream, so nothing is re-encoded per client):

>>> encode_event_frame("runs", "5-0", b'{"kind":"flow_run.state"}')
b'{"type":"event","room":"runs","id":"5-0","event":{"kind":"flow_run.state"}}'
>>> parse_client_message('{"type": "subscribe", "room": "runs"}')
Subscribe(room='runs', since=None)
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import orjson

from config.errors import ProtocolError

MAX_CLIENT_MESSAGE_BYTES = 4096
_ROOM = re.compile(r"runs|cache|run:[A-Za-z0-9_.:-]{1,128}|repo:[A-Za-z0-9_.:/@+-]{1,200}")
_STREAM_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")

StreamId = tuple[int, int]


class ConnectionState(enum.Enum):
    """Phases of one WebSocket connection; only OPEN connections receive events."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class ErrorCode(enum.StrEnum):
    """The ``code`` of an error frame."""

    FORBIDDEN = "forbidden"
    BAD_REQUEST = "bad_request"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_ROOMS = "too_many_rooms"
    UNAVAILABLE = "unavailable"


class CloseCode(enum.IntEnum):
    """WebSocket close codes we send (4xxx are application codes, mirroring HTTP)."""

    GOING_AWAY = 1001
    POLICY = 1008
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    SLOW_CONSUMER = 4008


@dataclass(frozen=True, slots=True)
class Subscribe:
    room: str
    since: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    room: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientMessage = Subscribe | Unsubscribe | Ping


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Decode and validate one client frame; raises :class:`ProtocolError` with a code."""
    if len(raw) > MAX_CLIENT_MESSAGE_BYTES:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"messages are limited to {MAX_CLIENT_MESSAGE_BYTES} bytes"
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "message must be a JSON object")
    kind = data.get("type")
    if kind == "ping":
        return Ping()
    if kind == "subscribe":
        return Subscribe(_room(data), _since(data.get("since")))
    if kind == "unsubscribe":
        return Unsubscribe(_room(data))
    raise ProtocolError(
        ErrorCode.BAD_REQUEST,
        f"unknown message type {str(kind)[:40]!r}; expected subscribe, unsubscribe or ping",
    )


def _room(data: dict[str, Any]) -> str:
    room = data.get("room")
    if not isinstance(room, str) or not is_valid_room(room):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "room must be 'runs', 'cache', 'run:<flow run id>' or 'repo:<repository id>'",
        )
    return room


def _since(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or _STREAM_ID.fullmatch(value) is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "since must be an event id like '1718-0'")
    return value


def is_valid_room(room: str) -> bool:
    return _ROOM.fullmatch(room) is not None


def parse_stream_id(value: str | bytes) -> StreamId:
    """``"1718-3"`` → ``(1718, 3)``: stream IDs compare as integer pairs, not as text."""
    text = value.decode() if isinstance(value, bytes) else value
    match = _STREAM_ID.fullmatch(text)
    if match is None:
        raise ValueError(f"not a stream id: {text!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def encode_event_frame(room: str, entry_id: str, event_json: bytes) -> bytes:
    """The event frame, splicing the stored event JSON (``room`` and ``entry_id`` are ours:
    rooms are validated and IDs come from Redis, so neither needs escaping beyond JSON's)."""
    head = orjson.dumps({"type": "event", "room": room, "id": entry_id})
    return head[:-1] + b',"event":' + event_json + b"}"


def wire_frame(payload: bytes) -> bytes:
    """A complete, unmasked WebSocket text frame (RFC 6455 §5.2) carrying ``payload``.

    Server frames are unmasked, so the bytes are the same for every client of a room: the
    hub frames each event once and every connection writes the same object.

    >>> wire_frame(b'{"type":"pong"}')[:2]
    b'\\x81\\x0f'
    """
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def frame_payload(wire: bytes) -> bytes:
    """The payload of an unmasked frame built by :func:`wire_frame` (tests, tools)."""
    size = wire[1] & 0x7F
    offset = {126: 4, 127: 10}.get(size, 2)
    return wire[offset:]


def encode_subscribed(room: str) -> bytes:
    return orjson.dumps({"type": "subscribed", "room": room})


def encode_pong() -> bytes:
    return b'{"type":"pong"}'


def encode_error(code: ErrorCode, message: str) -> bytes:
    return orjson.dumps({"type": "error", "code": code.value, "message": message})


def coalesce_key(room: str, event: dict[str, Any]) -> tuple[str, str, str] | None:
    """Progress events of one (room, run, task, unit) supersede each other; others never do.

    A run reports several units (files, then chunks): each keeps its own latest value.
    """
    if event.get("kind") != "progress":
        return None
    task = f"{event.get('task_run_id', '')}/{event.get('unit', '')}"
    return room, str(event.get("flow_run_id", "")), task
