"""What codeflow keeps in Redis, as pure functions: key and value formats of the cache,
its statistics hashes, and the entries of the event stream. No Redis client here; the sync
and asyncio siblings (:mod:`~tasks.redis_io.connections`, :mod:`~tasks.redis_io.aio`) share
these.

**Cache keys.** Every Redis key codeflow's cache writes has the shape
``cf:{<namespace>}:<kind>:<part>``. The braces are a Redis Cluster hash tag, so all keys
of one namespace live in one slot and the cache's Lua scripts stay cluster-safe.
``<kind>`` is one letter:

    k  a cached value                    g  a tag's generation counter
    d  a key's direct dependencies       s  the namespace's hit/miss statistics
    e  an event's invalidation rule      l  a stampede lock

A stored value is ``<header>\\n<json>``; the header lists the generation of every tag and
dependency the value was computed under (``t:<tag> <gen> d:<key> <gen> ...``), so an
invalidation is one INCR and a stale value is recognised on read.

**Statistics.** ``cf:{<namespace>}:s`` is a hash of counters (``hits``, ``misses``,
``sets``, ``invalidations``) shared by every process; :func:`cache_stats` reads one.

**Event stream.** ``codeflow:events`` is a capped stream whose entries have one field,
``e``: the event as JSON (:func:`stream_fields`, :func:`decode_entry`). A relay of Prefect's
states claims ``codeflow:relayed:<flow run>:<state>`` before publishing one (:func:`relay_key`).

>>> key_name("embeddings", "k", "abc")
'cf:{embeddings}:k:abc'
>>> decode_value(encode_value({"a": [1, 2]}, "t:repo 3"))
('t:repo 3', {'a': [1, 2]})
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from config.errors import CacheKeyError

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 64 * 1024 * 1024
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Whitespace, control characters, glob metacharacters and braces are refused everywhere.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f*?\[\]{}\\]")
_PATTERN_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f{}\\]")

JSONValue = Any


def validate_namespace(namespace: str) -> str:
    """Namespaces are short identifiers: letters, digits, ``_ . -``."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise CacheKeyError(
            f"invalid cache namespace {namespace!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    return namespace


def validate_part(part: str, what: str = "key") -> str:
    """A key, tag or event name: no wildcards, whitespace, control characters or braces."""
    if not isinstance(part, str) or not part:
        raise CacheKeyError(f"invalid cache {what}: it must be a non-empty string")
    size = len(part) if part.isascii() else len(part.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise CacheKeyError(f"invalid cache {what}: longer than {MAX_KEY_BYTES} bytes")
    bad = _FORBIDDEN.search(part)
    if bad:
        raise CacheKeyError(
            f"invalid cache {what} {part[:80]!r}: character {bad.group()!r} is not allowed "
            "(no wildcards, whitespace, control characters, braces or backslashes)"
        )
    return part


def validate_pattern(pattern: str) -> str:
    """A SCAN glob over one namespace's keys: globs allowed, the namespace cannot be escaped."""
    if not isinstance(pattern, str) or not pattern:
        raise CacheKeyError("invalid cache pattern: it must be a non-empty string")
    if len(pattern.encode()) > MAX_KEY_BYTES:
        raise CacheKeyError(f"invalid cache pattern: longer than {MAX_KEY_BYTES} bytes")
    bad = _PATTERN_FORBIDDEN.search(pattern)
    if bad:
        raise CacheKeyError(f"invalid cache pattern {pattern[:80]!r}: {bad.group()!r} not allowed")
    return pattern


def prefix(namespace: str) -> str:
    return f"cf:{{{namespace}}}:"


def key_name(namespace: str, kind: str, part: str) -> str:
    return f"{prefix(namespace)}{kind}:{part}"


_RAW = b"\x00"


def encode_value(value: JSONValue, header: str = "") -> bytes:
    """JSON, or ``bytes`` stored as they are (never pickle): anything else that ``orjson``
    cannot encode is refused. A raw body starts with a NUL byte, which JSON never does."""
    if isinstance(value, bytes):
        body = _RAW + value
    else:
        try:
            body = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as exc:
            raise CacheKeyError(f"cache values must be JSON-serialisable: {exc}") from exc
    if len(body) > MAX_VALUE_BYTES:
        raise CacheKeyError(f"cache value of {len(body)} bytes exceeds {MAX_VALUE_BYTES}")
    return header.encode() + b"\n" + body


def decode_value(raw: bytes) -> tuple[str, JSONValue]:
    """Inverse of :func:`encode_value`: the header ends at the first newline (a header never
    holds one; a body may)."""
    header, _, body = raw.partition(b"\n")
    if body[:1] == _RAW:
        return header.decode(), body[1:]
    return header.decode(), orjson.loads(body)


def dependency_tag(key: str) -> str:
    return f"d:{key}"


def tag_tag(tag: str) -> str:
    return f"t:{tag}"


# --- statistics -----------------------------------------------------------------------------
STATS_KIND = "s"
#: SCAN pattern of every namespace's statistics hash.
STATS_PATTERN = "cf:{*}:" + STATS_KIND
STAT_COUNTERS = ("hits", "misses", "sets")  # always present; others when counted


def stats_key(namespace: str) -> str:
    return prefix(namespace) + STATS_KIND


def namespace_of(key: bytes | str) -> str:
    """The namespace of a key such as ``cf:{search}:s``."""
    text = key.decode(errors="replace") if isinstance(key, bytes) else key
    return text[text.find("{") + 1 : text.rfind("}")]


def hit_rate(hits: float, misses: float) -> float:
    """Hits per lookup, 0 when nothing was looked up."""
    looked = hits + misses
    return round(hits / looked, 4) if looked else 0.0


def cache_stats(raw: Mapping[Any, Any]) -> dict[str, float]:
    """A statistics hash as numbers (unknown or malformed counters count 0), with
    ``hit_rate``."""
    values = {_text(k): _number(v) for k, v in raw.items()}
    row = {name: values.get(name, 0) for name in STAT_COUNTERS}
    row.update((k, v) for k, v in values.items() if k not in row)
    row["hit_rate"] = hit_rate(row["hits"], row["misses"])
    return row


def _number(value: Any) -> int | float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return int(number) if number.is_integer() else number


# --- the event stream -----------------------------------------------------------------------
STREAM = "codeflow:events"
#: One stream entry as read: its ID, the event's raw JSON and the decoded event (``{}`` for a
#: malformed entry, whose ID cursors must still pass).
Entry = tuple[str, bytes, dict[str, Any]]


def relay_key(flow_run_id: str, state: str) -> str:
    """Claimed by the one relay that publishes ``state`` of a run Prefect reports."""
    return f"codeflow:relayed:{flow_run_id}:{state}"


def stream_fields(event: Mapping[str, Any]) -> dict[Any, Any]:
    """The fields of the stream entry that carries ``event``."""
    return {"e": orjson.dumps(event)}


def decode_entry(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> Entry:
    """Decode one stream entry; a malformed one keeps its ID but no event."""
    raw = fields.get(b"e", b"")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        event = None
    if not isinstance(event, dict):
        return _text(entry_id), b"", {}
    return _text(entry_id), raw, event


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
