"""MemoryStore: the vector store's in-memory twin (an :class:`~tasks.vectors.IndexStore`).

Exact dot-product search and Okapi BM25 over the same code-aware documents the real stores
index (:func:`~tasks.tokens.code_tokens.search_document`), in plain Python and numpy: what
unit tests of the pipeline and of search need, with no LanceDB and no disk.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from config.errors import VectorStoreError
from tasks.records import Chunk, SearchHit
from tasks.tokens.code_tokens import search_document

_K1, _B = 1.2, 0.75


@dataclass
class _Row:
    chunk: Chunk
    vector: NDArray[np.float32]
    terms: Counter[str]


class MemoryStore:
    """Chunks, vectors and BM25 documents in dictionaries, one per namespace."""

    def __init__(self, dimensions: int) -> None:
        self._dimensions = dimensions
        self._tables: dict[str, dict[str, _Row]] = {}
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return self._dimensions

    # --- writes ---------------------------------------------------------------------------
    def upsert(self, namespace: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> None:
        if len(chunks) != len(vectors):
            raise VectorStoreError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if len(chunks) and vectors.shape[1] != self._dimensions:
            raise VectorStoreError(
                f"{vectors.shape[1]}-dim vectors for a {self._dimensions}-dim store"
            )
        rows = {
            chunk.id: _Row(chunk, vector, Counter(search_document(chunk).split()))
            for chunk, vector in zip(chunks, vectors, strict=True)
        }
        with self._lock:
            self._tables.setdefault(namespace, {}).update(rows)

    append = upsert

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        with self._lock:
            table = self._tables.get(namespace, {})
            for chunk_id in ids:
                table.pop(chunk_id, None)

    def drop(self, namespace: str) -> None:
        with self._lock:
            self._tables.pop(namespace, None)

    def optimize(self, namespace: str) -> None:
        """Nothing to compact in memory."""

    # --- reads ----------------------------------------------------------------------------
    def ids(self, namespace: str) -> set[str]:
        return set(self._rows(namespace))

    def count(self, namespace: str) -> int:
        return len(self._rows(namespace))

    def query(
        self, namespace: str, vector: NDArray[np.float32], limit: int, *, with_text: bool = True
    ) -> list[SearchHit]:
        rows = list(self._rows(namespace).values())
        if not rows or limit < 1 or not np.all(np.isfinite(vector)):
            return []
        scores = np.stack([row.vector for row in rows]) @ vector
        return _best(
            [(row, float(s)) for row, s in zip(rows, scores, strict=True)], limit, with_text
        )

    def text_search(
        self, namespace: str, query_tokens: list[str], limit: int, *, with_text: bool = True
    ) -> list[SearchHit]:
        rows = list(self._rows(namespace).values())
        terms = [t for t in dict.fromkeys(query_tokens) if t.strip()]
        if not rows or not terms or limit < 1:
            return []
        scored = [(row, _bm25(row, terms, rows)) for row in rows]
        return _best([(row, score) for row, score in scored if score > 0], limit, with_text)

    def chunks(self, namespace: str, ids: Sequence[str]) -> list[SearchHit]:
        rows = self._rows(namespace)
        return [_hit(rows[i].chunk, 0.0, with_text=True) for i in ids if i in rows]

    def with_text(self, namespace: str, hits: Sequence[SearchHit]) -> list[SearchHit]:
        rows = self._rows(namespace)
        return [replace(h, text=rows[h.id].chunk.text) if h.id in rows else h for h in hits]

    def _rows(self, namespace: str) -> dict[str, _Row]:
        with self._lock:
            return dict(self._tables.get(namespace, {}))


def _bm25(row: _Row, terms: list[str], rows: list[_Row]) -> float:
    average = sum(r.terms.total() for r in rows) / len(rows)
    score = 0.0
    for term in terms:
        frequency = row.terms.get(term, 0)
        if not frequency:
            continue
        having = sum(1 for r in rows if term in r.terms)
        idf = math.log(1 + (len(rows) - having + 0.5) / (having + 0.5))
        norm = _K1 * (1 - _B + _B * row.terms.total() / average)
        score += idf * frequency * (_K1 + 1) / (frequency + norm)
    return score


def _best(scored: list[tuple[_Row, float]], limit: int, with_text: bool) -> list[SearchHit]:
    ranked = sorted(scored, key=lambda item: (-item[1], item[0].chunk.id))[:limit]
    return [_hit(row.chunk, score, with_text) for row, score in ranked]


def _hit(chunk: Chunk, score: float, with_text: bool) -> SearchHit:
    return SearchHit(
        id=chunk.id,
        path=chunk.path,
        start_line=chunk.start_line,
        end_line=chunk.end_line,
        score=score,
        text=chunk.text if with_text else "",
        symbol=chunk.symbol,
        language=chunk.language,
    )
