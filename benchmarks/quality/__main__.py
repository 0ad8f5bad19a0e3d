"""Search-quality benchmark: docstring -> function retrieval on real code, codeflow vs BM25.

    .venv/bin/python -m benchmarks.quality [--queries 500] [--packages prefect httpx ...]
        [--seed 7] [--failures 0]

Corpus: the Python source of installed packages (``--packages``, default
:data:`PACKAGES`, ~2,000 files), minus tests and the paths codeflow skips (vendored,
generated), copied into a fresh git repository with every docstring stripped (see
:mod:`benchmarks.quality`). Queries: the first paragraph of the docstring of functions and
methods, sampled with ``--seed`` among the summaries that occur exactly once in the corpus.

The copy is indexed by the real flow (``vectorize_repository``: ephemeral Prefect, embedded
Redis, LanceDB, local WordLlama embedder) and searched through ``hybrid_search`` with the
store and embedder ``codeflow search`` uses (its Redis result cache is not involved). The
baseline is plain BM25 (``bm25s``: its default tokenizer, English stop words, Lucene
scoring) over the chunk texts read back from the same LanceDB table, so every method ranks
the same units. Also reported: codeflow's two retrievers alone (vector, BM25 over code
tokens), their reciprocal-rank fusion without the ranking priors, and the hybrid with both
halves weighted equally (``codeflow search`` weighs WordLlama's vectors at 0.25, a weight
chosen on other packages: see ``tasks.search.hybrid.LOCAL_SEMANTIC_WEIGHT``).

Metrics: MRR@10, NDCG@10, Recall@10 with one relevant function per query (a hit counts if it
overlaps the function's lines in its file; only the first such hit). Goal: codeflow's
NDCG@10 at least 0.10 above BM25's.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import logging
import random
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.quality import (
    Target,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    relevance_flags,
    strip_docstrings,
)
from tests.git_support import commit_all, git

PACKAGES = (
    "prefect", "sqlalchemy", "pydantic", "rich", "tornado", "redis", "docker", "fastapi",
    "anyio", "starlette", "httpcore", "httpx", "click", "jinja2", "typer", "git", "alembic",
)  # fmt: skip
K = 10
GOAL_MARGIN = 0.10
HYBRID = "codeflow hybrid"
BASELINE = "BM25 (bm25s)"

Hit = tuple[str, int, int]
Ranker = Callable[[str], list[Hit]]


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    symbol: str
    target: Target


def source_files(packages: Sequence[str]) -> list[tuple[str, Path]]:
    """``(repo path, source file)`` of every indexable, non-test ``.py`` file of the packages."""
    from tasks.index.chunking import ChunkingPolicy, skip_reason_for_path
    from tasks.search.ranking import is_test_path

    policy, found = ChunkingPolicy(), []
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"package {name!r} is not installed (or is a single module)")
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root.parent).as_posix()
            if "__pycache__" in path.parts or is_test_path(rel):
                continue
            if skip_reason_for_path(rel, policy) is None:
                found.append((rel, path))
    return found


def stripped_copy(rel: str, source: Path, repo: Path) -> list[Query]:
    """Write ``source`` without docstrings to ``repo/rel``; its query functions."""
    dest = repo / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        text, functions = strip_docstrings(source.read_text(encoding="utf-8"))
        ast.parse(text)
    except (SyntaxError, ValueError):  # unparsable or undecodable: copied as is, no queries
        shutil.copyfile(source, dest)
        return []
    dest.write_text(text, encoding="utf-8")
    return [Query(f.query, f.symbol, Target(rel, f.start_line, f.end_line)) for f in functions]


def build_repo(packages: Sequence[str], repo: Path) -> tuple[int, list[Query]]:
    files = source_files(packages)
    repo.mkdir(parents=True)
    candidates = [q for rel, path in files for q in stripped_copy(rel, path, repo)]
    git(repo, "init", "-q")
    commit_all(repo, "corpus without docstrings")
    return len(files), candidates


def sample_queries(
    candidates: Sequence[Query], indexed: set[str], n: int, seed: int
) -> list[Query]:
    """``n`` queries whose text occurs once in the corpus and whose file was indexed."""
    counts = Counter(q.text for q in candidates)
    unique = [q for q in candidates if counts[q.text] == 1 and q.target.path in indexed]
    return random.Random(seed).sample(unique, min(n, len(unique)))


def index(repo: Path) -> tuple[dict[str, Any], str]:
    """Index ``repo`` as ``codeflow index`` does; the run summary and the namespace."""
    from config import load_settings
    from flows.vectorize import vectorize_repository
    from tasks.backends import check_backends
    from tasks.index.manifests import namespace_for
    from tasks.repo.git_repository import GitRepository
    from tasks.services import services_for

    check_backends(services_for(load_settings()))
    summary = vectorize_repository(str(repo))
    with GitRepository.open(str(repo)) as opened:
        namespace = namespace_for(opened.repo_id, opened.branch_label())
    return summary, namespace


def _places(hits: Sequence[Any]) -> list[Hit]:
    return [(h.path, h.start_line, h.end_line) for h in hits]


def codeflow_rankers(namespace: str) -> dict[str, Ranker]:
    """Full hybrid search (what ``codeflow search`` runs), its retrievers, and bare RRF."""
    from config import load_settings
    from tasks.search.hybrid import hybrid_search
    from tasks.search.ranking import rrf_scores
    from tasks.services import services_for
    from tasks.tokens.code_tokens import code_tokens, unique_tokens

    rt = services_for(load_settings())
    store, embedder = rt.store, rt.embedder

    def vector(q: str, k: int = K) -> list[Any]:
        return store.query(namespace, embedder.embed([q])[0], k)

    def lexical(q: str, k: int = K) -> list[Any]:
        return store.text_search(namespace, unique_tokens(code_tokens(q)), k)

    def rrf(q: str) -> list[Hit]:
        first, second = lexical(q, 5 * K), vector(q, 5 * K)
        by_id = {h.id: h for h in (*second, *first)}
        scores = rrf_scores(first, second)
        best = sorted(scores, key=lambda i: -scores[i])[:K]
        return _places([by_id[i] for i in best])

    return {
        HYBRID: lambda q: _places(
            hybrid_search(q, store=store, embedder=embedder, namespace=namespace, limit=K)
        ),
        "codeflow hybrid, equal weights": lambda q: _places(
            hybrid_search(
                q, store=store, embedder=embedder, namespace=namespace, limit=K, semantic_weight=1
            )
        ),
        "codeflow vector only": lambda q: _places(vector(q)),
        "codeflow BM25 only": lambda q: _places(lexical(q)),
        "codeflow RRF, no priors": rrf,
    }


def stored_chunks(namespace: str) -> list[dict[str, Any]]:
    """Every row codeflow stored for the namespace, in a stable order."""
    from config import load_settings
    from tasks.services import services_for
    from tasks.vectors.lance_store import LanceStore

    store = services_for(load_settings()).store
    if not isinstance(store, LanceStore):
        raise SystemExit("the quality benchmark reads chunks back from LanceDB (CODEFLOW_STORE)")
    rows = store.rows(namespace, sorted(store.ids(namespace)))
    return sorted(rows.values(), key=lambda r: (r["path"], r["start_line"], r["id"]))


def bm25_rankings(rows: Sequence[dict[str, Any]], queries: Sequence[Query]) -> list[list[Hit]]:
    """Plain BM25 (bm25s defaults, English stop words) over the stored chunk texts."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # its index log is DEBUG noise
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([r["text"] for r in rows], stopwords="en", show_progress=False),
        show_progress=False,
    )
    tokens = bm25s.tokenize(
        [q.text for q in queries], stopwords="en", return_ids=False, show_progress=False
    )
    found, scores = retriever.retrieve(tokens, k=K, show_progress=False)
    places = [(r["path"], r["start_line"], r["end_line"]) for r in rows]
    return [
        [places[i] for i, s in zip(ids, ss, strict=True) if s > 0]
        for ids, ss in zip(found.tolist(), scores.tolist(), strict=True)
    ]


def score(rankings: Sequence[list[Hit]], queries: Sequence[Query]) -> dict[str, float]:
    flags = [relevance_flags(r, q.target) for r, q in zip(rankings, queries, strict=True)]
    return {
        "MRR@10": statistics.fmean(mrr_at_k(f, K) for f in flags),
        "NDCG@10": statistics.fmean(ndcg_at_k(f, K) for f in flags),
        "Recall@10": statistics.fmean(recall_at_k(f, K) for f in flags),
    }


def run_ranker(ranker: Ranker, queries: Sequence[Query]) -> tuple[list[list[Hit]], float]:
    """Each query's ranking and the median latency (ms)."""
    rankings, samples = [], []
    for query in queries:
        start = time.perf_counter()
        rankings.append(ranker(query.text))
        samples.append(time.perf_counter() - start)
    return rankings, statistics.median(samples) * 1000


def show_failures(
    rankings: Sequence[list[Hit]], queries: Sequence[Query], limit: int, method: str
) -> None:
    """Queries ``method`` missed in its top 10, with what it returned first."""
    missed = [
        (q, r) for q, r in zip(queries, rankings, strict=True)
        if not any(relevance_flags(r, q.target))
    ][:limit]  # fmt: skip
    for query, ranking in missed:
        print(f"- {query.text[:110]!r}\n  want {query.target.path}:{query.symbol}")
        for path, start, end in ranking[:3]:
            print(f"  got  {path}:{start}-{end}")


def evaluate(
    namespace: str, rows: Sequence[dict[str, Any]], queries: Sequence[Query], failures: int
) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for name, ranker in codeflow_rankers(namespace).items():
        rankings, p50 = run_ranker(ranker, queries)
        table[name] = {**score(rankings, queries), "p50 ms": round(p50, 1)}
        if failures and name == HYBRID:
            print(f"{HYBRID}: first {failures} queries missed in the top {K}")
            show_failures(rankings, queries, failures, HYBRID)
    start = time.perf_counter()
    baseline = bm25_rankings(rows, queries)
    per_query = (time.perf_counter() - start) / max(len(queries), 1) * 1000
    table[BASELINE] = {**score(baseline, queries), "p50 ms": f"{per_query:.1f} (mean, incl. index)"}
    return table


def report(table: dict[str, dict[str, Any]], header: str) -> None:
    frame = pd.DataFrame(table).T
    for column in ("MRR@10", "NDCG@10", "Recall@10"):
        frame[column] = frame[column].astype(float).round(3)
    print(header)
    print(frame.to_string())
    ours, theirs = float(table[HYBRID]["NDCG@10"]), float(table[BASELINE]["NDCG@10"])
    holds = ours - theirs >= GOAL_MARGIN
    print(
        f"goal (codeflow NDCG@10 >= BM25 + {GOAL_MARGIN:.2f}): "
        f"{'holds' if holds else 'NOT met'} ({ours:.3f} vs {theirs:.3f}, {ours - theirs:+.3f})"
    )


def run_all(args: argparse.Namespace, work: Path) -> None:
    repo = work / "repo"
    files, candidates = build_repo(args.packages, repo)
    summary, namespace = index(repo)
    rows = stored_chunks(namespace)
    queries = sample_queries(candidates, {r["path"] for r in rows}, args.queries, args.seed)
    table = evaluate(namespace, rows, queries, args.failures)
    header = (
        f"corpus: {files} files of {len(args.packages)} packages, {len(rows)} chunks "
        f"(indexed in {summary['duration_s']:.1f} s); {len(queries)} queries "
        f"(seed {args.seed}) from {len(candidates)} documented functions"
    )
    report(table, header)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--failures", type=int, default=0, help="print N missed queries")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from benchmarks.common import codeflow_home

    with codeflow_home("codeflow-qbench-") as work:
        run_all(args, work)


if __name__ == "__main__":
    main()
