"""A progress bar on stderr for ``codeflow index``, fed by the run's own events on the bus
(the CLI is just another observer: the same events drive the dashboard)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from config.errors import RedisUnavailable

if TYPE_CHECKING:
    from tasks.events import EventLog


MIN_RATE_S = 0.5


class ProgressView:
    """Redraws one status line from the progress events of the run carrying ``trace_id``."""

    def __init__(self, trace_id: str, *, enabled: bool = True, out: TextIO | None = None) -> None:
        self.trace_id, self.enabled = trace_id, enabled
        self.out = out or sys.stderr
        self.units: dict[str, tuple[int, int, float]] = {}  # unit -> done, total, first seen
        self._tty = self.out.isatty()
        self._last_draw = 0.0

    def stop(self) -> None:
        if self.enabled and self.units:
            self._draw(force=True)
            self.out.write("\n" if self._tty else "")
            self.out.flush()

    def on_event(self, event: dict[str, Any]) -> None:
        if not is_progress_of(event, self.trace_id):
            return
        unit = str(event.get("unit", "items"))
        first = self.units.get(unit, (0, 0, time.monotonic()))[2]
        self.units[unit] = (int(event.get("done", 0)), int(event.get("total", 0)), first)
        self._draw()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last_draw < (0.1 if self._tty else 2)):
            return
        self._last_draw = now
        line = "  ".join(render_unit(u, *v, now=now) for u, v in self.units.items())
        self.out.write(("\r\x1b[2K" + line) if self._tty else line + "\n")
        self.out.flush()


def render_unit(unit: str, done: int, total: int, first: float, *, now: float) -> str:
    """``chunks 1200/3400 [#####.....] 850/s ETA 3s`` (no rate in the first half second of a
    unit: events that arrive together would give an absurd one)."""
    width = 20
    filled = int(width * done / total) if total else width
    elapsed = now - first
    rate = done / elapsed if elapsed >= MIN_RATE_S else 0.0
    speed = f"{rate:,.0f}/s " if rate > 0 else ""
    eta = f"ETA {int((total - done) / rate)}s" if rate > 0 and done < total else ""
    bar = "#" * filled + "." * (width - filled)
    return f"{unit} {done}/{total} [{bar}] {speed}{eta}".rstrip()


def is_progress_of(event: dict[str, Any], trace_id: str) -> bool:
    return event.get("trace_id") == trace_id and event.get("kind") == "progress"


def follow(
    bus: EventLog, trace_id: str, on_event: Callable[[dict[str, Any]], None], stop: threading.Event
) -> None:
    """Call ``on_event`` with each progress event of ``trace_id`` until ``stop`` is set."""
    try:
        cursor = bus.last_id()
        while not stop.is_set():
            for entry_id, event in bus.read(after=cursor, count=500, block_ms=200):
                cursor = entry_id
                if is_progress_of(event, trace_id):
                    on_event(event)
    except RedisUnavailable:
        return  # no progress display without Redis; the run itself goes on
