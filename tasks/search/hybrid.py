"""Hybrid code search: BM25 over code tokens + vector similarity, fused with ranking priors.

Searching never runs a flow: it needs an open store and an embedder, nothing else.

It reads through :class:`~tasks.vectors.HybridStore` (LanceDB by default, Pinecone in
production, :class:`~tasks.vectors.memory_store.MemoryStore` in unit tests).

>>> hits = hybrid_search("parse config file", store=store, embedder=embedder,
...                      namespace="repo@main", limit=10)
>>> hits[0].path, hits[0].start_line
('app/config.py', 12)
"""

from __future__ import annotations

from config.errors import ConfigError, VectorStoreError
from tasks.embedding import Embedder
from tasks.embedding.local_embedder import LOCAL_ID_PREFIX
from tasks.records import SearchHit
from tasks.search.ranking import fuse
from tasks.tokens.code_tokens import code_tokens, unique_tokens
from tasks.vectors import HybridStore

#: Each retriever returns this many candidates per requested hit, so fusion and priors
#: have room to promote a chunk that one retriever ranked low.
CANDIDATES_PER_HIT = 5
MIN_CANDIDATES = 20
MAX_LIMIT = 1000
#: The vector half's weight in the fusion for WordLlama's static vectors, the BM25 half's
#: being 1. Chosen on 1,000 docstring -> function queries over 16 packages that the quality
#: benchmark does not use (NDCG@10 0.457 at 0.25 against 0.404 at 1.0; 0.25 also had the
#: best recall), then checked on the benchmark's own packages (benchmarks/RESULTS.md).
LOCAL_SEMANTIC_WEIGHT = 0.25


def semantic_weight_for(embedder_id: str) -> float:
    """How much the vector half counts against BM25 for vectors of ``embedder_id``.

    WordLlama's static token vectors know little of code: at equal weight they pulled the
    hybrid below its own BM25 half. Other embedders (OpenAI's) get the usual equal weight;
    nothing here measured them.
    """
    return LOCAL_SEMANTIC_WEIGHT if embedder_id.startswith(LOCAL_ID_PREFIX) else 1.0


def _check(query: str, limit: int, store: HybridStore, embedder: Embedder) -> str:
    text = query.strip()
    if not text:
        raise ConfigError("the search query is empty: pass some words or an identifier")
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigError(f"the search limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if store.dimensions != embedder.dimensions:
        raise VectorStoreError(
            f"the store holds {store.dimensions}-dim vectors but {embedder.id} makes "
            f"{embedder.dimensions}: search with the embedder the index was built with"
        )
    return text


def hybrid_search(
    query: str,
    *,
    store: HybridStore,
    embedder: Embedder,
    namespace: str,
    limit: int = 10,
    semantic_weight: float | None = None,
) -> list[SearchHit]:
    """The ``limit`` best chunks for ``query``, best first, scores descending.

    ``semantic_weight`` is the vector half's weight in the fusion (BM25's is 1); by default
    it suits the embedder (:func:`semantic_weight_for`).

    A namespace that was never indexed has no chunks, so it returns ``[]`` (callers that
    want to tell the user "index it first" check ``store.count(namespace)``). An empty
    query or a limit outside 1..1000 raises :class:`ConfigError`.
    """
    text = _check(query, limit, store, embedder)
    candidates = max(limit * CANDIDATES_PER_HIT, MIN_CANDIDATES)
    tokens = unique_tokens(code_tokens(text))
    # BM25, then vectors, one after the other: each is faster with both cores to itself
    # (LanceDB's search threads; BLAS's, which spin after the product unless the entry point
    # shortened that, see config/native.py) than the two side by side. Measured at 100K
    # chunks, interleaved: p50 18.3 ms against 22.2.
    lexical = store.text_search(namespace, tokens, candidates, with_text=False) if tokens else []
    semantic = store.query(namespace, embedder.embed([text])[0], candidates, with_text=False)
    weight = semantic_weight_for(embedder.id) if semantic_weight is None else semantic_weight
    best = fuse(lexical, semantic, text, limit, semantic_weight=weight)
    return store.with_text(namespace, best)
