"""The last day of run history, kept by each server for the dashboard's history panel
(``GET /api/history``): the same rows ``codeflow report`` builds its tables from
(:mod:`tasks.reports.history`), live.

The hub hands it every event it reads; the first request also reads the day before the
server started from the stream. Events are kept by stream ID, so one read twice (by the hub
and by that first read) counts once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from tasks.redis_io import aio
from tasks.reports.history import Event, index_rows, run_rows

WINDOW_S = 86400.0
MAX_EVENTS = 20_000
KINDS = frozenset({"flow_run.state", "index.summary"})
_PAGE = 5000


class RunHistory:
    """Flow-run states and index summaries of the last :data:`WINDOW_S` seconds."""

    def __init__(self, window_s: float = WINDOW_S, max_events: int = MAX_EVENTS) -> None:
        self.window_s = window_s
        self.max_events = max_events
        self.loaded = False
        self._events: OrderedDict[str, Event] = OrderedDict()
        self._loading = asyncio.Lock()

    def observe(self, entry_id: str, event: Event) -> None:
        if event.get("kind") in KINDS:
            self._events[entry_id] = event
            while len(self._events) > self.max_events:
                self._events.popitem(last=False)

    async def load(self, client: aio.Client, stream: str, timeout_s: float) -> None:
        """Read the window's events from the stream, once however many requests ask at the
        same time (raises RedisUnavailable, or TimeoutError after ``timeout_s`` for a page)."""
        async with self._loading:
            if self.loaded:
                return
            after = f"{int((time.time() - self.window_s) * 1000)}-0"
            while True:
                entries = await asyncio.wait_for(
                    aio.entries_after(client, stream, after, _PAGE), timeout_s
                )
                for entry_id, _, event in entries:
                    self.observe(entry_id, event)
                if len(entries) < _PAGE:
                    break
                after = entries[-1][0]
            self._events = OrderedDict(sorted(self._events.items(), key=lambda kv: _order(kv[0])))
            self.loaded = True

    def snapshot(self) -> dict[str, Any]:
        """``{"since", "runs": [...], "index_runs": [...]}`` over the window."""
        since = time.time() - self.window_s
        recent = [e for e in self._events.values() if float(e.get("ts") or 0) >= since]
        return {"since": since, "runs": run_rows(recent), "index_runs": index_rows(recent)}


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
