"""Per-connection flow control as pure logic: a token bucket and a bounded coalescing queue.

A browser tab cannot use a thousand events a second, and a server must not buffer without
bound for a client that stops reading. So each connection has an :class:`Outbox`: frames wait
there for the :class:`TokenBucket` (default 10 events/s); a progress frame replaces the
waiting progress frame of the same (room, run, task) instead of queueing behind it (only the
latest count matters); every other frame keeps its place and is never dropped. When more than
``capacity`` frames wait, :meth:`Outbox.push` refuses and the caller disconnects the client,
which reconnects and replays what it missed from the stream.

>>> box = Outbox(capacity=2)
>>> box.push(b"p1", 1.0, ("run:1", "1", "t"))
True
>>> box.push(b"p2", 2.0, ("run:1", "1", "t"))   # coalesced into the first slot
True
>>> len(box), box.pop().data
(1, b'p2')
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; time is passed in (testable)."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if one was available, else the seconds until one will be."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


@dataclass(slots=True)
class Frame:
    """One encoded frame waiting to be written; ``ts`` is the event's time (for latency)."""

    data: bytes
    ts: float | None
    key: Hashable | None


class Outbox:
    """FIFO of frames, bounded by ``capacity``; frames with equal ``key`` coalesce in place."""

    __slots__ = ("_pending", "_queue", "capacity", "coalesced")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.coalesced = 0
        self._queue: deque[Frame] = deque()
        self._pending: dict[Hashable, Frame] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, data: bytes, ts: float | None, key: Hashable | None) -> bool:
        """Queue a frame; False (and nothing queued) when the outbox is full."""
        if key is not None:
            waiting = self._pending.get(key)
            if waiting is not None:
                waiting.data, waiting.ts = data, ts
                self.coalesced += 1
                return True
        if len(self._queue) >= self.capacity:
            return False
        frame = Frame(data, ts, key)
        self._queue.append(frame)
        if key is not None:
            self._pending[key] = frame
        return True

    def pop(self) -> Frame | None:
        """The oldest waiting frame, or None."""
        if not self._queue:
            return None
        frame = self._queue.popleft()
        if frame.key is not None and self._pending.get(frame.key) is frame:
            del self._pending[frame.key]
        return frame

    def clear(self) -> None:
        self._queue.clear()
        self._pending.clear()
