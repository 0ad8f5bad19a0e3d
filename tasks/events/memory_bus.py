"""MemoryBus: the event bus's in-memory twin, for unit tests and in-process runs.

It keeps what :class:`~tasks.events.bus.EventBus` would append to the stream, in order, with
the same IDs' shape, so code that publishes can be checked without Redis.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from tasks.events.model import Event


class MemoryBus:
    """Events in a list, newest last; ``maxlen`` caps it as the stream is capped."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.maxlen = maxlen
        self.events: list[tuple[str, Event]] = []
        self._sequence = 0
        self._lock = threading.Lock()

    def publish(self, event: Mapping[str, Any]) -> str | None:
        with self._lock:
            self._sequence += 1
            entry_id = f"{self._sequence}-0"
            self.events.append((entry_id, dict(event)))
            del self.events[: max(0, len(self.events) - self.maxlen)]
        return entry_id

    def read(self, after: str = "0-0", *, count: int = 1000) -> list[tuple[str, Event]]:
        """Events strictly after ``after``, oldest first."""
        floor = int(after.split("-", maxsplit=1)[0])
        with self._lock:
            newer = [(i, e) for i, e in self.events if int(i.split("-")[0]) > floor]
        return newer[:count]

    def kinds(self) -> list[str]:
        """The kinds published so far, in order (what most tests look at)."""
        return [str(event.get("kind")) for _, event in self.events]
