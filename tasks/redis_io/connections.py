"""Synchronous Redis connections: ``REDIS_URL`` when set, otherwise the embedded server
(:mod:`~tasks.redis_io.embedded`), with short timeouts; and the reads that more than one
command needs (cache statistics). :mod:`~tasks.redis_io.aio` is the asyncio sibling.

>>> url = redis_url_for(load_settings())          # doctest: +SKIP
>>> client = connect(url, timeout_s=0.5)          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import Settings
from tasks.redis_io.embedded import EmbeddedRedis
from tasks.redis_io.formats import STATS_PATTERN, cache_stats, namespace_of, stats_key

#: At most this many namespaces' statistics are read (a SCAN bound, never KEYS).
MAX_NAMESPACES = 200


def redis_url_for(settings: Settings, db: int = 0) -> str:
    """The URL to use: ``REDIS_URL`` as given, or the embedded server's (started if needed)."""
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis(settings.home / "redis").ensure_running(db)


def connect(url: str, timeout_s: float = 0.5) -> redis.Redis:
    """A client with short timeouts and one immediate retry (a pooled connection may be stale
    after a server restart; a second attempt on a fresh connection then succeeds)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def with_db(url: str, db: int) -> str:
    """``url`` pointing at database ``db`` (unix:// URLs carry it as ``?db=``)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(db)
        return f"unix://{parts.path}?{urlencode(query)}"
    return urlunsplit(parts._replace(path=f"/{db}"))


def cache_namespaces(client: redis.Redis) -> list[str]:
    """Namespaces that have been used (each keeps a statistics hash), sorted."""
    found: set[str] = set()
    for key in client.scan_iter(match=STATS_PATTERN, count=500):
        found.add(namespace_of(key))
        if len(found) >= MAX_NAMESPACES:
            break
    return sorted(found)


def read_cache_stats(client: redis.Redis) -> dict[str, dict[str, float]]:
    """``{namespace: {hits, misses, sets, invalidations, hit_rate}}`` for every namespace."""
    names = cache_namespaces(client)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(stats_key(name))
    replies: list[Any] = pipe.execute() if names else []
    return {name: cache_stats(reply) for name, reply in zip(names, replies, strict=True)}
