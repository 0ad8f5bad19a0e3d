"""LanceDB adapter: one embedded database under a directory, one table per namespace.

A namespace is one repository + branch. Rows carry the chunk's place (path, lines,
symbol), its text, ``tokens`` (space-joined :func:`~tasks.codetokens.code_tokens` of path +
symbol + text, the BM25 field) and its vector.

Choices, measured on 100K rows x 256 dims, 2 cores (see ``benchmarks/search/run.py``):

* **Vector search: exact dot product over an in-process float32 matrix** (~2.5 ms at 100K:
  BLAS's matrix-vector product on every core), cached per table version. LanceDB's
  brute-force query took ~130 ms; IVF_HNSW_SQ built in 63 s (~4 ms/query); IVF_PQ built in
  40 s with poor recall without refinement; IVF_FLAT built in 1 s but needed ~9 ms for 94%
  recall. The matrix costs ~1 KB per chunk of memory and
  one column scan (~0.3 s at 100K) after each change to the table; it is exact, and needs
  no index upkeep after upserts and deletes. ``cache_vectors=False`` uses LanceDB's own
  search instead (better for one-shot processes that run a single query).
* **BM25: LanceDB's native full-text index** over ``tokens`` with the ``whitespace``
  tokenizer and no stemming, lower-casing or stop words (the tokens are already code-aware).
  Tantivy is gone from lancedb 0.40. Rows written after the index was built are still
  found (LanceDB scans them flat); :meth:`LanceStore.optimize` folds them into the index and
  compacts the table, and runs by itself once unindexed rows pass a threshold.
* A BTREE index on ``id`` speeds up fetching hits by id and ``id IN (...)`` deletes.

The connection uses strong read consistency, so a long-lived searcher (the HTTP server)
sees what an indexing run in another process wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from tasks.errors import ConfigError, VectorStoreError
from tasks.lance_tables import (
    CHUNK_FIELDS,
    HIT_COLUMNS,
    LANCE_ERRORS,
    LanceTables,
    chunk_columns,
    hit_from_row,
    latest_chunks,
    table_name,
)
from tasks.records import Chunk, SearchHit

__all__ = ["LanceStore", "table_name"]


@dataclass(frozen=True, slots=True)
class _Matrix:
    """Every vector of one table version, with its row's id at the same position, and that
    version of the table (Lance's dataset, whose row positions are the matrix's)."""

    version: int
    ids: NDArray[np.object_]
    vectors: NDArray[np.float32]
    dataset: Any


class LanceStore(LanceTables):
    """Chunks and vectors in LanceDB under ``directory``; implements ``VectorStore``.

    >>> store = LanceStore(home / "lancedb", dimensions=256)
    >>> store.upsert("repo@main", chunks, embedder.embed([c.text for c in chunks]))
    >>> store.query("repo@main", embedder.embed(["parse json"])[0], limit=10)
    """

    def __init__(
        self,
        directory: str | Path,
        dimensions: int,
        *,
        cache_vectors: bool = True,
        keep_versions_for: timedelta = timedelta(hours=1),
    ) -> None:
        if dimensions < 1:
            raise ConfigError(f"vector dimensions must be positive, not {dimensions}")
        self._dimensions = dimensions
        self._cache_vectors = cache_vectors
        self._matrices: dict[str, _Matrix] = {}
        schema = pa.schema([*CHUNK_FIELDS, ("vector", pa.list_(pa.float32(), dimensions))])
        super().__init__(directory, schema, keep_versions_for=keep_versions_for)

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def _opened(self, table: Any, namespace: str) -> None:
        found = table.schema.field("vector").type.list_size
        if found != self._dimensions:
            raise VectorStoreError(
                f"namespace {namespace!r} holds {found}-dim vectors but the embedder makes "
                f"{self._dimensions}: drop the namespace and re-index"
            )

    # ---- writes -------------------------------------------------------------------------

    def _rows(self, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> pa.Table:
        if vectors.ndim != 2 or vectors.shape != (len(chunks), self._dimensions):
            raise VectorStoreError(
                f"expected vectors of shape ({len(chunks)}, {self._dimensions}), "
                f"got {vectors.shape}"
            )
        keep = latest_chunks(chunks)
        flat = np.ascontiguousarray(vectors[keep], dtype=np.float32).ravel()
        columns: dict[str, Any] = chunk_columns([chunks[i] for i in keep])
        columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), self._dimensions)
        return pa.table(columns, schema=self._schema)

    def upsert(self, namespace: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> None:
        """Insert or replace chunks by ``Chunk.id``; upserting the same chunks twice is a no-op.

        Duplicate ids inside one call keep the last occurrence.
        """
        rows = self._rows(chunks, vectors)
        if rows.num_rows:
            self._write(namespace, rows, merge=True)

    def append(self, namespace: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> None:
        """Add chunks whose IDs the caller knows are not stored yet (no merge: much faster)."""
        rows = self._rows(chunks, vectors)
        if rows.num_rows:
            self._write(namespace, rows, merge=False)

    def drop(self, namespace: str) -> None:
        self._matrices.pop(table_name(namespace), None)
        super().drop(namespace)

    # ---- reads --------------------------------------------------------------------------

    def query(self, namespace: str, vector: NDArray[np.float32], limit: int) -> list[SearchHit]:
        """Nearest chunks by dot product (cosine: vectors are normalised), best first."""
        table = self._open(namespace)
        if table is None or limit < 1:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self._dimensions:
            raise VectorStoreError(
                f"query vector has {query.shape[0]} dims, the store {self._dimensions}"
            )
        try:
            if self._cache_vectors:
                return self._query_matrix(namespace, table, query, limit)
            rows = (
                table.search(query, vector_column_name="vector")
                .distance_type("dot")
                .select([*HIT_COLUMNS, "_distance"])
                .limit(limit)
                .to_arrow()
            )
        except LANCE_ERRORS as exc:
            raise VectorStoreError(f"vector query in {namespace!r} failed: {exc}") from exc
        # LanceDB's "dot" distance is 1 - dot product.
        return [hit_from_row(row, 1.0 - row["_distance"]) for row in rows.to_pylist()]

    # ---- the in-process vector matrix -----------------------------------------------------

    def _matrix(self, namespace: str, table: Any) -> _Matrix:
        name = table_name(namespace)
        version = int(table.version)
        cached = self._matrices.get(name)
        if cached is not None and cached.version == version:
            return cached
        dataset = table.to_lance()  # this version, pinned: positions stay valid
        data = dataset.to_table(columns=["id", "vector"])
        flat = data["vector"].combine_chunks().values.to_numpy(zero_copy_only=False)
        matrix = _Matrix(
            version=int(dataset.version),
            ids=np.asarray(data["id"].to_pylist(), dtype=object),
            vectors=np.ascontiguousarray(flat, dtype=np.float32).reshape(-1, self._dimensions),
            dataset=dataset,
        )
        self._matrices[name] = matrix
        return matrix

    def _query_matrix(
        self, namespace: str, table: Any, query: NDArray[np.float32], limit: int
    ) -> list[SearchHit]:
        """Exact top-``limit`` by dot product, then those rows' columns by position in the
        matrix's own version of the table (Lance's ``take``: ~2.5 ms for 50 rows, half of
        LanceDB's ``take_row_ids``). The matrix is re-read when the table's version moves,
        so a query sees one consistent version.

        The product is BLAS's, on every core: ~2.5 ms at 100K x 256 on 2 cores, against
        ~8-10 ms on one thread and ~11-15 ms for ``einsum``. (:func:`tasks.search.hybrid_search`
        runs BM25 before it, not beside it; :mod:`config.native` stops BLAS's idle spin.)
        """
        matrix = self._matrix(namespace, table)
        if matrix.ids.size == 0:
            return []
        scores = matrix.vectors @ query.astype(np.float32, copy=False)
        k = min(limit, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        rows = matrix.dataset.take(top.tolist(), columns=HIT_COLUMNS).to_pylist()
        return [
            hit_from_row(row, scores[position])
            for position, row in zip(top, rows, strict=True)
            if row["id"] == matrix.ids[position]
        ]
