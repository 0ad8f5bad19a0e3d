"""The cache: namespaced JSON values with tags, dependencies and stampede protection.

- :class:`Cache`: what the pipelines and search need from a cache;
- :mod:`~tasks.cache.redis_cache`: :class:`RedisCache`, one round trip per call, a
  pass-through while Redis is unreachable; its Lua in :mod:`~tasks.cache.lua_scripts`;
- :mod:`~tasks.cache.invalidation`: the four invalidation strategies (tag, dependency,
  event, pattern);
- :mod:`~tasks.cache.embedding_cache`: chunk text -> vector, on any :class:`Cache`;
- :mod:`~tasks.cache.memory_cache`: :class:`MemoryCache`, the in-memory twin.

Key and value formats live with the rest of what codeflow keeps in Redis, in
:mod:`tasks.redis_io.formats`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: The cache namespaces of search answers and of sandbox results.
SEARCH_NAMESPACE = "search"
SANDBOX_NAMESPACE = "sandbox"


class Cache(Protocol):
    """One namespace of a cache. Values are JSON (or ``bytes``); every key has a TTL."""

    #: The namespace's name (events and statistics use it).
    namespace: str
    #: This process's counts: ``hits``, ``misses``, ``sets``, ``errors`` (Redis unreachable).
    counters: Counter[str]

    def get(self, key: str, default: Any = None) -> Any: ...

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]: ...

    def set(
        self, key: str, value: Any, *, tags: Sequence[str] = (), depends_on: Sequence[str] = ()
    ) -> None: ...

    def set_many(
        self,
        items: Mapping[str, Any],
        *,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
    ) -> None: ...

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], T],
        *,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
        wait_s: float = 60.0,
    ) -> T: ...

    def invalidate_tags(self, tags: Iterable[str]) -> int: ...

    def delete(self, *keys: str) -> int: ...
