"""The chunk catalog: chunk text and BM25 tokens by chunk id, in LanceDB, without vectors.

A remote vector store (Pinecone) keeps vectors and at most 40 KB of metadata per record, and
has no BM25. The catalog holds what it cannot: each chunk's full text and its code-aware
tokens, with LanceDB's full-text index over the tokens, one table per namespace. Composed with
the vector store (:class:`tasks.vectors.pinecone_store.PineconeStore`), search stays hybrid and hits
carry their full text. ``directory`` is any location LanceDB opens: a local folder, or an
object-store URI shared by several workers.

Writes, deletes, id listing, row fetches and BM25 come from
:class:`~tasks.vectors.lance_tables.LanceTables`, shared with
:class:`~tasks.vectors.lance_store.LanceStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from config.storage import StoreLocation
from tasks.records import Chunk
from tasks.vectors.lance_tables import (
    CHUNK_FIELDS,
    LanceTables,
    chunk_columns,
    hit_from_row,
    latest_chunks,
)

__all__ = ["ChunkCatalog", "hit_from_row"]

_SCHEMA = pa.schema(CHUNK_FIELDS)


class ChunkCatalog(LanceTables):
    """Upsert/delete by chunk id, fetch rows by id (:meth:`rows`), BM25 over code tokens."""

    def __init__(self, directory: str | Path, *, shared: StoreLocation | None = None) -> None:
        super().__init__(directory, _SCHEMA, shared=shared)

    def upsert(self, namespace: str, chunks: Sequence[Chunk]) -> None:
        """Insert or replace by ``Chunk.id`` (duplicates keep their last occurrence)."""
        keep = latest_chunks(chunks)
        if keep:
            rows = pa.table(chunk_columns([chunks[i] for i in keep]), schema=_SCHEMA)
            self._write(namespace, rows, merge=True)
