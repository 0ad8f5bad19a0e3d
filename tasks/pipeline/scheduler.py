"""Steps 3-6 of the vectorize pipeline, overlapped: chunk -> look up -> embed -> write.

As soon as a batch of files is chunked, its chunks are looked up in the embedding cache,
the misses are submitted for embedding, and finished vectors are written, so chunking,
embedding and writing overlap instead of running one after the other. Work is batched (files
per load, chunks per embedding: never one task per file) and writes go one at a time, in
order, while chunking and embedding go on.

The scheduler submits through :class:`Steps`: Prefect tasks in a flow run
(:class:`~tasks.pipeline.vectorize_tasks.PrefectSteps`), plain calls on in-memory services
in unit tests (:class:`~tasks.pipeline.index_steps.InlineSteps`). It imports no Prefect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from tasks.embedding import Vectors
from tasks.events import EventSink
from tasks.events.model import make_event
from tasks.index.plans import LoadResult, batched
from tasks.records import Chunk

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = TypeVar("P", bound="Pending[Any]")

FILES_PER_LOAD = 400
LOAD_WINDOW = 2  # loads queued at once, so embeddings are not stuck behind every load


class Pending(Protocol[T_co]):
    """A submitted step."""

    def done(self) -> bool: ...

    def wait(self) -> None:
        """Block until it finished, without raising its error."""
        ...

    def result(self) -> T_co: ...


class Steps(Protocol):
    """How the scheduler runs steps 3-6 of one run."""

    def load(self, root: str, paths: list[str]) -> Pending[LoadResult]: ...

    def look_up(self, keys: list[str]) -> dict[int, Vectors]: ...

    def embed(self, keys: list[str], texts: list[str]) -> Pending[Vectors]: ...

    def write(
        self, chunks: list[Chunk], vectors: Vectors, known: frozenset[str]
    ) -> Pending[int]: ...

    def first_done(self, pending: Sequence[P]) -> P:
        """Wait for the first of ``pending`` to finish and return it."""
        ...

    def close(self) -> None:
        """Forget what no one will take (the run failed)."""
        ...


@dataclass
class Reporter:
    """Publishes progress events for one run, at most every ``interval_s`` per unit."""

    bus: EventSink
    base: dict[str, Any]
    interval_s: float = 0.2
    _last: dict[str, float] = field(default_factory=dict)

    def progress(self, unit: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last.get(unit, 0.0) < self.interval_s:
            return
        self._last[unit] = now
        self.bus.publish(make_event("progress", done=done, total=total, unit=unit, **self.base))

    def summary(self, summary: dict[str, Any]) -> None:
        self.bus.publish(make_event("index.summary", **{**self.base, **summary}))


@dataclass
class Scheduler:
    """Steps 3-6 of one run. ``keys`` names texts in the embedding cache; ``before_embed``
    runs before the first embedding is submitted (the flow waits for its warm-up there);
    ``write_batch`` rows are buffered per write."""

    steps: Steps
    reporter: Reporter
    keys: Callable[[list[str]], list[str]]
    embed_batch: int
    write_batch: int
    before_embed: Callable[[], None] = lambda: None
    known: frozenset[str] = frozenset()
    loaded: LoadResult = field(default_factory=LoadResult)
    hits: int = 0
    unchanged: int = 0
    unchanged_ids: frozenset[str] = frozenset()
    chunks_seen: int = 0
    _loads: list[Pending[LoadResult]] = field(default_factory=list)
    _batches: list[list[str]] = field(default_factory=list)
    _root: str = ""
    _paths: int = 0
    _embeds: dict[Pending[Vectors], list[Chunk]] = field(default_factory=dict)
    _buffer: list[tuple[list[Chunk], Vectors]] = field(default_factory=list)
    _buffered: int = 0
    _written: int = 0
    _writing: tuple[Pending[int], int] | None = None  # the write in flight, its size

    @property
    def embedded(self) -> int:
        return self.chunks_seen - self.hits - self.unchanged

    def submit_loads(self, root: str, paths: list[str]) -> None:
        """Start chunking; only ``LOAD_WINDOW`` loads are queued at a time."""
        self._root, self._paths = root, len(paths)
        self._batches = batched(paths, FILES_PER_LOAD)[::-1]
        self.reporter.progress("files", 0, len(paths))
        for _ in range(LOAD_WINDOW):
            self._submit_next_load()

    def run(self, known: frozenset[str], unchanged_ids: frozenset[str]) -> LoadResult:
        """Consume the loads as they finish; ``known``: IDs the store may already hold;
        ``unchanged_ids``: committed chunks that need nothing (same place, same text)."""
        self.known, self.unchanged_ids, files_done = known, unchanged_ids, 0
        try:
            while self._loads:
                part = self._next_load()
                self.loaded.merge(part)
                files_done += len({c.path for c in part.chunks} | part.skipped.keys())
                self.reporter.progress("files", min(files_done, self._paths), self._paths)
                self._look_up(part.chunks)
                self._harvest(block=False)
            self.reporter.progress("files", self._paths, self._paths)
            self._harvest(block=True)
            self._flush()
            self._finish_write()
        finally:  # a failed run leaves no vectors waiting and no write running
            self.steps.close()
            if self._writing is not None:  # the run failed already: its error is the one
                self._writing[0].wait()
        self.loaded.chunks.sort(key=lambda c: (c.path, c.start_line))
        return self.loaded

    def _submit_next_load(self) -> None:
        if self._batches:
            self._loads.append(self.steps.load(self._root, self._batches.pop()))

    def _next_load(self) -> LoadResult:
        pending = self.steps.first_done(self._loads)
        self._loads.remove(pending)
        self._submit_next_load()
        return pending.result()

    def _look_up(self, chunks: list[Chunk]) -> None:
        """Chunks the store holds already need nothing; cached vectors go straight to the
        write buffer; misses are submitted for embedding in batches."""
        self.chunks_seen += len(chunks)
        if self.unchanged_ids:
            kept = [c for c in chunks if c.id not in self.unchanged_ids]
            self.unchanged += len(chunks) - len(kept)
            chunks = kept
        if not chunks:
            return
        keys = self.keys([c.text for c in chunks])
        found = self.steps.look_up(keys)
        if found:
            order = sorted(found)
            self._add([chunks[i] for i in order], np.vstack([found[i] for i in order]))
            self.hits += len(found)
        misses = [i for i in range(len(chunks)) if i not in found]
        if misses:
            self.before_embed()
        for start in range(0, len(misses), self.embed_batch):
            picked = misses[start : start + self.embed_batch]
            group = [chunks[i] for i in picked]
            pending = self.steps.embed([keys[i] for i in picked], [c.text for c in group])
            self._embeds[pending] = group

    def _harvest(self, *, block: bool) -> None:
        """Move finished embeddings into the write buffer (all of them, as they finish, when
        ``block``; only those already finished otherwise)."""
        while self._embeds:
            if block:
                pending = self.steps.first_done(list(self._embeds))
            else:
                finished = [p for p in self._embeds if p.done()]
                if not finished:
                    return
                pending = finished[0]
            group = self._embeds.pop(pending)
            self._add(group, pending.result())

    def _add(self, chunks: list[Chunk], vectors: Vectors) -> None:
        self._buffer.append((chunks, vectors))
        self._buffered += len(chunks)
        if self._buffered >= self.write_batch:
            self._flush()

    def _flush(self) -> None:
        """Start writing the buffer once the previous write is done: one write at a time."""
        if not self._buffer:
            return
        chunks = [c for part, _ in self._buffer for c in part]
        vectors = np.vstack([v for _, v in self._buffer])
        self._buffer, self._buffered = [], 0
        self._finish_write()
        self._writing = (self.steps.write(chunks, vectors, self.known), len(chunks))

    def _finish_write(self) -> None:
        """Wait for the write in flight, if any; raises its error."""
        if self._writing is None:
            return
        pending, size = self._writing
        self._writing = None
        pending.result()
        self._written += size
        self.reporter.progress("chunks", self._written, max(self.chunks_seen, self._written))
