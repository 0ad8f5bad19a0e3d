"""Check every annotated query against the corpus: categories, grades, files, line ranges.

.venv/bin/python -m benchmarks.relevance.validate
"""

from __future__ import annotations

import sys
from collections import Counter

from benchmarks.relevance import load_queries, problems
from benchmarks.relevance.corpus import projects, repository


def main() -> None:
    trees = {p.name: repository(p) for p in projects()}
    queries = load_queries()
    found = [f"{q.id}: unknown project {q.project!r}" for q in queries if q.project not in trees]
    found += [msg for q in queries if q.project in trees for msg in problems(q, trees[q.project])]
    ids = Counter(q.id for q in queries)
    found += [f"{i}: id used {n} times" for i, n in ids.items() if n > 1]
    per = Counter((q.project, q.category) for q in queries)
    for name in trees:
        row = "  ".join(f"{c} {per[(name, c)]:2}" for c in ("symbol", "semantic", "architecture"))
        print(f"{name:16} {row}")
    print(f"{len(queries)} queries; {len(found)} problems")
    for message in found:
        print("  " + message)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
