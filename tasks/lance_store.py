"""LanceDB adapter: one embedded database under a directory, one table per namespace.

A namespace is one repository + branch. Rows carry the chunk's place (path, lines,
symbol), its text, ``tokens`` (space-joined :func:`~tasks.codetokens.code_tokens` of path +
symbol + text, the BM25 field) and its vector.

Choices, measured on 100K rows x 256 dims, 2 cores (see ``benchmarks/search/run.py``):

* **Vector search: exact dot product over an in-process float32 matrix** (~3 ms), cached
  per table version. LanceDB's brute-force query took ~130 ms; IVF_HNSW_SQ built in 63 s
  (~4 ms/query); IVF_PQ built in 40 s with poor recall without refinement; IVF_FLAT built
  in 1 s but needed ~9 ms for 94% recall. The matrix costs ~1 KB per chunk of memory and
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

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, BTree
from numpy.typing import NDArray

from tasks.codetokens import code_tokens
from tasks.errors import ConfigError, VectorStoreError
from tasks.records import Chunk, SearchHit

_ID_BATCH = 1000
_HIT_COLUMNS = ["id", "path", "start_line", "end_line", "text", "symbol", "language"]
_LANCE_ERRORS = (OSError, RuntimeError, ValueError)
# Auto-optimize once this many rows (or half the indexed rows) sit outside the text index:
# rarely enough that a cold index run pays for it only a few times.
_UNINDEXED_ROWS = 20_000
_ID_INDEX = "id_idx"
_TEXT_INDEX = "tokens_idx"
# The tokens are already code-aware and lower-cased: split on whitespace, change nothing.
_TEXT_INDEX_CONFIG = FTS(
    base_tokenizer="whitespace",
    lower_case=False,
    stem=False,
    remove_stop_words=False,
    ascii_folding=False,
    with_position=False,
    max_token_length=64,
)


def table_name(namespace: str) -> str:
    """A safe, deterministic table name: readable prefix + hash (no two namespaces collide).

    >>> table_name("github.com/acme/app@main")
    'github.com_acme_app_main-0d2c9d6c4d31'
    """
    if not namespace:
        raise ConfigError("a vector-store namespace must not be empty")
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", namespace).strip("._-")[:80]
    digest = hashlib.blake2b(namespace.encode("utf-8"), digest_size=6).hexdigest()
    return f"{readable or 'ns'}-{digest}"


def search_tokens(chunk: Chunk) -> str:
    """The BM25 document of a chunk: its path and symbol count as words of its text."""
    return " ".join(code_tokens(f"{chunk.path}\n{chunk.symbol or ''}\n{chunk.text}"))


def _id_predicate(ids: Sequence[str]) -> str:
    quoted = ",".join("'" + i.replace("'", "''") + "'" for i in ids)
    return f"id IN ({quoted})"


def _batches(items: Sequence[str], size: int = _ID_BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class _Matrix:
    """Every vector of one table version, with its row's id at the same position."""

    version: int
    ids: NDArray[np.object_]
    row_ids: NDArray[np.uint64]
    vectors: NDArray[np.float32]


class LanceStore:
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
        self._keep_versions_for = keep_versions_for
        self._tables: dict[str, Any] = {}
        self._matrices: dict[str, _Matrix] = {}
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self._db: Any = lancedb.connect(str(directory), read_consistency_interval=timedelta(0))
        except _LANCE_ERRORS as exc:
            raise VectorStoreError(f"cannot open LanceDB at {directory}: {exc}") from exc

    @property
    def dimensions(self) -> int:
        return self._dimensions

    # ---- tables -------------------------------------------------------------------------

    def _schema(self) -> pa.Schema:
        return pa.schema(
            [
                ("id", pa.string()),
                ("path", pa.string()),
                ("language", pa.string()),
                ("start_line", pa.int32()),
                ("end_line", pa.int32()),
                ("symbol", pa.string()),
                ("kind", pa.string()),
                ("text", pa.string()),
                ("tokens", pa.string()),
                ("vector", pa.list_(pa.float32(), self._dimensions)),
            ]
        )

    def _open(self, namespace: str) -> Any | None:
        """The namespace's table, or None if nothing was ever written to it."""
        name = table_name(namespace)
        if name in self._tables:
            return self._tables[name]
        try:
            table = self._db.open_table(name)
        except (ValueError, FileNotFoundError):
            return None
        self._check_dimensions(table, namespace)
        self._tables[name] = table
        return table

    def _check_dimensions(self, table: Any, namespace: str) -> None:
        found = table.schema.field("vector").type.list_size
        if found != self._dimensions:
            raise VectorStoreError(
                f"namespace {namespace!r} holds {found}-dim vectors but the embedder makes "
                f"{self._dimensions}: drop the namespace and re-index"
            )

    def _create(self, namespace: str) -> Any:
        name = table_name(namespace)
        table = self._db.create_table(name, schema=self._schema(), exist_ok=True)
        self._check_dimensions(table, namespace)
        self._tables[name] = table
        return table

    # ---- writes -------------------------------------------------------------------------

    def _rows(self, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> pa.Table:
        latest = {chunk.id: i for i, chunk in enumerate(chunks)}
        keep = sorted(latest.values())
        picked = [chunks[i] for i in keep]
        flat = np.ascontiguousarray(vectors[keep], dtype=np.float32).ravel()
        columns = {
            "id": [c.id for c in picked],
            "path": [c.path for c in picked],
            "language": [c.language for c in picked],
            "start_line": [c.start_line for c in picked],
            "end_line": [c.end_line for c in picked],
            "symbol": [c.symbol for c in picked],
            "kind": [c.kind for c in picked],
            "text": [c.text for c in picked],
            "tokens": [search_tokens(c) for c in picked],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat), self._dimensions),
        }
        return pa.table(columns, schema=self._schema())

    def upsert(self, namespace: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> None:
        """Insert or replace chunks by ``Chunk.id``; upserting the same chunks twice is a no-op.

        Duplicate ids inside one call keep the last occurrence.
        """
        if vectors.ndim != 2 or vectors.shape != (len(chunks), self._dimensions):
            raise VectorStoreError(
                f"expected vectors of shape ({len(chunks)}, {self._dimensions}), "
                f"got {vectors.shape}"
            )
        if not chunks:
            return
        rows = self._rows(chunks, vectors)
        try:
            table = self._open(namespace) or self._create(namespace)
            (
                table.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(rows)
            )
            self._maintain_indexes(table)
        except _LANCE_ERRORS as exc:
            raise VectorStoreError(f"upsert into {namespace!r} failed: {exc}") from exc

    def append(self, namespace: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> None:
        """Add chunks whose IDs the caller knows are not stored yet (no merge: much faster)."""
        if not chunks:
            return
        rows = self._rows(chunks, vectors)
        try:
            table = self._open(namespace)
            if table is None:
                table = self._db.create_table(table_name(namespace), data=rows, exist_ok=True)
                self._tables[table_name(namespace)] = table
            else:
                table.add(rows)
            self._maintain_indexes(table)
        except _LANCE_ERRORS as exc:
            raise VectorStoreError(f"append to {namespace!r} failed: {exc}") from exc

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        """Delete rows by id, ``_ID_BATCH`` ids per predicate; unknown ids are ignored."""
        table = self._open(namespace)
        if table is None or not ids:
            return
        try:
            for batch in _batches(list(dict.fromkeys(ids))):
                table.delete(_id_predicate(batch))
        except _LANCE_ERRORS as exc:
            raise VectorStoreError(f"deleting chunks of {namespace!r} failed: {exc}") from exc

    def drop(self, namespace: str) -> None:
        """Remove the namespace's table and everything in it (no error if it is absent)."""
        name = table_name(namespace)
        self._tables.pop(name, None)
        self._matrices.pop(name, None)
        try:
            self._db.drop_table(name, ignore_missing=True)
        except _LANCE_ERRORS as exc:
            raise VectorStoreError(f"dropping {namespace!r} failed: {exc}") from exc

    # ---- indexes ------------------------------------------------------------------------

    def _maintain_indexes(self, table: Any) -> None:
        """Create missing indexes; optimize once many rows sit outside the text index."""
        names = {index.name for index in table.list_indices()}
        if _ID_INDEX not in names:
            table.create_index("id", config=BTree(), name=_ID_INDEX)
        if _TEXT_INDEX not in names:
            table.create_index("tokens", config=_TEXT_INDEX_CONFIG, name=_TEXT_INDEX)
            return
        stats = table.index_stats(_TEXT_INDEX)
        if stats is not None and stats.num_unindexed_rows > max(
            _UNINDEXED_ROWS, stats.num_indexed_rows // 2
        ):
            self._optimize_table(table)

    def _optimize_table(self, table: Any) -> None:
        table.optimize(cleanup_older_than=self._keep_versions_for)

    def optimize(self, namespace: str) -> None:
        """Fold new rows into the indexes, compact small files, prune old versions.

        Call it once at the end of an indexing run: each upsert batch leaves a small file,
        and many small files slow every query down.
        """
        table = self._open(namespace)
        if table is None:
            return
        try:
            self._maintain_indexes(table)
            self._optimize_table(table)
        except _LANCE_ERRORS as exc:
            raise VectorStoreError(f"optimizing {namespace!r} failed: {exc}") from exc

    # ---- reads --------------------------------------------------------------------------

    def count(self, namespace: str) -> int:
        table = self._open(namespace)
        return 0 if table is None else int(table.count_rows())

    def ids(self, namespace: str) -> set[str]:
        """Every chunk id stored in the namespace (for sweeps and consistency checks)."""
        table = self._open(namespace)
        if table is None:
            return set()
        column = table.search().select(["id"]).limit(table.count_rows() + 1).to_arrow()["id"]
        return set(column.to_pylist())

    def _hits(self, rows: pa.Table, scores: Sequence[float]) -> list[SearchHit]:
        data = rows.select(_HIT_COLUMNS).to_pylist()
        return [
            SearchHit(
                id=r["id"],
                path=r["path"],
                start_line=r["start_line"],
                end_line=r["end_line"],
                score=float(score),
                text=r["text"],
                symbol=r["symbol"],
                language=r["language"] or "",
            )
            for r, score in zip(data, scores, strict=True)
        ]

    def text_search(self, namespace: str, query_tokens: list[str], limit: int) -> list[SearchHit]:
        """BM25 over the ``tokens`` column; ``query_tokens`` come from ``code_tokens``."""
        table = self._open(namespace)
        terms = [t for t in dict.fromkeys(query_tokens) if t and not t.isspace()]
        if table is None or not terms or limit < 1:
            return []
        try:
            rows = (
                table.search(" ".join(terms), query_type="fts", fts_columns="tokens")
                .select([*_HIT_COLUMNS, "_score"])
                .limit(limit)
                .to_arrow()
            )
        except _LANCE_ERRORS as exc:
            raise VectorStoreError(f"text search in {namespace!r} failed: {exc}") from exc
        return self._hits(rows, rows["_score"].to_pylist())

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
                .select([*_HIT_COLUMNS, "_distance"])
                .limit(limit)
                .to_arrow()
            )
        except _LANCE_ERRORS as exc:
            raise VectorStoreError(f"vector query in {namespace!r} failed: {exc}") from exc
        # LanceDB's "dot" distance is 1 - dot product.
        return self._hits(rows, [1.0 - d for d in rows["_distance"].to_pylist()])

    # ---- the in-process vector matrix -----------------------------------------------------

    def _matrix(self, namespace: str, table: Any) -> _Matrix:
        name = table_name(namespace)
        version = int(table.version)
        cached = self._matrices.get(name)
        if cached is not None and cached.version == version:
            return cached
        data = (
            table.search()
            .select(["id", "vector"])
            .with_row_id(True)
            .limit(table.count_rows() + 1)
            .to_arrow()
        )
        flat = data["vector"].combine_chunks().values.to_numpy(zero_copy_only=False)
        matrix = _Matrix(
            version=version,
            ids=np.asarray(data["id"].to_pylist(), dtype=object),
            row_ids=data["_rowid"].to_numpy(),
            vectors=np.ascontiguousarray(flat, dtype=np.float32).reshape(-1, self._dimensions),
        )
        self._matrices[name] = matrix
        return matrix

    def _query_matrix(
        self, namespace: str, table: Any, query: NDArray[np.float32], limit: int
    ) -> list[SearchHit]:
        """Exact top-``limit`` by dot product, then the rows' columns by row id.

        ``einsum`` rather than ``@``: a matrix-vector product is memory-bound, and BLAS's
        worker threads keep spinning after the call, starving LanceDB's threads on 2 cores.
        """
        matrix = self._matrix(namespace, table)
        if matrix.ids.size == 0:
            return []
        scores = np.einsum("ij,j->i", matrix.vectors, query)
        k = min(limit, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        rows = self._fetch(table, [str(i) for i in matrix.ids[top]], matrix.row_ids[top])
        return [
            SearchHit(
                id=row["id"],
                path=row["path"],
                start_line=row["start_line"],
                end_line=row["end_line"],
                score=float(scores[position]),
                text=row["text"],
                symbol=row["symbol"],
                language=row["language"] or "",
            )
            for position, row in zip(top, rows, strict=True)
            if row is not None
        ]

    def _fetch(
        self, table: Any, ids: list[str], row_ids: NDArray[np.uint64]
    ) -> list[dict[str, Any] | None]:
        """Rows for ``ids`` in order; ``None`` for rows deleted since the matrix was read.

        Row ids are read with the matrix; a write since then may have moved a row, so every
        row taken is checked by id and the ones that moved are looked up by id instead.
        """
        taken = table.take_row_ids([int(r) for r in row_ids]).select(_HIT_COLUMNS).to_arrow()
        by_id = {row["id"]: row for row in taken.to_pylist()}
        missing = [i for i in ids if i not in by_id]
        if missing:
            found = (
                table.search()
                .where(_id_predicate(missing), prefilter=True)
                .select(_HIT_COLUMNS)
                .limit(len(missing) + 1)
                .to_arrow()
            )
            by_id.update((row["id"], row) for row in found.to_pylist())
        return [by_id.get(i) for i in ids]
