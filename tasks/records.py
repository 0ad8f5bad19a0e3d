"""Plain data shared by the vectorization pipeline's stages (no I/O, no third-party imports)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

ChunkKind = Literal["function", "class", "method", "module", "window"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of one file, small enough to embed, that knows where it came from.

    ``path`` is repo-relative and ``/``-separated; lines are 1-based and inclusive.
    """

    path: str
    language: str
    start_line: int
    end_line: int
    text: str
    symbol: str | None = None
    kind: ChunkKind = "window"
    #: The chunk's BM25 document when whoever made the chunk already built it (the chunk
    #: workers do, in parallel); :func:`tasks.tokens.code_tokens.search_document` otherwise.
    search_text: str | None = field(default=None, compare=False, repr=False)
    _id: str | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def content_hash(self) -> str:
        return hashlib.blake2b(
            self.text.encode("utf-8", "surrogatepass"), digest_size=16
        ).hexdigest()

    @property
    def id(self) -> str:
        """Deterministic ID: the same chunk at the same place always gets the same ID
        (computed on first use, then remembered: a run asks for it many times)."""
        if self._id is None:
            key = f"{self.path}\0{self.start_line}\0{self.content_hash}".encode(
                "utf-8", "surrogatepass"
            )
            object.__setattr__(self, "_id", hashlib.blake2b(key, digest_size=16).hexdigest())
        assert self._id is not None
        return self._id


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result, best first in a list; ``score`` is comparable within one query."""

    id: str
    path: str
    start_line: int
    end_line: int
    score: float
    text: str
    symbol: str | None = None
    language: str = ""
