"""The Redis cache layer: namespaced, JSON-only, TTL on every key, one round trip per call.

``RedisCache`` never lets a Redis outage reach its caller: when Redis cannot be reached within
the client's short timeout the cache becomes a pass-through (``get`` misses, ``set`` does
nothing), counts the failure, and tries Redis again after ``retry_after_s``; caching resumes
by itself when Redis is back.

>>> cache = RedisCache(connect(url), namespace="embeddings", ttl_s=86400)   # doctest: +SKIP
>>> cache.set("k1", {"v": [1, 2]}, tags=["repo:abc"])                       # doctest: +SKIP
>>> cache.get_many(["k1", "k2"])                                            # doctest: +SKIP
{'k1': {'v': [1, 2]}}
>>> cache.get_or_compute("k3", expensive)   # N concurrent misses run it once  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import NoScriptError

from tasks.cache import lua_scripts
from tasks.redis_io.formats import (
    JSONValue,
    cache_stats,
    decode_value,
    encode_value,
    hit_rate,
    key_name,
    prefix,
    stats_key,
    validate_namespace,
    validate_part,
)
from tasks.redis_io.outage import OUTAGE_ERRORS

if TYPE_CHECKING:
    from tasks.redis_io.connections import SyncClient

log = logging.getLogger(__name__)

T = TypeVar("T")
_MISSING = object()
# Untagged batches at least this large skip Lua (MSET + EXPIRE_MANY): 1.5x faster from ~64
# values on; below, the transaction's extra commands cost more than Lua does.
_PLAIN_BATCH = 64
# ... and are written this many at a time: one transaction blocks Redis for every other
# client while it runs, and a short one also fits the client's timeout on a busy machine.
_WRITE_PART = 1024


class RedisCache:
    """A namespace of the Redis cache (a :class:`~tasks.cache.Cache`). Thread-safe; share one
    per process and namespace."""

    def __init__(
        self,
        client: SyncClient,
        namespace: str,
        *,
        ttl_s: int,
        retry_after_s: float = 1.0,
        lock_ttl_s: float = 60.0,
    ) -> None:
        self.client = client
        self.namespace = validate_namespace(namespace)
        self.prefix = prefix(namespace)
        self._key_prefix = key_name(namespace, "k", "")
        self.ttl_s = int(ttl_s)
        self.retry_after_s = retry_after_s
        self.lock_ttl_s = lock_ttl_s
        self.counters: Counter[str] = Counter()
        self._retry_at = 0.0
        self._guard_lock = threading.Lock()
        self._flights: dict[str, threading.Lock] = {}
        self._get_many = client.register_script(lua_scripts.GET_MANY)
        self._set_many = client.register_script(lua_scripts.SET_MANY)
        self._expire_many = client.register_script(lua_scripts.EXPIRE_MANY)
        self._bump = client.register_script(lua_scripts.BUMP)
        self._release = client.register_script(lua_scripts.RELEASE_LOCK)

    # --- reads and writes -------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        return self.get_many([key]).get(key, default)

    def get_many(self, keys: Sequence[str]) -> dict[str, JSONValue]:
        """Fresh values for the keys that have one (one round trip); misses are absent."""
        names = [self._key(k) for k in keys]
        if not names:
            return {}
        raws = self._guarded(lambda: self._get_many(keys=names, args=[self.prefix, self.ttl_s]))
        if raws is None:
            self.counters["misses"] += len(names)
            return {}
        found = {k: decode_value(raw)[1] for k, raw in zip(keys, raws, strict=True) if raw}
        self.counters["hits"] += len(found)
        self.counters["misses"] += len(names) - len(found)
        return found

    def set(
        self,
        key: str,
        value: JSONValue,
        *,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
    ) -> None:
        self.set_many({key: value}, tags=tags, depends_on=depends_on)

    def set_many(
        self,
        items: Mapping[str, JSONValue],
        *,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
    ) -> None:
        """Store every item under the same tags and dependencies, with the namespace's TTL."""
        if not items:
            return
        names = [self._key(k) for k in items]
        values = [encode_value(v) for v in items.values()]
        if tags or depends_on or len(names) < _PLAIN_BATCH:
            args: list[str | bytes | int] = [
                self.prefix,
                self.ttl_s,
                " ".join(validate_part(t, "tag") for t in tags),
                " ".join(validate_part(d, "dependency") for d in depends_on),
                *values,
            ]
            if self._guarded(lambda: self._set_many(keys=names, args=args)) is not None:
                self.counters["sets"] += len(names)
            return
        for start in range(0, len(names), _WRITE_PART):  # large, no header: plain parts
            self._set_plain(names[start : start + _WRITE_PART], values[start : start + _WRITE_PART])

    def _set_plain(self, names: list[str], values: list[bytes]) -> None:
        if self._guarded(lambda: self._plain_transaction(names, values)) is not None:
            self.counters["sets"] += len(names)

    def _plain_transaction(self, names: list[str], values: list[bytes]) -> list[Any]:
        """MSET, then a TTL on every key, in one transaction (one slot: the namespace's)."""
        try:
            return self._mset_expiring(names, values)
        except NoScriptError:  # a cluster's pipeline does not load scripts by itself
            self.client.script_load(lua_scripts.EXPIRE_MANY)
            return self._mset_expiring(names, values)

    def _mset_expiring(self, names: list[str], values: list[bytes]) -> list[Any]:
        pipe = self.client.pipeline(transaction=True)
        # MSET as a raw command: a cluster's pipeline refuses .mset(), though one slot is fine
        pairs = itertools.chain.from_iterable(zip(names, values, strict=True))
        pipe.execute_command("MSET", *pairs)
        self._expire_many(keys=names, args=[self.prefix, self.ttl_s], client=pipe)
        return pipe.execute()

    def delete(self, *keys: str) -> int:
        names = [self._key(k) for k in keys]
        return int(self._guarded(lambda: self.client.unlink(*names)) or 0) if names else 0

    # --- invalidation (O(1) in the number of keys covered) -----------------------------
    def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Every value written under one of ``tags`` becomes stale: one INCR per tag."""
        return self._bump_all(["t:" + validate_part(t, "tag") for t in tags])

    def invalidate_dependents(self, keys: Iterable[str]) -> int:
        """Drop each key and everything that depends on it, transitively (one INCR each)."""
        return self._bump_all(["d:" + validate_part(k) for k in keys])

    def _bump_all(self, names: list[str]) -> int:
        if not names:
            return 0
        stats = [stats_key(self.namespace)]
        done = self._guarded(lambda: self._bump(keys=stats, args=[self.prefix, self.ttl_s, *names]))
        return int(done or 0)

    # --- stampede protection ------------------------------------------------------------
    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], T],
        *,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
        wait_s: float = 60.0,
    ) -> T:
        """The cached value, or ``compute()`` run once however many callers miss at once.

        Callers in one process queue on a lock; across processes a Redis lock (SET NX PX)
        elects one computer while the others wait for its value (or for the lock to lapse).
        """
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[no-any-return]
        with self._flight(key):
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                return value  # type: ignore[no-any-return]
            return self._compute_once(key, compute, tags, depends_on, wait_s)

    def _compute_once(
        self,
        key: str,
        compute: Callable[[], T],
        tags: Sequence[str],
        depends_on: Sequence[str],
        wait_s: float,
    ) -> T:
        lock, token = key_name(self.namespace, "l", key), secrets.token_hex(8)
        value = self._await_lock(key, lock, token, wait_s)
        if value is not _MISSING:
            self.counters["coalesced"] += 1
            return value  # type: ignore[no-any-return]
        try:
            result = compute()
            self.counters["computed"] += 1
            self.set(key, result, tags=tags, depends_on=depends_on)
            return result
        finally:
            self._guarded(lambda: self._release(keys=[lock], args=[token]))

    def _await_lock(self, key: str, lock: str, token: str, wait_s: float) -> Any:
        """Take the key's Redis lock, or return the value its holder stored meanwhile.

        ``_MISSING`` means "compute now": the lock is ours, Redis is down, or the wait ran out.
        """
        deadline, pause, px = time.monotonic() + wait_s, 0.002, int(self.lock_ttl_s * 1000)
        while time.monotonic() < deadline:
            if self._guarded(lambda: self.client.set(lock, token, nx=True, px=px)):
                # The last holder may have stored the value and let go since our last look.
                value = self.get(key, _MISSING)
                if value is not _MISSING:
                    self._guarded(lambda: self._release(keys=[lock], args=[token]))
                return value
            if self.degraded:
                return _MISSING
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                return value
        return _MISSING

    def _flight(self, key: str) -> threading.Lock:
        with self._guard_lock:
            return self._flights.setdefault(key, threading.Lock())

    # --- degradation ----------------------------------------------------------------------
    @property
    def degraded(self) -> bool:
        """True while Redis is considered unreachable (until the next retry)."""
        return time.monotonic() < self._retry_at

    def _guarded(self, operation: Callable[[], T]) -> T | None:
        if self.degraded:
            self.counters["bypassed"] += 1
            return None
        try:
            result = operation()
        except OUTAGE_ERRORS as exc:
            self._note_outage(exc)
            return None
        if self._retry_at:
            log.warning("Redis is reachable again; cache %s resumed", self.namespace)
            self._retry_at = 0.0
        return result

    def _note_outage(self, exc: BaseException) -> None:
        self.counters["errors"] += 1
        if not self._retry_at:
            log.warning("Redis unreachable (%s); cache %s passes through", exc, self.namespace)
        self._retry_at = time.monotonic() + self.retry_after_s

    def _key(self, key: str) -> str:
        return self._key_prefix + validate_part(key)

    def stats(self) -> dict[str, float]:
        """This process's counters plus the namespace's shared ones (``shared_*``)."""
        local: dict[str, float] = dict(self.counters)
        shared = self._guarded(lambda: self.client.hgetall(stats_key(self.namespace))) or {}
        for name, value in cache_stats(shared).items():
            if name != "hit_rate":
                local["shared_" + name] = value
        local["hit_rate"] = hit_rate(local.get("hits", 0), local.get("misses", 0))
        return local
