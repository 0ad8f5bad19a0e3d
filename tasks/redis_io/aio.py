"""asyncio Redis for the realtime server: connections, and the reads it makes, with every
outage turned into :class:`~config.errors.RedisUnavailable` here (the server catches that,
never a Redis exception). The synchronous sibling is :mod:`~tasks.redis_io.connections`; both
share :mod:`~tasks.redis_io.formats`.

Like :func:`~tasks.redis_io.connections.connect`, the clients here match the server the URL
names (:mod:`~tasks.redis_io.topology`): ``redis.asyncio.cluster.RedisCluster`` on a cluster
node, the master's client on a Sentinel. The question is asked once, synchronously, when the
server builds its clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from config.errors import RedisUnavailable
from tasks.redis_io.formats import (
    STATS_PATTERN,
    Entry,
    cache_stats,
    decode_entry,
    namespace_of,
    stats_key,
    stream_fields,
)
from tasks.redis_io.outage import OUTAGE_ERRORS
from tasks.redis_io.topology import connection_options, split_master, topology_of

T = TypeVar("T")
#: The pool's size: a reconnect storm of thousands of replays queues for these connections
#: instead of opening one each (and failing).
POOL_SIZE = 32
POOL_WAIT_S = 10.0
#: The stream reader blocks in XREAD for up to 2 s; its timeout only catches a silent network.
READER_TIMEOUT_S = 10.0
MAX_NAMESPACES = 200
#: An outage, or ``wait_for``'s own timeout.
_FAILURES: tuple[type[Exception], ...] = (*OUTAGE_ERRORS, TimeoutError)

#: An asyncio client: a plain Redis (a Sentinel's master is one too) or a Redis Cluster.
Client: TypeAlias = aioredis.Redis | RedisCluster


def pooled_client(url: str, timeout_s: float) -> Client:
    """A client over a bounded pool that waits for a free connection (on a cluster, at most
    :data:`POOL_SIZE` connections per node)."""
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    topology = topology_of(url)
    if topology.kind == "cluster":
        return _cluster(url, {**options, "max_connections": POOL_SIZE})
    if topology.kind == "sentinel":
        return _sentinel_master(url, str(topology.master), options)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return aioredis.Redis(connection_pool=pool)


def stream_reader(url: str, timeout_s: float) -> Client:
    """A client of its own for blocking reads of the event stream."""
    return _client(url, {"socket_timeout": READER_TIMEOUT_S, "socket_connect_timeout": timeout_s})


def connect(url: str, timeout_s: float) -> Client:
    """A client over a pool of its own (prefect-redis's locks use one)."""
    return _client(url, {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s})


def _client(url: str, options: dict[str, Any]) -> Client:
    topology = topology_of(url)
    if topology.kind == "cluster":
        return _cluster(url, options)
    if topology.kind == "sentinel":
        return _sentinel_master(url, str(topology.master), options)
    return aioredis.Redis.from_url(url, **options)


def _cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    """A cluster client; it reads the slot map on its first command."""
    node = urlunsplit(urlsplit(split_master(url)[0])._replace(path=""))
    return RedisCluster.from_url(node, **options)


def _sentinel_master(url: str, master: str, options: dict[str, Any]) -> aioredis.Redis:
    """The client of the master a Sentinel names; it follows a failover by itself."""
    given = connection_options(url)
    given.pop("connection_class")  # the Sentinel's pool brings its own
    timeouts = {"socket_timeout": options["socket_timeout"]}
    sentinel = Sentinel([(given.pop("host"), given.pop("port"))], sentinel_kwargs=timeouts)
    client: aioredis.Redis = sentinel.master_for(master, **given, **options)
    return client


async def guarded(call: Callable[[], Awaitable[T]], what: str, timeout_s: float | None = None) -> T:
    """``await call()``, raising :class:`RedisUnavailable` (saying ``what`` failed) on an
    outage or once ``timeout_s`` has passed."""
    try:
        return await asyncio.wait_for(call(), timeout_s)
    except _FAILURES as exc:
        raise RedisUnavailable(f"cannot {what}: {exc or 'timeout'}") from exc


async def ping(client: Client, timeout_s: float) -> None:
    """Raise :class:`RedisUnavailable` unless Redis answers within ``timeout_s``."""
    await guarded(client.ping, "reach Redis", timeout_s)


async def read_cache_stats(client: Client, timeout_s: float) -> dict[str, dict[str, float]]:
    """``{namespace: {hits, misses, sets, invalidations, hit_rate}}`` for every namespace."""
    return await guarded(lambda: _cache_stats(client), "read the cache statistics", timeout_s)


async def _cache_stats(client: Client) -> dict[str, dict[str, float]]:
    names: list[str] = []
    async for key in client.scan_iter(match=STATS_PATTERN, count=500):
        names.append(namespace_of(key))
        if len(names) >= MAX_NAMESPACES:
            break
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(stats_key(name))
    replies: list[Any] = await pipe.execute() if names else []
    return {name: cache_stats(reply) for name, reply in zip(names, replies, strict=True)}


async def entries_after(client: Client, stream: str, after: str, count: int) -> list[Entry]:
    """Stream entries strictly after ``after`` (replay)."""
    reply: Any = await guarded(
        lambda: client.xrange(stream, min=f"({after}", count=count), "read the event stream"
    )
    return [decode_entry(entry_id, fields) for entry_id, fields in reply]


async def next_entries(
    reader: Client, stream: str, cursor: str, count: int, block_ms: int
) -> list[Entry]:
    """Entries after ``cursor``, waiting up to ``block_ms`` for the first (XREAD BLOCK)."""
    reply: Any = await guarded(
        lambda: reader.xread({stream: cursor}, count=count, block=block_ms),
        "follow the event stream",
    )
    return [decode_entry(i, fields) for _, batch in reply or [] for i, fields in batch]


async def newest_id(reader: Client, stream: str) -> str:
    """The newest entry's ID (``"0-0"`` for an empty stream)."""
    newest: Any = await guarded(lambda: reader.xrevrange(stream, count=1), "read the stream")
    return decode_entry(newest[0][0], {})[0] if newest else "0-0"


async def publish_once(
    client: Client, claim: str, stream: str, event: Mapping[str, Any], *, maxlen: int, ttl_s: int
) -> bool:
    """Append ``event`` unless another process already claimed ``claim`` (``SET NX``, kept
    ``ttl_s``); ``True`` if this call published it."""

    async def claim_and_append() -> bool:
        if not await client.set(claim, b"1", nx=True, ex=ttl_s):
            return False
        await client.xadd(stream, stream_fields(event), maxlen=maxlen, approximate=True)
        return True

    return await guarded(claim_and_append, "publish an event")
