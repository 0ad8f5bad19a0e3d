"""MemoryCache: the cache's in-memory twin (a :class:`~tasks.cache.Cache`).

The same contract as :class:`~tasks.cache.redis_cache.RedisCache` for one process: keys and
tags are validated the same way, values go through the same JSON encoding (so what could
not be cached in Redis cannot be cached here either), tags are generation counters, and
concurrent misses of one key compute once. Unlike Redis's, dependencies are not followed
transitively: invalidating a key drops what depends on it directly.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from tasks.redis_io.formats import decode_value, encode_value, validate_part

T = TypeVar("T")
_MISSING = object()


class MemoryCache:
    """Values in a dictionary, each with the tag generations it was written under."""

    def __init__(self, namespace: str = "memory") -> None:
        self.namespace = namespace
        self._values: dict[str, tuple[dict[str, int], bytes]] = {}
        self._generations: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._flights: dict[str, threading.Lock] = {}
        self.counters: Counter[str] = Counter()

    def get(self, key: str, default: Any = None) -> Any:
        return self.get_many([key]).get(key, default)

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._lock:
            for key in keys:
                stored = self._values.get(validate_part(key))
                if stored is not None and self._fresh(stored[0]):
                    found[key] = decode_value(stored[1])[1]
        self.counters["hits"] += len(found)
        self.counters["misses"] += len(keys) - len(found)
        return found

    def set(
        self, key: str, value: Any, *, tags: Sequence[str] = (), depends_on: Sequence[str] = ()
    ) -> None:
        self.set_many({key: value}, tags=tags, depends_on=depends_on)

    def set_many(
        self,
        items: Mapping[str, Any],
        *,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
    ) -> None:
        names = [f"t:{validate_part(t, 'tag')}" for t in tags]
        names += [f"d:{validate_part(d, 'dependency')}" for d in depends_on]
        with self._lock:
            stamp = {name: self._generations[name] for name in names}
            for key, value in items.items():
                self._values[validate_part(key)] = (stamp, encode_value(value))
        self.counters["sets"] += len(items)

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], T],
        *,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
        wait_s: float = 60.0,
    ) -> T:
        with self._lock:
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                return value  # type: ignore[no-any-return]
            result = compute()
            self.counters["computed"] += 1
            self.set(key, result, tags=tags, depends_on=depends_on)
            return result

    def invalidate_tags(self, tags: Iterable[str]) -> int:
        return self._bump([f"t:{validate_part(t, 'tag')}" for t in tags])

    def invalidate_dependents(self, keys: Iterable[str]) -> int:
        return self._bump([f"d:{validate_part(k)}" for k in keys])

    def delete(self, *keys: str) -> int:
        with self._lock:
            return sum(self._values.pop(validate_part(k), None) is not None for k in keys)

    def _bump(self, names: list[str]) -> int:
        with self._lock:
            self._generations.update(names)
        return len(names)

    def _fresh(self, stamp: dict[str, int]) -> bool:
        return all(self._generations[name] == generation for name, generation in stamp.items())
