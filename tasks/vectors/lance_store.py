"""LanceDB adapter: one embedded database under a directory, one table per namespace.

A namespace is one repository + branch. Rows carry the chunk's place (path, lines,
symbol), its text, ``tokens`` (space-joined :func:`~tasks.tokens.code_tokens.code_tokens` of path +
symbol + text, the BM25 field) and its vector.

Choices (``benchmarks/search`` measures each against the alternatives):

* **Vector search: exact dot product over an in-process float32 matrix** (BLAS's
  matrix-vector product on every core, or the native extension's int8 shortlist,
  :mod:`tasks.vectors.vector_scan`), cached per table version with each row's hit columns
  but the text, so candidates cost no I/O; texts are read by position for the final hits
  only. It is exact, needs no index upkeep after upserts and deletes, and was faster than
  LanceDB's brute-force query and than its ANN indexes at the recall search needs (they
  take minutes to build, or lose recall without refinement). Memory: the vector plus the
  hit columns, about 1.4 KB per chunk. After a change to the table only the rows of new
  fragments are read, the others are reused.
  ``cache_vectors=False`` uses LanceDB's own search instead (better for one-shot processes
  that run a single query).
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
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from config.errors import ConfigError, VectorStoreError
from config.storage import StoreLocation
from tasks.records import Chunk, SearchHit
from tasks.vectors.lance_tables import (
    CHUNK_FIELDS,
    HIT_COLUMNS,
    LANCE_ERRORS,
    LanceTables,
    bm25_query,
    by_score,
    chunk_columns,
    hit_from_row,
    latest_chunks,
    table_name,
)
from tasks.vectors.vector_scan import VectorScan

__all__ = ["LanceStore", "table_name", "vectors_of"]


_META_COLUMNS = ["id", "path", "start_line", "end_line", "symbol", "language"]


@dataclass(frozen=True, slots=True)
class _Matrix:
    """One table version held in memory for search: every vector, each row's hit columns
    but its text, and that version of the table (Lance's dataset, whose row positions are
    the matrix's). Candidates are built from memory; only the final hits' texts are read.

    ``addresses`` are Lance's row addresses (fragment id << 32 | offset) sorted, ``by_address``
    the positions in that order: they turn full-text hits (which carry ``_rowaddr``) into
    positions. Lance never rewrites a fragment's data files in place, so an address in a
    fragment whose data files are those in ``fragments`` names the same row in any later
    version that still has it.
    """

    version: int
    scan: VectorScan
    dataset: Any
    columns: dict[str, list[Any]]
    addresses: NDArray[np.uint64]
    by_address: NDArray[np.intp]
    positions: dict[str, int]
    fragments: dict[int, tuple[str, ...]]

    @property
    def vectors(self) -> NDArray[np.float32]:
        return self.scan.vectors

    @property
    def size(self) -> int:
        return self.scan.size

    def hit(self, position: int, score: float) -> SearchHit:
        """The hit at ``position`` without its text (see :meth:`LanceStore.with_text`)."""
        columns = self.columns
        return SearchHit(
            id=columns["id"][position],
            path=columns["path"][position],
            start_line=columns["start_line"][position],
            end_line=columns["end_line"][position],
            score=float(score),
            text="",
            symbol=columns["symbol"][position],
            language=columns["language"][position] or "",
        )

    def find(self, addresses: NDArray[np.uint64]) -> NDArray[np.intp]:
        """Positions of ``addresses``; -1 where this version does not hold the row."""
        if self.addresses.size == 0:
            return np.full(len(addresses), -1, np.intp)
        slots = np.minimum(np.searchsorted(self.addresses, addresses), self.addresses.size - 1)
        return np.where(self.addresses[slots] == addresses, self.by_address[slots], -1)

    def texts(self, positions: list[int]) -> list[str]:
        return self.dataset.take(positions, columns=["text"])["text"].to_pylist()  # type: ignore[no-any-return]


def _filled(hits: Sequence[SearchHit], texts: list[str]) -> list[SearchHit]:
    return [replace(hit, text=text) for hit, text in zip(hits, texts, strict=True)]


def _with_texts(matrix: _Matrix, hits: list[SearchHit], positions: list[int]) -> list[SearchHit]:
    """``hits`` (rows ``positions`` of ``matrix``) with their texts, read in one ``take``."""
    return _filled(hits, matrix.texts(positions)) if hits else hits


def vectors_of(data: pa.Table, dimensions: int) -> NDArray[np.float32]:
    """The ``vector`` column of ``data`` as one contiguous float32 matrix."""
    flat = data["vector"].combine_chunks().values.to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat, dtype=np.float32).reshape(-1, dimensions)


def _fragment_files(dataset: Any) -> dict[int, tuple[str, ...]]:
    """Each fragment's data files: the same id with other files is other data (a table
    dropped and created again restarts its fragment ids)."""
    return {
        fragment.fragment_id: tuple(file.path for file in fragment.data_files())
        for fragment in dataset.get_fragments()
    }


def _matrix_of(
    dataset: Any,
    vectors: NDArray[np.float32],
    columns: dict[str, list[Any]],
    addresses: Any,
    fragments: dict[int, tuple[str, ...]],
) -> _Matrix:
    order = np.argsort(addresses, kind="stable")
    return _Matrix(
        version=int(dataset.version),
        scan=VectorScan(vectors),
        dataset=dataset,
        columns=columns,
        addresses=addresses[order],
        by_address=order,
        positions={chunk_id: i for i, chunk_id in enumerate(columns["id"])},
        fragments=fragments,
    )


def _load_matrix(dataset: Any, dimensions: int) -> _Matrix:
    """Every row of ``dataset`` (one version of a table), read whole."""
    data = dataset.to_table(columns=[*_META_COLUMNS, "vector"], with_row_address=True)
    columns = {name: data[name].to_pylist() for name in _META_COLUMNS}
    addresses = data["_rowaddr"].to_numpy()
    return _matrix_of(
        dataset, vectors_of(data, dimensions), columns, addresses, _fragment_files(dataset)
    )


def _reload_matrix(old: _Matrix, dataset: Any, dimensions: int) -> _Matrix:
    """The matrix of ``dataset``, a later version of ``old``'s table: rows of fragments whose
    data files ``old`` holds too come from ``old`` (Lance never rewrites a data file), only
    the others are read. Mostly new rows (after a compaction, say): read whole."""
    addresses = dataset.to_table(columns=[], with_row_address=True)["_rowaddr"].to_numpy()
    fragments = _fragment_files(dataset)
    same = [f for f, files in fragments.items() if old.fragments.get(f) == files]
    before = np.where(np.isin(addresses >> 32, same), old.find(addresses), -1)
    fresh = np.flatnonzero(before < 0)
    if fresh.size * 2 > addresses.size:
        return _load_matrix(dataset, dimensions)
    kept = np.maximum(before, 0)  # fresh rows get a placeholder, overwritten below
    vectors = old.vectors[kept]
    columns = {name: np.asarray(old.columns[name], dtype=object)[kept] for name in _META_COLUMNS}
    if fresh.size:
        data = dataset.take(fresh.tolist(), columns=[*_META_COLUMNS, "vector"])
        vectors[fresh] = vectors_of(data, dimensions)
        for name in _META_COLUMNS:
            columns[name][fresh] = np.asarray(data[name].to_pylist(), dtype=object)
    lists = {name: column.tolist() for name, column in columns.items()}
    return _matrix_of(dataset, vectors, lists, addresses, fragments)


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
        shared: StoreLocation | None = None,
    ) -> None:
        if dimensions < 1:
            raise ConfigError(f"vector dimensions must be positive, not {dimensions}")
        self._dimensions = dimensions
        self._cache_vectors = cache_vectors
        self._matrices: dict[str, _Matrix] = {}
        schema = pa.schema([*CHUNK_FIELDS, ("vector", pa.list_(pa.float32(), dimensions))])
        super().__init__(directory, schema, keep_versions_for=keep_versions_for, shared=shared)

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

    def query(
        self,
        namespace: str,
        vector: NDArray[np.float32],
        limit: int,
        *,
        with_text: bool = True,
    ) -> list[SearchHit]:
        """Nearest chunks by dot product (cosine: vectors are normalised), best first.

        ``with_text=False`` leaves ``text`` empty (fill the final hits with
        :meth:`with_text`): candidates then come from memory alone.
        """
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
                return self._query_matrix(namespace, table, query, limit, with_text)
            rows = (
                table.search(query, vector_column_name="vector")
                .distance_type("dot")
                .select([*HIT_COLUMNS, "_distance"])
                .limit(limit)
                .to_arrow()
            )
        except LANCE_ERRORS as exc:
            raise self._failure(f"vector query in {namespace!r} failed", exc) from exc
        # LanceDB's "dot" distance is 1 - dot product.
        return [hit_from_row(row, 1.0 - row["_distance"]) for row in rows.to_pylist()]

    def with_text(self, namespace: str, hits: Sequence[SearchHit]) -> list[SearchHit]:
        """``hits`` with their chunk text, read by position for the rows the matrix holds."""
        matrix = self._matrices.get(table_name(namespace))
        if matrix is None:
            return super().with_text(namespace, hits)
        positions = [matrix.positions.get(hit.id, -1) for hit in hits]
        if -1 in positions:  # rows newer than the matrix: read them by id
            return super().with_text(namespace, hits)
        try:
            return _filled(hits, matrix.texts(positions))
        except LANCE_ERRORS as exc:
            raise self._failure(f"reading hits of {namespace!r} failed", exc) from exc

    # ---- the in-process vector matrix -----------------------------------------------------

    def _matrix(self, namespace: str, table: Any) -> _Matrix:
        name = table_name(namespace)
        cached = self._matrices.get(name)
        if cached is not None and cached.version == int(table.version):
            return cached
        # This version, pinned: positions stay valid while the table moves on.
        dataset = table.to_lance()
        if cached is None:
            matrix = _load_matrix(dataset, self._dimensions)
        else:
            matrix = _reload_matrix(cached, dataset, self._dimensions)
        self._matrices[name] = matrix
        return matrix

    def _hits(
        self, matrix: _Matrix, positions: list[int], scores: list[float], with_text: bool
    ) -> list[SearchHit]:
        hits = [matrix.hit(p, s) for p, s in zip(positions, scores, strict=True)]
        return _with_texts(matrix, hits, positions) if with_text else hits

    def _query_matrix(
        self, namespace: str, table: Any, query: NDArray[np.float32], limit: int, with_text: bool
    ) -> list[SearchHit]:
        """Exact top-``limit`` by dot product; hit columns from memory, texts (if asked for)
        by position in the matrix's own version of the table (Lance's ``take``). The matrix
        is re-read when the table's version moves, so a query sees one consistent version.

        The product is BLAS's, on every core (faster than one thread or ``einsum``); large
        matrices go through an int8 shortlist first (:class:`tasks.vectors.vector_scan.VectorScan`).
        (:func:`tasks.search.hybrid.hybrid_search`
        runs BM25 before it, not beside it; :mod:`config.native` stops BLAS's idle spin.)
        """
        matrix = self._matrix(namespace, table)
        positions, scores = matrix.scan.top(query, limit)
        return self._hits(matrix, positions, scores, with_text)

    def _bm25_hits(
        self, namespace: str, table: Any, terms: list[str], limit: int, with_text: bool
    ) -> list[SearchHit]:
        """With the vector matrix cached, LanceDB returns only row addresses and scores (half
        the time of reading the hit columns too), which become matrix positions.
        The search runs first, then the matrix is checked against the table's version, so
        the matrix is of that version or a later one; a row that later version lacks was
        deleted or moved in between: left out."""
        if not self._cache_vectors:
            return super()._bm25_hits(namespace, table, terms, limit, with_text)
        rows = bm25_query(table, terms, ["_rowaddr", "_score"], limit)
        matrix = self._matrix(namespace, table)
        positions = matrix.find(rows["_rowaddr"].to_numpy()).tolist()
        scores = rows["_score"].to_pylist()
        found = [matrix.hit(p, s) for p, s in zip(positions, scores, strict=True) if p >= 0]
        hits = by_score(found, limit)
        if not with_text:
            return hits
        return _with_texts(matrix, hits, [matrix.positions[hit.id] for hit in hits])
