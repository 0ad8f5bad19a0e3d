"""Search relevance on developer questions: codeflow against BM25 on our own evaluation set.

    .venv/bin/python -m benchmarks.relevance [--projects httpx gin ...] [--failures 0]

Each project of ``repos.toml`` is fetched once (:mod:`benchmarks.relevance.corpus`), indexed
by the real flow (``vectorize_repository``: ephemeral Prefect, embedded Redis, LanceDB, the
default local embedder) under a home of its own, and asked the project's annotated queries
(``queries/*.jsonl``) through ``hybrid_search`` with the store and embedder ``codeflow
search`` uses. The baseline is plain BM25 (``bm25s``: its default tokenizer, English stop
words) over the chunk texts read back from the same table, so both rank the same units.

Printed: NDCG@10 (graded, spans counted once: see :mod:`benchmarks.relevance`) per category,
per language and overall, codeflow beside BM25, and the median in-process query latency.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.relevance import CATEGORIES, CUTOFF, Hit, Query, load_queries, ndcg
from benchmarks.relevance.corpus import DEFAULT_CACHE, Project, projects, repository

CODEFLOW = "codeflow"
BASELINE = "BM25 (bm25s)"
Ranker = Callable[[str], list[Hit]]


def index(repo: Path) -> str:
    """Index ``repo`` as ``codeflow index`` does; returns its namespace."""
    from config import load_settings
    from flows.vectorize import vectorize_repository
    from tasks.backends import check_backends
    from tasks.index.manifests import namespace_for
    from tasks.repo.git_repository import GitRepository
    from tasks.services import services_for

    check_backends(services_for(load_settings()))
    vectorize_repository(str(repo))
    with GitRepository.open(str(repo)) as opened:
        return namespace_for(opened.repo_id, opened.branch_label())


def codeflow_ranker(namespace: str) -> Ranker:
    from config import load_settings
    from tasks.search.hybrid import hybrid_search
    from tasks.services import services_for

    svc = services_for(load_settings())

    def rank(query: str) -> list[Hit]:
        hits = hybrid_search(
            query, store=svc.store, embedder=svc.embedder, namespace=namespace, limit=CUTOFF
        )
        return [Hit(h.path, h.start_line, h.end_line) for h in hits]

    return rank


def stored_rows(namespace: str) -> list[dict[str, Any]]:
    from config import load_settings
    from tasks.services import services_for
    from tasks.vectors.lance_store import LanceStore

    store = services_for(load_settings()).store
    if not isinstance(store, LanceStore):
        raise SystemExit("the relevance benchmark reads chunks back from LanceDB (CODEFLOW_STORE)")
    rows = store.rows(namespace, sorted(store.ids(namespace)))
    return sorted(rows.values(), key=lambda r: (r["path"], r["start_line"], r["id"]))


def bm25_rankings(rows: Sequence[dict[str, Any]], queries: Sequence[Query]) -> list[list[Hit]]:
    """Plain BM25 (bm25s defaults, English stop words) over the stored chunk texts."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    retriever = bm25s.BM25()
    texts = [r["text"] for r in rows]
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(
        [q.text for q in queries], stopwords="en", return_ids=False, show_progress=False
    )
    k = min(CUTOFF, len(rows))
    found, scores = retriever.retrieve(tokens, k=k, show_progress=False)
    places = [Hit(r["path"], r["start_line"], r["end_line"]) for r in rows]
    return [
        [places[i] for i, s in zip(ids, ss, strict=True) if s > 0]
        for ids, ss in zip(found.tolist(), scores.tolist(), strict=True)
    ]


def run_project(project: Project, queries: list[Query]) -> list[dict[str, Any]]:
    """One row per query and method: its NDCG@10, category, language and latency."""
    namespace = index(repository(project))
    rank = codeflow_ranker(namespace)
    rows: list[dict[str, Any]] = []
    for query in queries:
        started = time.perf_counter()
        hits = rank(query.text)
        elapsed = time.perf_counter() - started
        rows.append(_row(query, project, CODEFLOW, ndcg(hits, query.relevant), elapsed))
    for query, hits in zip(queries, bm25_rankings(stored_rows(namespace), queries), strict=True):
        rows.append(_row(query, project, BASELINE, ndcg(hits, query.relevant), None))
    return rows


def _row(
    query: Query, project: Project, method: str, score: float, s: float | None
) -> dict[str, Any]:
    return {
        "id": query.id,
        "project": project.name,
        "language": project.language,
        "category": query.category,
        "method": method,
        "ndcg": score,
        "ms": None if s is None else s * 1000,
    }


def report(frame: pd.DataFrame) -> None:
    pd.set_option("display.width", 120)
    for by in ("category", "language", "project"):
        table = frame.pivot_table(index=by, columns="method", values="ndcg", aggfunc="mean")
        table["gain"] = table[CODEFLOW] - table[BASELINE]
        table["queries"] = frame[frame.method == CODEFLOW].groupby(by).size()
        if by == "category":
            table = table.reindex([c for c in CATEGORIES if c in table.index])
        print(f"\nNDCG@{CUTOFF} by {by}")
        print(table.round(3).to_string())
    overall = frame.groupby("method")["ndcg"].mean()
    latency = statistics.median(frame[frame.method == CODEFLOW]["ms"])
    print(
        f"\noverall: {CODEFLOW} {overall[CODEFLOW]:.3f}, {BASELINE} {overall[BASELINE]:.3f}"
        f" ({frame.id.nunique()} queries); codeflow query p50 {latency:.1f} ms in-process"
    )


def show_failures(frame: pd.DataFrame, limit: int) -> None:
    worst = frame[frame.method == CODEFLOW].nsmallest(limit, "ndcg")
    for row in worst.itertuples():
        print(f"  {row.id} ({row.category}): {row.ndcg:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relevance")
    parser.add_argument("--projects", nargs="*", help="only these projects (default: all)")
    parser.add_argument("--home", type=Path, default=DEFAULT_CACHE / "home")
    parser.add_argument("--failures", type=int, default=0, help="print the N worst queries")
    parser.add_argument("--csv", type=Path, help="also write every query's scores here")
    args = parser.parse_args(argv)
    os.environ["CODEFLOW_HOME"] = str(args.home)  # one store and Redis for every project
    queries = load_queries()
    chosen = [p for p in projects() if not args.projects or p.name in args.projects]
    rows: list[dict[str, Any]] = []
    for project in chosen:
        mine = [q for q in queries if q.project == project.name]
        if mine:
            rows.extend(run_project(project, mine))
    frame = pd.DataFrame(rows)
    report(frame)
    if args.failures:
        show_failures(frame, args.failures)
    if args.csv:
        frame.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
