"""Pinecone adapter: vectors in one serverless index, one namespace per repository + branch.

Implements :class:`~tasks.vectors.VectorStore` and :class:`~tasks.vectors.HybridStore`.

* **Upserts** go in requests of at most 1,000 records and ~1.9 MB of JSON (Pinecone's caps
  are 1,000 / 2 MB); ids repeated in one call keep their last occurrence.
* **Deletes** go by id, at most 1,000 per request; unknown ids are ignored by Pinecone.
* **Metadata** stays far below the 40 KB cap: path, lines, symbol, kind, language and a
  preview of the text (first ``preview_chars`` characters, shortened further if the record
  would pass 40 KB). The full text and the BM25 tokens live in a :class:`ChunkCatalog`
  (LanceDB, no vectors) keyed by chunk id: hits get their full text from it and lexical
  search runs on it, so search stays hybrid. Writes go to the catalog first and to Pinecone
  second; deletes the other way round; both are idempotent, so a crash in between is
  repaired by the next run's upsert/sweep.
* **Dimension** of the index is read (``describe_index_stats``) and compared with the
  embedder's before the first write: a mismatch raises :class:`VectorStoreError`.
* **Retries** are the client's own, bounded: 3 retries on 408/429/5xx, timeouts and dropped
  connections, decorrelated jitter from 0.25 s, ``Retry-After`` honoured (capped at 60 s),
  and a per-host retry budget. Anything still failing raises :class:`VectorStoreError`.

Real Pinecone is eventually consistent: a vector may be queryable a few seconds after its
upsert returns.

>>> store = PineconeStore(api_key=key, index_name="codeflow", dimensions=1536,
...                       catalog_dir=home / "pinecone-catalog")
>>> store.check()
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from pinecone import Pinecone
from pinecone.errors.exceptions import NotFoundError, PineconeError, UnauthorizedError

from config.errors import ConfigError, VectorStoreError
from config.storage import StoreLocation
from tasks.records import Chunk, SearchHit
from tasks.vectors.chunk_catalog import ChunkCatalog, hit_from_row
from tasks.vectors.lance_store import table_name

MAX_RECORDS_PER_UPSERT = 1000
MAX_UPSERT_BYTES = 1_900_000  # Pinecone's cap is 2 MB per request; keep a margin
MAX_IDS_PER_DELETE = 1000
MAX_METADATA_BYTES = 40_000  # Pinecone's cap is 40 KB per record
MAX_TOP_K = 10_000
_LIST_PAGE = 100
T = TypeVar("T")


def pinecone_namespace(namespace: str) -> str:
    """The namespace as Pinecone accepts it (ASCII, 1-512 chars), else a safe hashed name."""
    if namespace.isascii() and 0 < len(namespace) <= 512 and "\0" not in namespace:
        return namespace
    return table_name(namespace)


def chunk_metadata(chunk: Chunk, preview_chars: int) -> dict[str, Any]:
    """Filterable place + a text preview, under Pinecone's 40 KB metadata cap."""
    metadata: dict[str, Any] = {
        "path": chunk.path,
        "language": chunk.language,
        "start_line": chunk.start_line,
        "end_line": chunk.end_line,
        "kind": chunk.kind,
    }
    if chunk.symbol:
        metadata["symbol"] = chunk.symbol
    base = len(json.dumps(metadata).encode())
    preview = chunk.text[:preview_chars]
    while preview and base + len(json.dumps(preview).encode()) + 16 > MAX_METADATA_BYTES:
        preview = preview[: len(preview) // 2]
    if base + 16 > MAX_METADATA_BYTES:
        raise VectorStoreError(f"metadata of {chunk.path!r} passes 40 KB even without text")
    metadata["preview"] = preview
    return metadata


def upsert_batches(records: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Records in order, in groups within the per-request record and byte caps."""
    batch: list[dict[str, Any]] = []
    size = 64
    for record in records:
        weight = len(json.dumps(record).encode()) + 1
        if batch and (len(batch) >= MAX_RECORDS_PER_UPSERT or size + weight > MAX_UPSERT_BYTES):
            yield batch
            batch, size = [], 64
        batch.append(record)
        size += weight
    if batch:
        yield batch


class PineconeStore:
    """Vectors in a Pinecone index (data plane over REST), texts in a local catalog."""

    def __init__(
        self,
        *,
        api_key: str,
        dimensions: int,
        catalog_dir: str | Path,
        index_name: str = "",
        host: str = "",
        controller_host: str = "",
        timeout_s: float = 30.0,
        preview_chars: int = 1000,
        catalog_shared: StoreLocation | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError(
                "PINECONE_API_KEY is not set: export it, or use CODEFLOW_STORE=lancedb"
            )
        if not index_name and not host:
            raise ConfigError("set CODEFLOW_PINECONE_INDEX (or CODEFLOW_PINECONE_HOST)")
        self._dimensions = dimensions
        self._preview_chars = preview_chars
        self._where = host or index_name
        client = Pinecone(api_key=api_key, host=controller_host or None, timeout=timeout_s)
        self._index: Any = self._call("opening the index", client.index, name=index_name, host=host)
        self._catalog = ChunkCatalog(catalog_dir, shared=catalog_shared)
        self._checked = False

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def catalog(self) -> ChunkCatalog:
        return self._catalog

    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """Run one client call, mapping its errors onto codeflow's tree."""
        try:
            return fn(**kwargs)
        except UnauthorizedError as exc:
            raise ConfigError(f"PINECONE_API_KEY was rejected by {self._where} (401)") from exc
        except NotFoundError as exc:
            raise ConfigError(
                f"Pinecone index {self._where!r} was not found (CODEFLOW_PINECONE_INDEX): "
                f"{exc.message if hasattr(exc, 'message') else exc}"
            ) from exc
        except PineconeError as exc:
            raise VectorStoreError(f"Pinecone {what} failed at {self._where}: {exc}") from exc

    def check(self) -> None:
        """Compare the index's dimension and metric with ours; raise before any write."""
        stats = self._call("describe_index_stats", self._index.describe_index_stats)
        if stats.dimension is not None and stats.dimension != self._dimensions:
            raise VectorStoreError(
                f"Pinecone index {self._where!r} holds {stats.dimension}-dim vectors but the "
                f"embedder makes {self._dimensions}: use an index of that dimension or "
                "change CODEFLOW_OPENAI_DIMENSIONS"
            )
        if stats.metric not in (None, "cosine", "dotproduct"):
            raise VectorStoreError(
                f"Pinecone index {self._where!r} uses the {stats.metric} metric: "
                "codeflow needs cosine or dotproduct"
            )
        self._checked = True

    # ---- writes -------------------------------------------------------------------------

    def upsert(self, namespace: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> None:
        if vectors.ndim != 2 or vectors.shape != (len(chunks), self._dimensions):
            raise VectorStoreError(
                f"expected vectors of shape ({len(chunks)}, {self._dimensions}), "
                f"got {vectors.shape}"
            )
        if not chunks:
            return
        if not self._checked:
            self.check()
        latest = {chunk.id: i for i, chunk in enumerate(chunks)}
        picked = [chunks[i] for i in sorted(latest.values())]
        self._catalog.upsert(namespace, picked)
        records = [
            {
                "id": chunks[i].id,
                "values": vectors[i].astype(float).tolist(),
                "metadata": chunk_metadata(chunks[i], self._preview_chars),
            }
            for i in sorted(latest.values())
        ]
        ns = pinecone_namespace(namespace)
        for batch in upsert_batches(records):
            self._call("upsert", self._index.upsert, vectors=batch, namespace=ns)

    def append(self, namespace: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> None:
        """Pinecone upserts are idempotent and cost the same for new ids: no faster path."""
        self.upsert(namespace, chunks, vectors)

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        unique = list(dict.fromkeys(ids))
        ns = pinecone_namespace(namespace)
        for start in range(0, len(unique), MAX_IDS_PER_DELETE):
            batch = unique[start : start + MAX_IDS_PER_DELETE]
            self._call("delete", self._index.delete, ids=batch, namespace=ns)
        self._catalog.delete(namespace, unique)

    def drop(self, namespace: str) -> None:
        """Remove the namespace (Pinecone and catalog); no error if it is absent."""
        with contextlib.suppress(ConfigError):  # 404: the namespace never existed
            self._call("delete_namespace", self._index.delete_namespace, name=_ns(namespace))
        self._catalog.drop(namespace)

    def optimize(self, namespace: str) -> None:
        self._catalog.optimize(namespace)

    # ---- reads --------------------------------------------------------------------------

    def count(self, namespace: str) -> int:
        stats = self._call("describe_index_stats", self._index.describe_index_stats)
        summary = stats.namespaces.get(pinecone_namespace(namespace))
        return 0 if summary is None else int(summary.vector_count)

    def ids(self, namespace: str) -> set[str]:
        """Every id in Pinecone *or* the catalog: a sweep then cleans both."""
        pages = self._call(
            "list", lambda: list(self._index.list(namespace=_ns(namespace), limit=_LIST_PAGE))
        )
        found = {item.id for page in pages for item in page.vectors if item.id}
        return found | self._catalog.ids(namespace)

    def query(
        self,
        namespace: str,
        vector: NDArray[np.float32],
        limit: int,
        where: Mapping[str, Any] | None = None,
        *,
        with_text: bool = True,
    ) -> list[SearchHit]:
        """Nearest chunks by cosine similarity, best first; ``where`` is a Pinecone metadata
        filter, e.g. ``{"language": {"$eq": "python"}}``. Hits always carry their text (the
        catalog's rows come whole), whatever ``with_text`` says."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self._dimensions:
            raise VectorStoreError(
                f"query vector has {query.shape[0]} dims, the store {self._dimensions}"
            )
        if limit < 1:
            return []
        response = self._call(
            "query",
            self._index.query,
            top_k=min(limit, MAX_TOP_K),
            vector=query.astype(float).tolist(),
            namespace=_ns(namespace),
            filter=dict(where) if where else None,
            include_metadata=True,
        )
        rows = self._catalog.rows(namespace, [m.id for m in response.matches])
        return [self._hit(m, rows.get(m.id)) for m in response.matches]

    def _hit(self, match: Any, row: dict[str, Any] | None) -> SearchHit:
        if row is not None:
            return hit_from_row(row, match.score)
        meta = match.metadata or {}  # not in the catalog (another writer): use the preview
        return SearchHit(
            id=match.id,
            path=str(meta.get("path", "")),
            start_line=int(meta.get("start_line", 0)),
            end_line=int(meta.get("end_line", 0)),
            score=float(match.score),
            text=str(meta.get("preview", "")),
            symbol=meta.get("symbol"),
            language=str(meta.get("language", "")),
        )

    def text_search(
        self, namespace: str, query_tokens: list[str], limit: int, *, with_text: bool = True
    ) -> list[SearchHit]:
        return self._catalog.text_search(namespace, query_tokens, limit, with_text=with_text)

    def chunks(self, namespace: str, ids: Sequence[str]) -> list[SearchHit]:
        return self._catalog.chunks(namespace, ids)

    def with_text(self, namespace: str, hits: Sequence[SearchHit]) -> list[SearchHit]:
        return self._catalog.with_text(namespace, hits)


def _ns(namespace: str) -> str:
    return pinecone_namespace(namespace)
