"""Cache key building, validation and value encoding: pure logic, no Redis.

Every Redis key codeflow's cache writes has the shape ``cf:{<namespace>}:<kind>:<part>``.
The braces are a Redis Cluster hash tag, so all keys of one namespace live in one slot and
the cache's Lua scripts stay cluster-safe. ``<kind>`` is one letter:

    k  a cached value                    g  a tag's generation counter
    d  a key's direct dependencies       s  the namespace's hit/miss statistics
    e  an event's invalidation rule      l  a stampede lock

A stored value is ``<header>\\n<json>``; the header lists the generation of every tag and
dependency the value was computed under (``t:<tag> <gen> d:<key> <gen> ...``), so an
invalidation is one INCR and a stale value is recognised on read.

>>> key_name("embeddings", "k", "abc")
'cf:{embeddings}:k:abc'
>>> decode_value(encode_value({"a": [1, 2]}, "t:repo 3"))
('t:repo 3', {'a': [1, 2]})
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from tasks.errors import CacheKeyError

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
