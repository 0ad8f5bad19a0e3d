"""What every codeflow LanceDB table shares: one table per namespace, rows keyed by chunk
id, a BTREE index on ``id`` and LanceDB's native full-text (BM25) index over ``tokens``.

:class:`~tasks.vectors.lance_store.LanceStore` adds vectors to these rows;
:class:`~tasks.vectors.chunk_catalog.ChunkCatalog` keeps them without vectors beside a remote vector
store. Both get writes, deletes, id listing, BM25 search and index upkeep from
:class:`LanceTables`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
from lancedb.index import FTS, BTree

from config.errors import CodeflowError, ConfigError, VectorStoreError
from config.storage import StoreLocation
from tasks.objects.s3_objects import is_outage, storage_error
from tasks.records import Chunk, SearchHit
from tasks.tokens.code_tokens import search_documents

ID_BATCH = 1000
HIT_COLUMNS = ["id", "path", "start_line", "end_line", "text", "symbol", "language"]
LANCE_ERRORS = (OSError, RuntimeError, ValueError)
#: Tables up to this many rows are always fully optimised at the end of a run (cheap).
_SMALL_TABLE_ROWS = 50_000
_FOLD_FRACTION = 10  # fold new rows into the text index past 1/10 of the indexed rows
_SMALL_FRAGMENTS = 16  # compact once this many small files have accumulated
#: Fragments with at least this many rows are never rewritten by compaction. Lance's own
#: default (1M) would rewrite a whole 200K-row table to absorb a 100-row write (seconds).
COMPACT_TARGET_ROWS = 32_768
_ID_INDEX = "id_idx"
_TEXT_INDEX = "tokens_idx"
#: Full-text queries fetch this many rows more than asked, so ties at the cut are settled
#: by id (:func:`by_score`), not by LanceDB.
TIE_MARGIN = 16
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
CHUNK_FIELDS: list[tuple[str, pa.DataType]] = [
    ("id", pa.string()),
    ("path", pa.string()),
    ("language", pa.string()),
    ("start_line", pa.int32()),
    ("end_line", pa.int32()),
    ("symbol", pa.string()),
    ("kind", pa.string()),
    ("text", pa.string()),
    ("tokens", pa.string()),
]


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


def _fold_due(stats: Any) -> bool:
    if stats is None or not stats.num_unindexed_rows:
        return False
    unindexed = int(stats.num_unindexed_rows)
    total = int(stats.num_indexed_rows) + unindexed
    return total <= _SMALL_TABLE_ROWS or unindexed > total // _FOLD_FRACTION


def _compaction_due(stats: dict[str, Any]) -> bool:
    fragments = stats["fragment_stats"]
    if stats["num_rows"] <= _SMALL_TABLE_ROWS:
        return int(fragments["num_fragments"]) > 1
    return int(fragments["num_small_fragments"]) >= _SMALL_FRAGMENTS


def id_predicate(ids: Sequence[str]) -> str:
    quoted = ",".join("'" + i.replace("'", "''") + "'" for i in ids)
    return f"id IN ({quoted})"


def batches(items: Sequence[str], size: int = ID_BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def latest_chunks(chunks: Sequence[Chunk]) -> list[int]:
    """Positions of the chunks to write: duplicate ids keep their last occurrence."""
    return sorted({chunk.id: i for i, chunk in enumerate(chunks)}.values())


def chunk_columns(chunks: Sequence[Chunk]) -> dict[str, list[Any]]:
    """The columns every table shares, for ``chunks`` in order."""
    return {
        "id": [c.id for c in chunks],
        "path": [c.path for c in chunks],
        "language": [c.language for c in chunks],
        "start_line": [c.start_line for c in chunks],
        "end_line": [c.end_line for c in chunks],
        "symbol": [c.symbol for c in chunks],
        "kind": [c.kind for c in chunks],
        "text": [c.text for c in chunks],
        "tokens": search_documents(chunks),
    }


def search_terms(query_tokens: list[str]) -> list[str]:
    """The distinct, non-blank query tokens, in order."""
    return [t for t in dict.fromkeys(query_tokens) if t and not t.isspace()]


def bm25_query(table: Any, terms: list[str], columns: list[str], limit: int) -> pa.Table:
    """``columns`` of the ``limit`` + ``TIE_MARGIN`` best rows by BM25 over ``tokens``
    (callers order them with :func:`by_score` and keep ``limit``)."""
    query = table.search(" ".join(terms), query_type="fts", fts_columns="tokens")
    return query.select(columns).limit(limit + TIE_MARGIN).to_arrow()


def by_score(hits: list[SearchHit], limit: int) -> list[SearchHit]:
    """The ``limit`` best ``hits``, equal scores by id.

    LanceDB's full-text search returns rows of equal score (duplicate chunks) in an order
    that changes from call to call, and picks among them at its cut; fusion works on ranks.
    Without this, the same query gave other results now and then (6 of 500
    quality-benchmark queries over three calls). Fetching ``TIE_MARGIN`` rows more than
    asked makes the cut ours whenever fewer rows than that tie across it."""
    return sorted(hits, key=lambda hit: (-hit.score, hit.id))[:limit]


def hit_from_row(row: dict[str, Any], score: float) -> SearchHit:
    return SearchHit(
        id=row["id"],
        path=row["path"],
        start_line=row["start_line"],
        end_line=row["end_line"],
        score=float(score),
        text=row.get("text") or "",
        symbol=row["symbol"],
        language=row["language"] or "",
    )


class LanceTables:
    """One LanceDB database under ``directory`` (a folder or an object-store URI), one table
    of ``schema`` per namespace. Strong read consistency: a long-lived reader (the HTTP
    server) sees what another process wrote.

    ``shared`` is the object store ``directory`` lies in (its endpoint and credentials go to
    LanceDB as ``storage_options``; a missing bucket, refused credentials or an unreachable
    endpoint raise :class:`~config.errors.StorageError` with one line)."""

    def __init__(
        self,
        directory: str | Path,
        schema: pa.Schema,
        *,
        keep_versions_for: timedelta = timedelta(hours=1),
        shared: StoreLocation | None = None,
    ) -> None:
        self._schema = schema
        self._keep_versions_for = keep_versions_for
        self._tables: dict[str, Any] = {}
        self._shared = shared
        options = shared.storage_options() if shared is not None else None
        try:
            if "://" not in str(directory):
                Path(directory).mkdir(parents=True, exist_ok=True)
            self._db: Any = lancedb.connect(
                str(directory), read_consistency_interval=timedelta(0), storage_options=options
            )
        except LANCE_ERRORS as exc:
            raise self._failure(f"cannot open LanceDB at {directory}", exc) from None

    def _failure(self, doing: str, exc: BaseException) -> CodeflowError:
        """``exc`` as one error: the object store's (:func:`storage_error`) or the table's."""
        if self._shared is not None and is_outage(exc):
            return storage_error(self._shared, doing, exc)
        return VectorStoreError(f"{doing}: {exc}")

    # ---- tables -------------------------------------------------------------------------

    def _opened(self, table: Any, namespace: str) -> None:
        """Hook: check a table just opened from disk (subclasses verify their schema)."""

    def _open(self, namespace: str) -> Any | None:
        """The namespace's table, or None if nothing was ever written to it."""
        name = table_name(namespace)
        if name in self._tables:
            return self._tables[name]
        try:
            table = self._db.open_table(name)
        except (ValueError, FileNotFoundError) as exc:
            if self._shared is not None and is_outage(exc):
                raise self._failure(f"opening {namespace!r}", exc) from None
            return None
        self._opened(table, namespace)
        self._tables[name] = table
        return table

    def _create(self, namespace: str, rows: pa.Table | None = None) -> Any:
        """A new table for ``namespace``, empty or holding ``rows``."""
        name = table_name(namespace)
        if rows is None:
            table = self._db.create_table(name, schema=self._schema, exist_ok=True)
        else:
            table = self._db.create_table(name, data=rows, schema=self._schema, exist_ok=True)
        self._opened(table, namespace)
        self._tables[name] = table
        return table

    def _write(self, namespace: str, rows: pa.Table, *, merge: bool) -> None:
        """Merge ``rows`` by id (idempotent), or append rows whose ids are not stored yet."""
        try:
            table = self._open(namespace)
            if table is None and not merge:
                table = self._create(namespace, rows)
            else:
                table = table if table is not None else self._create(namespace)
                if merge:
                    builder = table.merge_insert("id")
                    builder.when_matched_update_all().when_not_matched_insert_all().execute(rows)
                else:
                    table.add(rows)
            self._maintain_indexes(table)
        except LANCE_ERRORS as exc:
            raise self._failure(f"writing to {namespace!r} failed", exc) from exc

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        """Delete rows by id, ``ID_BATCH`` ids per predicate; unknown ids are ignored."""
        table = self._open(namespace)
        if table is None or not ids:
            return
        try:
            for batch in batches(list(dict.fromkeys(ids))):
                table.delete(id_predicate(batch))
        except LANCE_ERRORS as exc:
            raise self._failure(f"deleting chunks of {namespace!r} failed", exc) from exc

    def drop(self, namespace: str) -> None:
        """Remove the namespace's table and everything in it (no error if it is absent)."""
        name = table_name(namespace)
        self._tables.pop(name, None)
        try:
            self._db.drop_table(name, ignore_missing=True)
        except LANCE_ERRORS as exc:
            raise self._failure(f"dropping {namespace!r} failed", exc) from exc

    # ---- indexes ------------------------------------------------------------------------

    def _maintain_indexes(self, table: Any) -> None:
        """Create missing indexes (after a write). Rows written later stay outside the text
        index, where full-text search still finds them, until :meth:`optimize`."""
        names = {index.name for index in table.list_indices()}
        if _ID_INDEX not in names:
            table.create_index("id", config=BTree(), name=_ID_INDEX)
        if _TEXT_INDEX not in names:
            table.create_index("tokens", config=_TEXT_INDEX_CONFIG, name=_TEXT_INDEX)

    def optimize(self, namespace: str) -> None:
        """Fold new rows into the indexes and compact small files when that is due, and
        prune old versions. Call it at the end of an indexing run.

        Both steps cost in proportion to the whole table (Lance rewrites the text index and
        remaps the indexes), so on a large table they wait until enough has accumulated:
        at most ``_FOLD_FRACTION`` of the rows outside the text index (full-text search
        reads those directly: same hits, BM25 statistics of the indexed part), at most
        ``_SMALL_FRAGMENTS`` small files. Small tables are always kept fully optimised.
        """
        table = self._open(namespace)
        if table is None:
            return
        try:
            self._maintain_indexes(table)
            dataset = table.to_lance()
            if _compaction_due(table.stats()):
                dataset.optimize.compact_files(target_rows_per_fragment=COMPACT_TARGET_ROWS)
            if _fold_due(table.index_stats(_TEXT_INDEX)):
                dataset.optimize.optimize_indices()
            dataset.cleanup_old_versions(older_than=self._keep_versions_for)
            table.checkout_latest()
        except LANCE_ERRORS as exc:
            raise self._failure(f"optimizing {namespace!r} failed", exc) from exc

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

    def rows(self, namespace: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Hit columns of the rows whose ids exist, keyed by id."""
        table = self._open(namespace)
        if table is None or not ids:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for batch in batches(list(dict.fromkeys(ids))):
            rows = (
                table.search()
                .where(id_predicate(batch), prefilter=True)
                .select(HIT_COLUMNS)
                .limit(len(batch) + 1)
                .to_arrow()
            )
            found.update((row["id"], row) for row in rows.to_pylist())
        return found

    def chunks(self, namespace: str, ids: Sequence[str]) -> list[SearchHit]:
        """The stored chunks of ``ids`` (with their text; unknown ids are left out)."""
        return [hit_from_row(row, 0.0) for row in self.rows(namespace, ids).values()]

    def text_search(
        self, namespace: str, query_tokens: list[str], limit: int, *, with_text: bool = True
    ) -> list[SearchHit]:
        """BM25 over the ``tokens`` column; ``query_tokens`` come from ``code_tokens``.
        ``with_text=False`` leaves ``text`` empty (see :meth:`with_text`)."""
        table = self._open(namespace)
        terms = search_terms(query_tokens)
        if table is None or not terms or limit < 1:
            return []
        try:
            return self._bm25_hits(namespace, table, terms, limit, with_text)
        except LANCE_ERRORS as exc:
            raise self._failure(f"text search in {namespace!r} failed", exc) from exc

    def _bm25_hits(
        self, namespace: str, table: Any, terms: list[str], limit: int, with_text: bool
    ) -> list[SearchHit]:
        """The hits of one full-text query (a subclass may build them otherwise)."""
        columns = HIT_COLUMNS if with_text else [c for c in HIT_COLUMNS if c != "text"]
        rows = bm25_query(table, terms, [*columns, "_score"], limit)
        return by_score([hit_from_row(row, row["_score"]) for row in rows.to_pylist()], limit)

    def with_text(self, namespace: str, hits: Sequence[SearchHit]) -> list[SearchHit]:
        """``hits`` with their chunk text; a hit whose row is gone keeps the text it has."""
        rows = self.rows(namespace, [hit.id for hit in hits])
        return [replace(hit, text=rows[hit.id]["text"]) if hit.id in rows else hit for hit in hits]
