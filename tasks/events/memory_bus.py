"""MemoryBus: the event bus's in-memory twin, for unit tests and in-process runs.

It keeps what :class:`~tasks.events.bus.EventBus` would append to the stream, in order, with
the same IDs' shape, so code that publishes can be checked without Redis.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from tasks.events.model import Event


class MemoryBus:
    """Events in a list, newest last; ``maxlen`` caps it as the stream is capped."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.maxlen = maxlen
        self.events: list[tuple[str, Event]] = []
        self.counters: Counter[str] = Counter()
        self._sequence = 0
        self._lock = threading.Condition()

    def publish(self, event: Mapping[str, Any]) -> str | None:
        with self._lock:
            self._sequence += 1
            entry_id = f"{self._sequence}-0"
            self.events.append((entry_id, dict(event)))
            del self.events[: max(0, len(self.events) - self.maxlen)]
            self._lock.notify_all()
        self.counters["published"] += 1
        return entry_id

    def read(
        self, after: str = "0-0", *, count: int = 1000, block_ms: int | None = None
    ) -> list[tuple[str, Event]]:
        """Events strictly after ``after``, oldest first (waiting up to ``block_ms``)."""
        floor = _sequence_of(after)
        with self._lock:
            if block_ms is not None and self._sequence <= floor:
                self._lock.wait(block_ms / 1000)
            newer = [(i, e) for i, e in self.events if _sequence_of(i) > floor]
        return newer[:count]

    def last_id(self) -> str:
        with self._lock:
            return self.events[-1][0] if self.events else "0-0"

    def kinds(self) -> list[str]:
        """The kinds published so far, in order (what most tests look at)."""
        return [str(event.get("kind")) for _, event in self.events]


def _sequence_of(entry_id: str) -> int:
    return int(entry_id.split("-", maxsplit=1)[0])
