"""The seed's four invalidation strategies over one cache namespace.

- **tag**: every value written with the tag goes stale; one INCR, whatever the key count.
- **dependency**: a key and everything that depends on it, transitively (cycles are fine);
  one INCR too, because each value records the generations of its whole dependency closure
  when it is written.
- **event**: a named event maps to tags and dependencies (rules live in Redis so every
  process and the CLI share them).
- **pattern**: SCAN + UNLINK over the namespace's value keys (never KEYS); admin use, O(keys).

>>> inv = Invalidator(cache)                                       # doctest: +SKIP
>>> inv.define_event("repo.pushed", tags=["search:abc"])           # doctest: +SKIP
>>> inv.by_event("repo.pushed")                                    # doctest: +SKIP
1
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from config.errors import CacheKeyError
from tasks.cache.redis_cache import RedisCache
from tasks.events.model import Event, invalidation_event
from tasks.redis_io.formats import key_name, validate_part, validate_pattern

_SCAN_BATCH = 2000

#: Where invalidations are announced, e.g. :meth:`tasks.events.bus.EventBus.publish`.
Announce = Callable[[Event], object]


@dataclass(frozen=True)
class EventRule:
    tags: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)


class Invalidator:
    """Invalidates one namespace and optionally announces each invalidation as a
    ``cache.invalidated`` event (naming the repository when the values were one
    repository's search answers, so its ``repo:<id>`` room hears of it)."""

    def __init__(self, cache: RedisCache, announce: Announce | None = None) -> None:
        self.cache = cache
        self.announce = announce

    def by_tag(self, *tags: str) -> int:
        return self._announced("tag", list(tags), self.cache.invalidate_tags(tags))

    def by_dependency(self, *keys: str) -> int:
        return self._announced("dependency", list(keys), self.cache.invalidate_dependents(keys))

    def by_key(self, *keys: str) -> int:
        return self._announced("key", list(keys), self.cache.delete(*keys))

    def define_event(
        self, event: str, *, tags: Sequence[str] = (), depends_on: Sequence[str] = ()
    ) -> None:
        """Record what ``event`` invalidates (kept for the cache's TTL, refreshed on redefine)."""
        rule = EventRule(
            [validate_part(t, "tag") for t in tags], [validate_part(d) for d in depends_on]
        )
        payload = orjson.dumps({"tags": rule.tags, "depends_on": rule.depends_on})
        self.cache.client.set(self._event_key(event), payload, ex=self.cache.ttl_s)

    def event_rule(self, event: str) -> EventRule | None:
        raw = self.cache.client.get(self._event_key(event))
        if raw is None:
            return None
        data = orjson.loads(raw)
        return EventRule(list(data["tags"]), list(data["depends_on"]))

    def by_event(self, event: str) -> int:
        rule = self.event_rule(event)
        if rule is None:
            raise CacheKeyError(f"no invalidation rule for event {event!r}: define it first")
        count = self.cache.invalidate_tags(rule.tags) + self.cache.invalidate_dependents(
            rule.depends_on
        )
        return self._announced("event", [event], count, [*rule.tags, *rule.depends_on])

    def by_pattern(self, pattern: str) -> int:
        """UNLINK every value key of the namespace matching the glob ``pattern``."""
        match = key_name(self.cache.namespace, "k", validate_pattern(pattern))
        client, removed, batch = self.cache.client, 0, []
        for name in client.scan_iter(match=match, count=_SCAN_BATCH):
            batch.append(name)
            if len(batch) >= _SCAN_BATCH:
                removed += int(client.unlink(*batch))
                batch.clear()
        if batch:
            removed += int(client.unlink(*batch))
        return self._announced("pattern", [pattern], removed)

    def _event_key(self, event: str) -> str:
        return key_name(self.cache.namespace, "e", validate_part(event, "event"))

    def _announced(
        self, strategy: str, targets: list[str], count: int, invalidated: Sequence[str] = ()
    ) -> int:
        if self.announce is not None:
            ns = self.cache.namespace
            self.announce(invalidation_event(ns, strategy, targets, count, invalidated=invalidated))
        return count
