"""Search relevance on developer questions: our own evaluation set, its scoring, and the
pure parts the runner (``__main__``) and the tests share.

A query is one line of ``queries/<project>.jsonl``::

    {"id": "httpx-07", "project": "httpx", "category": "semantic",
     "query": "how are redirects followed and when does it stop",
     "relevant": [{"path": "httpx/_client.py", "start": 520, "end": 560, "grade": 2}, ...]}

``category`` is ``symbol`` ("where is X defined"), ``semantic`` ("how does X work") or
``architecture`` ("where/how is Y wired together"); ``grade`` 2 is the answer, 1 related
code; lines are 1-based and inclusive.

Scoring is NDCG@10 with graded gains over *spans*: a hit earns the grade of the best
annotated span it overlaps that no higher-ranked hit has earned already, so ten fragments
of one answer count once, as a reader would count them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

QUERIES = Path(__file__).parent / "queries"
CATEGORIES = ("symbol", "semantic", "architecture")
CUTOFF = 10


@dataclass(frozen=True)
class Span:
    path: str
    start: int
    end: int
    grade: int


@dataclass(frozen=True)
class Query:
    id: str
    project: str
    category: str
    text: str
    relevant: tuple[Span, ...]


@dataclass(frozen=True)
class Hit:
    path: str
    start: int
    end: int


def parse_query(line: str) -> Query:
    data = json.loads(line)
    spans = tuple(
        Span(r["path"], int(r["start"]), int(r["end"]), int(r["grade"])) for r in data["relevant"]
    )
    return Query(data["id"], data["project"], data["category"], data["query"], spans)


def load_queries(folder: Path = QUERIES) -> list[Query]:
    """Every query of every ``*.jsonl`` file in ``folder``, in file and line order."""
    return [
        parse_query(line)
        for path in sorted(folder.glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def problems(query: Query, tree: Path) -> list[str]:
    """What is wrong with ``query`` against the project's files under ``tree``."""
    found = []
    if query.category not in CATEGORIES:
        found.append(f"{query.id}: unknown category {query.category!r}")
    if not query.text.strip():
        found.append(f"{query.id}: empty query")
    if not any(span.grade == 2 for span in query.relevant):
        found.append(f"{query.id}: no span of grade 2 (the answer)")
    for span in query.relevant:
        file = tree / span.path
        if span.grade not in (1, 2):
            found.append(f"{query.id}: grade {span.grade} (use 1 or 2)")
        if not file.is_file():
            found.append(f"{query.id}: {span.path} does not exist")
            continue
        lines = len(file.read_text(errors="replace").splitlines())
        if not 1 <= span.start <= span.end <= lines:
            found.append(f"{query.id}: {span.path}:{span.start}-{span.end} outside 1-{lines}")
    return found


def overlaps(hit: Hit, span: Span) -> bool:
    return hit.path == span.path and hit.start <= span.end and span.start <= hit.end


def gains(hits: Sequence[Hit], relevant: Iterable[Span]) -> list[int]:
    """The gain of each hit: the best span it overlaps that no earlier hit has earned."""
    remaining = sorted(relevant, key=lambda span: -span.grade)
    out = []
    for hit in hits:
        earned = next((span for span in remaining if overlaps(hit, span)), None)
        if earned is None:
            out.append(0)
            continue
        remaining.remove(earned)
        out.append(earned.grade)
    return out


def dcg(values: Sequence[int]) -> float:
    return sum(float(2**gain - 1) / math.log2(rank + 2) for rank, gain in enumerate(values))


def ndcg(hits: Sequence[Hit], relevant: Sequence[Span], cutoff: int = CUTOFF) -> float:
    """NDCG@``cutoff`` of ``hits`` (best first) against the annotated spans."""
    ideal = dcg(sorted((span.grade for span in relevant), reverse=True)[:cutoff])
    return dcg(gains(hits[:cutoff], relevant)) / ideal if ideal else 0.0
