"""The embedder and the vector half's weight, compared on the relevance set.

    .venv/bin/python -m benchmarks.relevance.embedders

For each project (indexed as ``python -m benchmarks.relevance`` indexes it), every stored
chunk and every query is embedded again by each candidate embedder, in memory; the vector
half is an exact top-k over those vectors, the BM25 half is codeflow's own (the store's
full-text index, the query's stemmed terms), and both go through codeflow's ranking
(fusion, priors, grouping). Printed: NDCG@10 per category for each embedder and each
weight of the vector half, and each embedder's throughput over the corpus's chunks.

The candidates are offline models whose weights install from a registry: WordLlama's
packaged ``l2_supercat`` (on code tokens, the default, or raw text; 256 and 64 dimensions)
and the hashing embedder (no model: signed hashing of code tokens), against no vectors.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.relevance import CATEGORIES, CUTOFF, Hit, Query, load_queries, ndcg
from benchmarks.relevance.__main__ import index, stored_rows
from benchmarks.relevance.corpus import DEFAULT_CACHE, projects, repository
from tasks.embedding import Embedder, Vectors
from tasks.records import SearchHit
from tasks.search.hybrid import MIN_CANDIDATES
from tasks.search.query import analyze
from tasks.search.ranking import fuse, group_neighbours, joined
from tasks.tokens.code_tokens import query_tokens

WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0)
Scores = dict[tuple[str, float, str], list[float]]


def candidates() -> dict[str, Callable[[], Embedder]]:
    from tasks.embedding.hashing_embedder import HashingEmbedder
    from tasks.embedding.local_embedder import LocalEmbedder

    return {
        "wordllama-256 on code tokens (default)": lambda: LocalEmbedder(256),
        "wordllama-256 on raw text": lambda: LocalEmbedder(256, words=False),
        "wordllama-64 on code tokens": lambda: LocalEmbedder(64),
        "hashing-256 (no model)": lambda: HashingEmbedder(256),
    }


def vector_hits(rows: list[dict[str, Any]], matrix: Vectors, query: Vectors) -> list[SearchHit]:
    scores = matrix @ query
    top = np.argsort(-scores, kind="stable")[:MIN_CANDIDATES]
    return [_hit(rows[i], float(scores[i])) for i in top]


def _hit(row: dict[str, Any], score: float) -> SearchHit:
    return SearchHit(
        row["id"], row["path"], int(row["start_line"]), int(row["end_line"]), score, "",
        row["symbol"], row["language"] or "",
    )  # fmt: skip


def ranked(
    query: Query, lexical: list[SearchHit], semantic: list[SearchHit], weight: float
) -> list[Hit]:
    order = fuse(lexical, semantic, analyze(query.text), 2 * MIN_CANDIDATES, semantic_weight=weight)
    groups = group_neighbours(order, CUTOFF)
    return [Hit(h.path, h.start_line, h.end_line) for h in (joined(g) for g in groups)]


def main() -> None:
    os.environ.setdefault("CODEFLOW_HOME", str(DEFAULT_CACHE / "home"))
    from config import load_settings
    from tasks.services import services_for

    svc = services_for(load_settings())
    queries = load_queries()
    scores: Scores = defaultdict(list)
    speed: dict[str, tuple[int, float]] = {}
    for name, make in candidates().items():
        embedder, chunks, seconds = make(), 0, 0.0
        for project in projects():
            mine = [q for q in queries if q.project == project.name]
            namespace = index(repository(project))
            rows = stored_rows(namespace)
            started = time.perf_counter()
            matrix = embedder.embed([r["text"] for r in rows])
            seconds += time.perf_counter() - started
            chunks += len(rows)
            for query in mine:
                terms = query_tokens(query.text)
                lexical = svc.store.text_search(namespace, terms, MIN_CANDIDATES, with_text=False)
                semantic = vector_hits(rows, matrix, embedder.embed([query.text])[0])
                for weight in WEIGHTS:
                    hits = ranked(query, lexical, semantic, weight)
                    scores[(name, weight, query.category)].append(ndcg(hits, query.relevant))
        speed[name] = (chunks, seconds)
    report(scores, speed)


def report(
    scores: dict[tuple[str, float, str], list[float]], speed: dict[str, tuple[int, float]]
) -> None:
    rows = []
    for (name, weight, category), values in scores.items():
        rows.append({"embedder": name, "vector weight": weight, "category": category,
                     "ndcg": statistics.fmean(values)})  # fmt: skip
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(
        index=["embedder", "vector weight"], columns="category", values="ndcg"
    )
    table = table.reindex(columns=list(CATEGORIES))
    table["all"] = frame.groupby(["embedder", "vector weight"])["ndcg"].mean()
    pd.set_option("display.width", 140)
    print(f"NDCG@{CUTOFF} by embedder and vector weight (BM25 half: weight 1)")
    print(table.round(3).to_string())
    print("\nembedding throughput over the corpus's chunks (one process)")
    for name, (chunks, seconds) in speed.items():
        print(
            f"  {name:42} {chunks:6} chunks in {seconds:5.2f} s: {chunks / seconds:8.0f} chunks/s"
        )


if __name__ == "__main__":
    main()
