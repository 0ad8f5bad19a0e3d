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
from tasks.search.query import analyze
from tasks.search.ranking import fuse, group_neighbours, joined
from tasks.tokens.code_tokens import query_tokens
from tasks.vectors import HybridStore

#: Each retriever returns this many candidates per requested hit (at least
#: ``MIN_CANDIDATES``), so fusion and priors have room to promote a chunk that one
#: retriever ranked low: the right chunk is in the top 100 of one retriever for most
#: questions, and in the top 10 for far fewer (``benchmarks/relevance``).
CANDIDATES_PER_HIT = 8
MIN_CANDIDATES = 80
MAX_LIMIT = 1000
#: Hits read beyond ``limit``, so that copies of one chunk can be dropped and the list
#: still be full.
DUPLICATE_MARGIN = 5
#: The vector half's weight in the fusion for WordLlama's static vectors, the BM25 half's
#: being 1: at equal weight they pull the hybrid below its BM25 half; 0.25 is best on our
#: evaluation set, in every category (``benchmarks/relevance``).
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
    tokens = query_tokens(text)
    # BM25, then vectors, one after the other: each is faster with both cores to itself
    # (LanceDB's search threads; BLAS's, which spin after the product unless the entry point
    # shortened that, see config/native.py) than the two side by side (benchmarks/search).
    lexical = store.text_search(namespace, tokens, candidates, with_text=False) if tokens else []
    semantic = store.query(namespace, embedder.embed([text])[0], candidates, with_text=False)
    weight = semantic_weight_for(embedder.id) if semantic_weight is None else semantic_weight
    ranked = fuse(lexical, semantic, analyze(text), 2 * candidates, semantic_weight=weight)
    groups = group_neighbours(ranked, limit + DUPLICATE_MARGIN)
    texts = {hit.id: hit for hit in store.with_text(namespace, [h for g in groups for h in g])}
    hits = [joined([texts.get(hit.id, hit) for hit in group]) for group in groups]
    return _without_copies(hits)[:limit]


def _without_copies(hits: list[SearchHit]) -> list[SearchHit]:
    """``hits`` without later copies of an earlier hit's text (a file vendored twice, a
    generated twin): the copy adds nothing to read."""
    seen: set[str] = set()
    kept = []
    for hit in hits:
        key = hit.text.strip()
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(hit)
    return kept
