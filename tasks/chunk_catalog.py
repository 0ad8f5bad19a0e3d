"""The chunk catalog: chunk text and BM25 tokens by chunk id, in LanceDB, without vectors.

A remote vector store (Pinecone) keeps vectors and at most 40 KB of metadata per record, and
has no BM25. The catalog holds what it cannot: each chunk's full text and its code-aware
tokens, with LanceDB's full-text index over the tokens, one table per namespace. Composed with
the vector store (:class:`tasks.pinecone_store.PineconeStore`), search stays hybrid and hits
carry their full text. ``directory`` is any location LanceDB opens: a local folder, or an
object-store URI shared by several workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
from lancedb.index import FTS, BTree

from tasks.errors import VectorStoreError
from tasks.lance_store import search_tokens, table_name
from tasks.records import Chunk, SearchHit

COLUMNS = ["id", "path", "language", "start_line", "end_line", "symbol", "kind", "text"]
_SCHEMA = pa.schema(
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
    ]
)
_ERRORS = (OSError, RuntimeError, ValueError)
_BATCH = 1000
_UNINDEXED_ROWS = 20_000
_TEXT_INDEX = FTS(
    base_tokenizer="whitespace",
    lower_case=False,
    stem=False,
    remove_stop_words=False,
    ascii_folding=False,
    with_position=False,
    max_token_length=64,
)


def _quoted(ids: Sequence[str]) -> str:
    return "id IN (" + ",".join("'" + i.replace("'", "''") + "'" for i in ids) + ")"


def hit_from_row(row: dict[str, Any], score: float) -> SearchHit:
    return SearchHit(
        id=row["id"],
        path=row["path"],
        start_line=row["start_line"],
        end_line=row["end_line"],
        score=float(score),
        text=row["text"],
        symbol=row["symbol"],
        language=row["language"] or "",
    )


class ChunkCatalog:
    """Upsert/delete by chunk id, fetch rows by id, BM25 over code tokens."""

    def __init__(self, directory: str | Path) -> None:
        self._tables: dict[str, Any] = {}
        try:
            if "://" not in str(directory):
                Path(directory).mkdir(parents=True, exist_ok=True)
            self._db: Any = lancedb.connect(str(directory), read_consistency_interval=timedelta(0))
        except _ERRORS as exc:
            raise VectorStoreError(f"cannot open the chunk catalog at {directory}: {exc}") from exc

    def _open(self, namespace: str) -> Any | None:
        name = table_name(namespace)
        if name not in self._tables:
            try:
                self._tables[name] = self._db.open_table(name)
            except (ValueError, FileNotFoundError):
                return None
        return self._tables[name]

    def _open_or_create(self, namespace: str) -> Any:
        table = self._open(namespace)
        if table is None:
            table = self._db.create_table(table_name(namespace), schema=_SCHEMA, exist_ok=True)
            self._tables[table_name(namespace)] = table
        return table

    def upsert(self, namespace: str, chunks: Sequence[Chunk]) -> None:
        latest = list({c.id: c for c in chunks}.values())
        if not latest:
            return
        rows = pa.Table.from_pylist(
            [
                {
                    "id": c.id,
                    "path": c.path,
                    "language": c.language,
                    "start_line": c.start_line,
                    "end_line": c.end_line,
                    "symbol": c.symbol,
                    "kind": c.kind,
                    "text": c.text,
                    "tokens": search_tokens(c),
                }
                for c in latest
            ],
            schema=_SCHEMA,
        )
        try:
            table = self._open_or_create(namespace)
            table.merge_insert(
                "id"
            ).when_matched_update_all().when_not_matched_insert_all().execute(rows)
            self._maintain(table)
        except _ERRORS as exc:
            raise VectorStoreError(f"catalog upsert into {namespace!r} failed: {exc}") from exc

    def _maintain(self, table: Any) -> None:
        names = {index.name for index in table.list_indices()}
        if "id_idx" not in names:
            table.create_index("id", config=BTree(), name="id_idx")
        if "tokens_idx" not in names:
            table.create_index("tokens", config=_TEXT_INDEX, name="tokens_idx")
            return
        stats = table.index_stats("tokens_idx")
        if stats is not None and stats.num_unindexed_rows > max(
            _UNINDEXED_ROWS, stats.num_indexed_rows // 2
        ):
            table.optimize()

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        table = self._open(namespace)
        unique = list(dict.fromkeys(ids))
        if table is None or not unique:
            return
        try:
            for start in range(0, len(unique), _BATCH):
                table.delete(_quoted(unique[start : start + _BATCH]))
        except _ERRORS as exc:
            raise VectorStoreError(f"catalog delete in {namespace!r} failed: {exc}") from exc

    def rows(self, namespace: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Rows for the ids that exist (hit columns only), keyed by id."""
        table = self._open(namespace)
        if table is None or not ids:
            return {}
        found = (
            table.search()
            .where(_quoted(list(ids)), prefilter=True)
            .select(COLUMNS)
            .limit(len(ids) + 1)
            .to_arrow()
        )
        return {row["id"]: row for row in found.to_pylist()}

    def text_search(self, namespace: str, query_tokens: list[str], limit: int) -> list[SearchHit]:
        table = self._open(namespace)
        terms = [t for t in dict.fromkeys(query_tokens) if t and not t.isspace()]
        if table is None or not terms or limit < 1:
            return []
        try:
            found = (
                table.search(" ".join(terms), query_type="fts", fts_columns="tokens")
                .select([*COLUMNS, "_score"])
                .limit(limit)
                .to_arrow()
            )
        except _ERRORS as exc:
            raise VectorStoreError(f"text search in {namespace!r} failed: {exc}") from exc
        return [hit_from_row(row, row["_score"]) for row in found.to_pylist()]

    def ids(self, namespace: str) -> set[str]:
        table = self._open(namespace)
        if table is None:
            return set()
        column = table.search().select(["id"]).limit(table.count_rows() + 1).to_arrow()["id"]
        return set(column.to_pylist())

    def count(self, namespace: str) -> int:
        table = self._open(namespace)
        return 0 if table is None else int(table.count_rows())

    def optimize(self, namespace: str) -> None:
        table = self._open(namespace)
        if table is not None:
            self._maintain(table)
            table.optimize()

    def drop(self, namespace: str) -> None:
        name = table_name(namespace)
        self._tables.pop(name, None)
        self._db.drop_table(name, ignore_missing=True)
