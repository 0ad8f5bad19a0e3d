"""Events: what happened in a run, as compact JSON, for people and dashboards watching.

- :mod:`~tasks.events.model` (pure): ``make_event``, ``rooms_for``, the kinds and states;
- :mod:`~tasks.events.bus`: :class:`EventBus`, the capped Redis stream every server reads;
- :mod:`~tasks.events.memory_bus`: :class:`MemoryBus`, its in-memory twin.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

from tasks.events.model import Event


class EventSink(Protocol):
    """Where a run's events go. Publishing never raises: ``None`` means it was dropped."""

    #: This process's counts: ``published``, ``dropped`` (Redis unreachable).
    counters: Counter[str]

    def publish(self, event: Mapping[str, Any]) -> str | None: ...


class EventLog(EventSink, Protocol):
    """A sink that keeps events in order, each with an ID, for readers to follow."""

    def read(
        self, after: str = "0-0", *, count: int = 1000, block_ms: int | None = None
    ) -> list[tuple[str, Event]]:
        """Events strictly after ID ``after``, oldest first (waiting up to ``block_ms`` for
        the first when there is none yet)."""
        ...

    def last_id(self) -> str:
        """The newest event's ID (``"0-0"`` when there is none)."""
        ...
