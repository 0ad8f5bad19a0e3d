"""Rank search candidates for code (pure: no I/O).

1. **Fuse** the lexical (BM25) and semantic (vector) candidates with reciprocal-rank fusion
   (RRF), which needs no calibration between BM25 scores and cosines; normalised so a
   chunk ranked first by both scores 1.0.
2. **Priors** multiply that score, each a small named factor around 1.0, so a score
   explains itself: ``fused x symbol x path x kind-of-file x coherence``. They depend on
   what the query asks (:mod:`tasks.search.query`): a symbol query lifts the definition of
   the name it spells far above chunks that merely mention it; a prose query pushes tests,
   examples, docs and vendored code down unless it asks for them.
3. **Group** neighbouring chunks of one file (pieces of one definition, a method and the
   next) into one hit, so a definition cut in three takes one place in the list, not three.

Every weight below was chosen on our evaluation set, per category of question
(``benchmarks/relevance``).

>>> ranked = fuse(lexical_hits, semantic_hits, "parse config", limit=10)
>>> [h.path for h in ranked][:2]
['app/config.py', 'app/loader.py']
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from tasks.records import SearchHit
from tasks.search.query import QueryIntent, analyze, last_name
from tasks.tokens.code_tokens import code_tokens

#: Part of every search-cache key: bump it when a change here (or in the fusion weights)
#: reorders results, so cached answers of the old order are not served after an upgrade.
RANKING_VERSION = 3
#: RRF constant: larger flattens the difference between ranks (60 is the usual choice).
RRF_K = 60
#: Up to +60% when the chunk defines a symbol whose name covers the query's words.
SYMBOL_WEIGHT = 0.6
#: The chunk defines exactly the name a query spells (``Context.Next``, ``parse_config``).
EXACT_SYMBOL_FACTOR = {"symbol": 2.0, "prose": 1.3}
#: Up to +30% when the file name (without extension) covers the query's words.
FILE_NAME_WEIGHT = 0.3
#: Up to +10% when directory names cover the query's words.
DIRECTORY_WEIGHT = 0.1
#: Tests, specs and fixtures: found, but below the code they test (unless asked for).
TEST_FACTOR = {"symbol": 0.7, "prose": 0.5}
#: Examples, samples, demos and benchmarks: how to use the code, rarely the code itself.
EXAMPLE_FACTOR = 0.6
#: Package ``__init__`` files mostly re-export names defined elsewhere.
INIT_FACTOR = 0.85
#: Vendored, generated or minified code is rarely what anybody searches for.
VENDORED_FACTOR = 0.6
#: Prose (Markdown, reST, text) ranks below code for a code search.
DOCS_FACTOR = {"symbol": 0.9, "prose": 0.7}
#: +5% per other candidate chunk of the same file, capped at 3 others (+15%).
COHERENCE_WEIGHT = 0.05
COHERENCE_CAP = 3
#: Chunks of one file at most this many lines apart join one hit, up to this many lines.
GROUP_GAP_LINES = 2
GROUP_MAX_LINES = 120

_TEST_PATH = re.compile(
    r"(^|/)(tests?|testing|__tests__|spec|specs|fixtures?)/"
    r"|(^|/)(test_[^/]*|[^/]*_test\.[a-z]+|[^/]*[._-](test|spec)\.[a-z]+|conftest\.py)$"
)
_EXAMPLE_PATH = re.compile(r"(^|/)(examples?|samples?|demos?|benchmarks?)/")
_VENDORED_PATH = re.compile(
    r"(^|/)(vendor|vendored|third_party|third-party|node_modules|site-packages|_vendor|"
    r"dist|build|generated|gen)/"
    r"|(_pb2(_grpc)?\.py|\.pb\.go|\.min\.(js|css)|\.generated\.[a-z]+|_generated\.[a-z]+)$"
)
_DOC_EXTENSIONS = (".md", ".rst", ".txt", ".adoc")
_DOC_LANGUAGES = frozenset({"markdown", "rst", "restructuredtext", "text", "asciidoc"})


def rrf_scores(
    *ranked: Sequence[SearchHit], k: int = RRF_K, weights: Sequence[float] = ()
) -> dict[str, float]:
    """Sum of ``weight / (k + rank)`` over the lists (weights default to 1), divided by its
    maximum (first everywhere)."""
    factors = list(weights) or [1.0] * len(ranked)
    if len(factors) != len(ranked):
        raise ValueError(f"{len(ranked)} ranked lists but {len(factors)} weights")
    scores: dict[str, float] = {}
    for hits, weight in zip(ranked, factors, strict=True):
        for rank, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (k + rank)
    best = sum(factors) / (k + 1)
    return {hit_id: score / best for hit_id, score in scores.items()}


def _coverage(query: frozenset[str], tokens: frozenset[str]) -> float:
    return len(query & tokens) / len(query) if query else 0.0


# A searcher meets the same paths and symbols query after query: what the priors derive
# from them is remembered (most of the fusion's time otherwise).
_REMEMBERED = 1 << 16


@functools.lru_cache(maxsize=_REMEMBERED)
def _words(name: str) -> frozenset[str]:
    """The code tokens of a symbol, file stem or directory path."""
    return frozenset(code_tokens(name))


@functools.lru_cache(maxsize=_REMEMBERED)
def _defined_names(symbol: str) -> frozenset[str]:
    """The names a chunk's symbol defines, whole and last component, lower-cased
    (a merged chunk's symbol lists several: ``a, b``)."""
    names = (n.strip().lower() for n in symbol.split(","))
    return frozenset(x for n in names if n for x in (n, last_name(n)))


def symbol_prior(hit: SearchHit, intent: QueryIntent) -> float:
    """Boost definitions: most when the chunk defines exactly a name the query spells,
    else by how much of the query its symbol's words cover."""
    if not hit.symbol:
        return 1.0
    partial = 1.0 + SYMBOL_WEIGHT * _coverage(intent.terms, _words(hit.symbol))
    defined = _defined_names(hit.symbol)
    for identifier in intent.identifiers:
        if identifier in defined or last_name(identifier) in defined:
            return partial * EXACT_SYMBOL_FACTOR[intent.kind]
    return partial


def path_prior(hit: SearchHit, intent: QueryIntent) -> float:
    """Boost chunks whose file name (most) or directories (a little) name the query's words."""
    directory, _, file_name = hit.path.rpartition("/")
    stem = file_name.rsplit(".", 1)[0] if "." in file_name[1:] else file_name
    file_score = FILE_NAME_WEIGHT * _coverage(intent.terms, _words(stem))
    directory_score = DIRECTORY_WEIGHT * _coverage(intent.terms, _words(directory))
    return 1.0 + file_score + directory_score


@functools.lru_cache(maxsize=_REMEMBERED)
def is_test_path(path: str) -> bool:
    return _TEST_PATH.search(path.lower()) is not None


@functools.lru_cache(maxsize=_REMEMBERED)
def is_example_path(path: str) -> bool:
    return _EXAMPLE_PATH.search(path.lower()) is not None


@functools.lru_cache(maxsize=_REMEMBERED)
def is_vendored_path(path: str) -> bool:
    return _VENDORED_PATH.search(path.lower()) is not None


def is_docs(hit: SearchHit) -> bool:
    return hit.path.lower().endswith(_DOC_EXTENSIONS) or hit.language.lower() in _DOC_LANGUAGES


def file_kind_prior(hit: SearchHit, intent: QueryIntent) -> float:
    """Demote tests, examples, ``__init__.py``, vendored/generated files and prose (more so
    for prose queries), unless the query asks for them."""
    factor = 1.0
    if is_test_path(hit.path) and not intent.wants_tests:
        factor *= TEST_FACTOR[intent.kind]
    if is_example_path(hit.path) and not intent.wants_examples:
        factor *= EXAMPLE_FACTOR
    if hit.path.endswith("__init__.py") and "init" not in intent.terms:
        factor *= INIT_FACTOR
    if is_vendored_path(hit.path):
        factor *= VENDORED_FACTOR
    if is_docs(hit) and not intent.wants_docs:
        factor *= DOCS_FACTOR[intent.kind]
    return factor


def coherence_prior(hit: SearchHit, chunks_per_file: Counter[str]) -> float:
    """A file with several candidate chunks is probably about the query as a whole."""
    others = min(chunks_per_file[hit.path] - 1, COHERENCE_CAP)
    return 1.0 + COHERENCE_WEIGHT * others


def fuse(
    lexical: list[SearchHit],
    semantic: list[SearchHit],
    query: str | QueryIntent,
    limit: int,
    *,
    semantic_weight: float = 1.0,
) -> list[SearchHit]:
    """Weighted RRF of both lists, times the priors; best first, at most ``limit`` hits.

    Deterministic: equal scores keep the order of first appearance (lexical list first,
    then semantic), so the same inputs always give the same output.
    """
    intent = analyze(query) if isinstance(query, str) else query
    fused = rrf_scores(lexical, semantic, weights=(1.0, semantic_weight))
    first: dict[str, SearchHit] = {}
    for hit in (*lexical, *semantic):
        first.setdefault(hit.id, hit)
    per_file = Counter(hit.path for hit in first.values())
    scored = []
    for order, (hit_id, hit) in enumerate(first.items()):
        score = (
            fused[hit_id]
            * symbol_prior(hit, intent)
            * path_prior(hit, intent)
            * file_kind_prior(hit, intent)
            * coherence_prior(hit, per_file)
        )
        scored.append((-score, order, hit_id))
    scored.sort()
    return [replace(first[hit_id], score=-neg) for neg, _, hit_id in scored[: max(limit, 0)]]


def group_neighbours(ranked: Sequence[SearchHit], limit: int) -> list[list[SearchHit]]:
    """The best ``limit`` groups of ``ranked``: each hit joins the first better-ranked group
    of its file whose lines it touches (within ``GROUP_GAP_LINES``) while the group stays
    within ``GROUP_MAX_LINES``; a group ranks as its best hit."""
    groups: list[list[SearchHit]] = []
    spans: list[tuple[str, int, int]] = []
    for hit in ranked:
        home = next((i for i, span in enumerate(spans) if _joins(hit, span)), None)
        if home is not None:
            path, start, end = spans[home]
            groups[home].append(hit)
            spans[home] = (path, min(start, hit.start_line), max(end, hit.end_line))
        elif len(groups) < limit:
            groups.append([hit])
            spans.append((hit.path, hit.start_line, hit.end_line))
    return groups


def _joins(hit: SearchHit, span: tuple[str, int, int]) -> bool:
    path, start, end = span
    if path != hit.path or max(end, hit.end_line) - min(start, hit.start_line) >= GROUP_MAX_LINES:
        return False
    return hit.start_line <= end + GROUP_GAP_LINES and start <= hit.end_line + GROUP_GAP_LINES


def joined(group: Sequence[SearchHit]) -> SearchHit:
    """One hit for a group: its best hit's score and symbol, every line of its members, and
    their texts in line order."""
    best = group[0]
    if len(group) == 1:
        return best
    members = sorted(group, key=lambda hit: hit.start_line)
    text = "\n".join(hit.text for hit in members)
    start, end = members[0].start_line, max(hit.end_line for hit in members)
    return replace(best, start_line=start, end_line=end, text=text)
