"""The relevance benchmark's scoring: graded NDCG@10 over spans, each span earned once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.relevance import Hit, Span, dcg, gains, load_queries, ndcg, parse_query, problems

ANSWER = Span("a.go", 10, 30, 2)
RELATED = Span("b.go", 5, 9, 1)


def test_a_perfect_ranking_scores_one() -> None:
    hits = [Hit("a.go", 12, 20), Hit("b.go", 1, 6)]
    assert ndcg(hits, [ANSWER, RELATED]) == pytest.approx(1.0)


def test_fragments_of_one_answer_count_once() -> None:
    fragments = [Hit("a.go", 10, 14), Hit("a.go", 15, 19), Hit("a.go", 20, 24)]
    assert gains(fragments, [ANSWER, RELATED]) == [2, 0, 0]
    assert ndcg(fragments, [ANSWER, RELATED]) < 1.0


def test_order_and_grades_matter() -> None:
    reversed_order = [Hit("b.go", 1, 6), Hit("a.go", 12, 20)]
    assert ndcg(reversed_order, [ANSWER, RELATED]) < ndcg(
        list(reversed(reversed_order)), [ANSWER, RELATED]
    )
    assert ndcg([Hit("c.go", 1, 100)], [ANSWER]) == 0.0
    assert ndcg([], [ANSWER]) == 0.0
    assert dcg([2]) == pytest.approx(3.0)


def test_a_hit_earns_the_best_span_it_overlaps() -> None:
    inner = Span("a.go", 15, 16, 1)
    assert gains([Hit("a.go", 14, 20)], [inner, ANSWER]) == [2]


def test_queries_parse_and_are_checked_against_the_tree(tmp_path: Path) -> None:
    (tmp_path / "a.go").write_text("\n".join(f"line {i}" for i in range(40)))
    line = json.dumps(
        {"id": "p-01", "project": "p", "category": "symbol", "query": "Next",
         "relevant": [{"path": "a.go", "start": 10, "end": 30, "grade": 2},
                      {"path": "a.go", "start": 35, "end": 50, "grade": 1},
                      {"path": "gone.go", "start": 1, "end": 2, "grade": 1}]}
    )  # fmt: skip
    query = parse_query(line)
    assert query.relevant[0] == Span("a.go", 10, 30, 2)
    found = problems(query, tmp_path)
    assert len(found) == 2 and "outside 1-40" in found[0] and "does not exist" in found[1]


def test_the_shipped_queries_are_well_formed() -> None:
    queries = load_queries()
    assert len(queries) >= 300
    assert {q.category for q in queries} == {"symbol", "semantic", "architecture"}
    assert len({q.project for q in queries}) >= 10
    assert all(any(s.grade == 2 for s in q.relevant) for q in queries)
