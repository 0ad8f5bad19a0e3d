"""Which kind of Redis a URL names, asked of the server itself: a plain Redis, one node of a
Redis Cluster, or a Sentinel. There is no URL scheme of codeflow's own:
``REDIS_URL=redis://host:port`` of any node is enough.

- ``INFO server`` says ``redis_mode:standalone|cluster|sentinel``: one round trip, made once
  per server and process (:func:`topology_of` keeps the answer). A server that cannot be
  reached is asked again next time, and meanwhile taken for a plain Redis, whose calls then
  fail as any outage does.
- A cluster must report ``cluster_state:ok`` (``CLUSTER INFO``); otherwise
  :class:`~config.errors.RedisUnavailable` says so in one line.
- A Sentinel names its masters (``SENTINEL MASTERS``): codeflow uses the only one, or the one
  the URL's ``sentinel_master`` option chooses
  (``redis://sentinel:26379/0?sentinel_master=NAME``); several and no choice is a
  :class:`~config.errors.SettingsError` that says how to choose.

>>> topology_of("redis://127.0.0.1:7000/0")           # doctest: +SKIP
Topology(kind='cluster', master=None)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis

from config.errors import RedisUnavailable, SettingsError
from tasks.redis_io.outage import OUTAGE_ERRORS

Kind = Literal["standalone", "cluster", "sentinel"]
#: The URL option that picks the master of a Sentinel that watches several.
MASTER_OPTION = "sentinel_master"
#: Detection happens once; it may take longer than an interactive call's short timeout.
DETECT_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topology:
    """What the server at a URL is; ``master`` is the Sentinel's master name."""

    kind: Kind
    master: str | None = None


STANDALONE = Topology("standalone")
_known: dict[str, Topology] = {}


def topology_of(url: str, timeout_s: float = DETECT_TIMEOUT_S) -> Topology:
    """The topology of ``url``'s server, asked once per server and process."""
    server = _server_of(url)
    found = _known.get(server)
    if found is None:
        found = _ask(url, timeout_s)
        if found is None:
            return STANDALONE
        _known[server] = found
    return found


def split_master(url: str) -> tuple[str, str | None]:
    """``url`` without its ``sentinel_master`` option, and that option's value."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    master = next((value for name, value in query if name == MASTER_OPTION), None)
    if master is None:
        return url, None
    rest = urlencode([(name, value) for name, value in query if name != MASTER_OPTION])
    # built by hand: urlunsplit drops the "//" of a unix:// URL, which has no host
    return f"{parts.scheme}://{parts.netloc}{parts.path}{'?' if rest else ''}{rest}", master


def connection_options(url: str) -> dict[str, Any]:
    """redis-py's connection options of ``url`` (host, port or path, credentials, db, and
    the ``connection_class``: TCP, TLS or Unix socket)."""
    pool = redis.ConnectionPool.from_url(split_master(url)[0])
    return {**pool.connection_kwargs, "connection_class": pool.connection_class}


def where(url: str) -> str:
    """``host:port`` (or the socket path) of ``url``, without credentials, for messages."""
    parts = urlsplit(url)
    return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


def _server_of(url: str) -> str:
    parts = urlsplit(url)
    server = parts.path if parts.scheme == "unix" else parts.netloc
    return f"{parts.scheme}://{server}#{split_master(url)[1] or ''}"


def _ask(url: str, timeout_s: float) -> Topology | None:
    options = connection_options(url)
    options.pop("db", None)  # a Sentinel has no databases to SELECT
    probe = redis.Redis(
        connection_pool=redis.ConnectionPool(
            **options, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
    )
    try:
        return _classify(probe, url)
    except OUTAGE_ERRORS as exc:
        log.debug("cannot ask %s what it is (%s); taken for a plain Redis", where(url), exc)
        return None
    finally:
        probe.close()


def _classify(probe: redis.Redis, url: str) -> Topology:
    try:
        mode = probe.info("server").get("redis_mode", "standalone")
    except redis.ResponseError:  # INFO renamed or refused: a managed plain Redis
        return STANDALONE
    if mode == "cluster":
        _require_cluster_ok(probe, url)
        return Topology("cluster")
    if mode == "sentinel":
        return Topology("sentinel", _master_name(probe, url))
    return STANDALONE


def _require_cluster_ok(probe: redis.Redis, url: str) -> None:
    state = probe.cluster("info").get("cluster_state", "unknown")
    if state != "ok":
        raise RedisUnavailable(
            f"the Redis Cluster at {where(url)} is not serving (cluster_state:{state}); "
            "wait until every slot is covered, or fix REDIS_URL"
        )


def _master_name(probe: redis.Redis, url: str) -> str:
    masters: Any = probe.sentinel_masters()
    names = sorted(_text(name) for name in masters)
    chosen = split_master(url)[1]
    if chosen is not None and chosen in names:
        return chosen
    if chosen is None and len(names) == 1:
        return names[0]
    watched = ", ".join(names) or "none"
    asked = f"no master {chosen!r}" if chosen is not None else f"{len(names)} masters"
    raise SettingsError(
        f"the Sentinel at {where(url)} watches {asked} (watched: {watched}); choose one with "
        f"REDIS_URL=redis://{where(url)}/0?{MASTER_OPTION}=NAME",
        variable="REDIS_URL",
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
