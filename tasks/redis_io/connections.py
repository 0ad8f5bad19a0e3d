"""Synchronous Redis connections: ``REDIS_URL`` when set, otherwise the embedded server
(:mod:`~tasks.redis_io.embedded`), with short timeouts; and the reads that more than one
command needs (cache statistics). :mod:`~tasks.redis_io.aio` is the asyncio sibling.

``REDIS_URL`` may name a plain Redis, any node of a Redis Cluster or a Sentinel:
:func:`connect` asks the server which (:mod:`~tasks.redis_io.topology`, once per process)
and returns a :data:`SyncClient` to match, a ``RedisCluster`` or the Sentinel's master.

>>> url = redis_url_for(load_settings())          # doctest: +SKIP
>>> client = connect(url, timeout_s=0.5)          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from config import Settings
from config.errors import RedisUnavailable
from tasks.redis_io.embedded import EmbeddedRedis
from tasks.redis_io.formats import STATS_PATTERN, cache_stats, namespace_of, stats_key
from tasks.redis_io.outage import OUTAGE_ERRORS
from tasks.redis_io.topology import connection_options, split_master, topology_of, where

#: A synchronous client: a plain Redis (a Sentinel's master is one too) or a Redis Cluster.
SyncClient: TypeAlias = redis.Redis | RedisCluster

#: At most this many namespaces' statistics are read (a SCAN bound, never KEYS).
MAX_NAMESPACES = 200
#: Prefect's task results get a database of their own on a plain Redis. A Redis Cluster has
#: database 0 only: there they live under :data:`RESULTS_PREFIX` instead.
RESULTS_DB = 1
RESULTS_PREFIX = "codeflow:results:"
#: What building a cluster client raises when no node answers with the slot map.
_CLUSTER_UNREACHABLE: tuple[type[Exception], ...] = (
    *OUTAGE_ERRORS,
    redis.exceptions.RedisClusterException,
)


def redis_url_for(settings: Settings, db: int = 0) -> str:
    """The URL to use: ``REDIS_URL`` as given, or the embedded server's (started if needed)."""
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis(settings.home / "redis").ensure_running(db)


def connect(url: str, timeout_s: float = 0.5) -> SyncClient:
    """A client with short timeouts and one immediate retry (a pooled connection may be stale
    after a server restart; a second attempt on a fresh connection then succeeds): a
    ``RedisCluster`` when ``url`` names a cluster node, the master when it names a Sentinel."""
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    topology = topology_of(url)
    if topology.kind == "cluster":
        return _cluster(url, options)
    options.update(retry=Retry(NoBackoff(), 1), health_check_interval=30)
    if topology.kind == "sentinel":
        return _sentinel_master(url, str(topology.master), options)
    return redis.Redis.from_url(url, **options)


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def results_url_for(url: str) -> str:
    """Where Prefect's task results go: database :data:`RESULTS_DB` of a plain Redis (or of a
    Sentinel's master); database 0 of a Redis Cluster, the only one it has."""
    return url if topology_of(url).kind == "cluster" else with_db(url, RESULTS_DB)


def results_prefix_for(url: str) -> str:
    """The prefix of Prefect's result keys: none in their own database, :data:`RESULTS_PREFIX`
    on a cluster (one key per result, so they spread over every master)."""
    return RESULTS_PREFIX if topology_of(url).kind == "cluster" else ""


def _cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    """A cluster client (it reads the slot map now, from the node ``url`` names)."""
    plain = split_master(url)[0]
    try:
        return RedisCluster.from_url(urlunsplit(urlsplit(plain)._replace(path="")), **options)
    except _CLUSTER_UNREACHABLE as exc:
        raise RedisUnavailable(
            f"cannot reach the Redis Cluster at {where(url)} ({exc}); start it or fix REDIS_URL"
        ) from exc


def _sentinel_master(url: str, master: str, options: dict[str, Any]) -> redis.Redis:
    """The client of the master a Sentinel names; it follows a failover by itself."""
    given = connection_options(url)
    given.pop("connection_class")  # the Sentinel's pool brings its own
    timeouts = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel([(given.pop("host"), given.pop("port"))], sentinel_kwargs=timeouts)
    client: redis.Redis = sentinel.master_for(master, **given, **options)
    return client


def with_db(url: str, db: int) -> str:
    """``url`` pointing at database ``db`` (unix:// URLs carry it as ``?db=``)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(db)
        return f"unix://{parts.path}?{urlencode(query)}"
    return urlunsplit(parts._replace(path=f"/{db}"))


def cache_namespaces(client: SyncClient) -> list[str]:
    """Namespaces that have been used (each keeps a statistics hash), sorted."""
    found: set[str] = set()
    for key in client.scan_iter(match=STATS_PATTERN, count=500):
        found.add(namespace_of(key))
        if len(found) >= MAX_NAMESPACES:
            break
    return sorted(found)


def read_cache_stats(client: SyncClient) -> dict[str, dict[str, float]]:
    """``{namespace: {hits, misses, sets, invalidations, hit_rate}}`` for every namespace."""
    names = cache_namespaces(client)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(stats_key(name))
    replies: list[Any] = pipe.execute() if names else []
    return {name: cache_stats(reply) for name, reply in zip(names, replies, strict=True)}


def server_size(client: SyncClient) -> dict[str, int]:
    """``{"keys", "used_memory"}`` of the server, summed over every master of a cluster."""
    if isinstance(client, RedisCluster):
        masters = RedisCluster.PRIMARIES
        infos: dict[str, Any] = client.info("memory", target_nodes=masters)
        memory = sum(int(info["used_memory"]) for info in infos.values())
        return {"keys": int(client.dbsize(target_nodes=masters)), "used_memory": memory}
    info: Any = client.info("memory")
    return {"keys": int(client.dbsize()), "used_memory": int(info["used_memory"])}
