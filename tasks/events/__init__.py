"""Events: what happened in a run, as compact JSON, for people and dashboards watching.

- :mod:`~tasks.events.model` (pure): ``make_event``, ``rooms_for``, the kinds and states;
- :mod:`~tasks.events.bus`: :class:`EventBus`, the capped Redis stream every server reads;
- :mod:`~tasks.events.memory_bus`: :class:`MemoryBus`, its in-memory twin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class EventSink(Protocol):
    """Where a run's events go. Publishing never raises: ``None`` means it was dropped."""

    def publish(self, event: Mapping[str, Any]) -> str | None: ...
