"""Vector stores: chunks and their vectors, one namespace per repository + branch.

- :class:`VectorStore`: what the indexing pipeline writes through;
  :class:`HybridStore`: what search reads through; :class:`IndexStore`: both;
- :mod:`~tasks.vectors.lance_store` (default, embedded LanceDB) over
  :mod:`~tasks.vectors.lance_tables`, with :mod:`~tasks.vectors.vector_scan` for exact top-k;
- :mod:`~tasks.vectors.pinecone_store` (serverless Pinecone) with
  :mod:`~tasks.vectors.chunk_catalog` for texts and BM25;
- :mod:`~tasks.vectors.memory_store`: :class:`MemoryStore`, the in-memory twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tasks.records import Chunk, SearchHit


class VectorStore(Protocol):
    """Where the indexing pipeline writes chunk vectors.

    ``upsert`` is idempotent by ``Chunk.id``; ``append`` may assume none of the IDs is
    stored (it is the fast path for new chunks); ``delete`` ignores unknown ids. All are
    safe to repeat, which is what makes "write first, delete after" crash-safe.
    """

    @property
    def dimensions(self) -> int: ...

    def upsert(
        self, namespace: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]
    ) -> None: ...

    def append(
        self, namespace: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]
    ) -> None: ...

    def delete(self, namespace: str, ids: Sequence[str]) -> None: ...

    def ids(self, namespace: str) -> set[str]: ...

    def count(self, namespace: str) -> int: ...

    def optimize(self, namespace: str) -> None: ...

    def drop(self, namespace: str) -> None: ...


class HybridStore(Protocol):
    """A store that can answer both halves of a hybrid query.

    Search asks both halves for candidates without their text (``with_text=False``: a
    store may leave ``text`` empty), fuses them, and reads the text of the final hits only.
    """

    @property
    def dimensions(self) -> int: ...

    def count(self, namespace: str) -> int: ...

    def query(
        self, namespace: str, vector: NDArray[np.float32], limit: int, *, with_text: bool = True
    ) -> list[SearchHit]: ...

    def text_search(
        self, namespace: str, query_tokens: list[str], limit: int, *, with_text: bool = True
    ) -> list[SearchHit]: ...

    def with_text(self, namespace: str, hits: Sequence[SearchHit]) -> list[SearchHit]: ...

    def chunks(self, namespace: str, ids: Sequence[str]) -> list[SearchHit]:
        """The stored chunks of ``ids``, with their text (unknown ids are left out)."""
        ...


class IndexStore(VectorStore, HybridStore, Protocol):
    """What a configured backend is: written by indexing, read by search."""
