"""Related code: what else an agent should read, given a place in a file.

The chunk at ``FILE:LINE`` is the query. Its meaning finds code that does similar things
(the vector half: its own text, embedded), and its names find code that shares them (the
BM25 half: the identifiers it defines and uses, callers and callees alike). Both are fused
and ranked as a search is, the chunk itself and its neighbours left out.

>>> related_code(svc, "/src/app", "app/config.py", 42)            # doctest: +SKIP
[{'path': 'app/loader.py', 'start_line': 10, ...}, ...]
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from config.errors import ConfigError
from tasks.records import SearchHit
from tasks.search.hybrid import MAX_LIMIT, semantic_weight_for
from tasks.search.query import QueryIntent
from tasks.search.ranking import fuse, group_neighbours, joined
from tasks.tokens.code_tokens import STOP_WORDS, code_tokens

if TYPE_CHECKING:
    from tasks.services import Services

#: Identifiers of the chunk that make its BM25 query: the most frequent first.
QUERY_IDENTIFIERS = 24
CANDIDATES = 80
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
#: Keywords of the languages codeflow reads: shared by all code, they relate nothing.
_KEYWORDS = frozenset(
    {
        "class", "def", "function", "func", "fn", "return", "const", "let", "var", "public",
        "private", "protected", "static", "void", "struct", "impl", "self", "this", "new",
        "import", "from", "package", "module", "namespace", "using", "include", "elif",
        "while", "for", "break", "continue", "try", "except", "catch", "finally", "throw",
        "throws", "raise", "async", "await", "yield", "lambda", "interface", "enum", "type",
        "typedef", "extends", "implements", "override", "virtual", "final", "int", "bool",
        "string", "char", "float", "double", "long", "unsigned", "auto", "null", "nil",
        "undefined", "pass", "end", "__init__",
    }
)  # fmt: skip


def related_code(
    svc: Services, repo: str, path: str, line: int, limit: int = 10, *, branch: str | None = None
) -> list[dict[str, Any]]:
    """Code related to line ``line`` of ``path`` (repo-relative) in the repository at
    ``repo`` (or of that repository ID), best first, as the same JSON objects search
    returns."""
    from tasks.search.repository_search import hit_json, indexed_manifest

    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigError(f"the limit must be between 1 and {MAX_LIMIT}")
    manifest, namespace = indexed_manifest(svc, repo, branch)
    ids = manifest.chunks.get(path)
    if not ids:
        raise ConfigError(
            f"{path} is not indexed in {repo}; pass a repo-relative path of a file it holds"
        )
    target = _chunk_at(svc.store.chunks(namespace, ids), line, path)
    hits = _related(svc, namespace, target, limit)
    return [hit_json(hit) for hit in hits]


def _chunk_at(chunks: list[SearchHit], line: int, path: str) -> SearchHit:
    """The chunk holding ``line``, else the nearest one."""
    if not chunks:
        raise ConfigError(f"{path} has no stored chunks; index the repository again")
    return min(
        chunks,
        key=lambda c: (
            0
            if c.start_line <= line <= c.end_line
            else min(abs(c.start_line - line), abs(c.end_line - line))
        ),
    )


def _related(svc: Services, namespace: str, target: SearchHit, limit: int) -> list[SearchHit]:
    store, embedder = svc.store, svc.embedder
    names = identifiers(target.text, target.symbol)
    lexical = store.text_search(namespace, names, CANDIDATES, with_text=False) if names else []
    semantic = store.query(namespace, embedder.embed([target.text])[0], CANDIDATES, with_text=False)
    others = [h for h in (*lexical, *semantic) if not _overlaps(h, target)]
    keep = {h.id for h in others}
    intent = QueryIntent(
        text=target.text,
        terms=frozenset(names),
        identifiers=(),
        kind="prose",
        wants_tests=True,  # the tests and examples of a place are related to it
        wants_docs=False,
        wants_examples=True,
    )
    weight = semantic_weight_for(embedder.id)
    ranked = fuse(
        [h for h in lexical if h.id in keep],
        [h for h in semantic if h.id in keep],
        intent,
        2 * CANDIDATES,
        semantic_weight=weight,
    )
    groups = group_neighbours(ranked, limit)
    texts = {h.id: h for h in store.with_text(namespace, [h for g in groups for h in g])}
    return [joined([texts.get(h.id, h) for h in group]) for group in groups]


def identifiers(text: str, symbol: str | None) -> list[str]:
    """The BM25 query of a chunk: its symbol's tokens, then its most frequent identifiers
    (whole, lower-cased), without keywords and stop words."""
    counts = Counter(
        word.lower()
        for word in _IDENTIFIER.findall(text)
        if word.lower() not in STOP_WORDS and word.lower() not in _KEYWORDS
    )
    common = [word for word, _ in counts.most_common(QUERY_IDENTIFIERS)]
    own = code_tokens(symbol) if symbol else []
    return list(dict.fromkeys([*own, *common]))


def _overlaps(hit: SearchHit, target: SearchHit) -> bool:
    return (
        hit.path == target.path
        and hit.start_line <= target.end_line
        and target.start_line <= hit.end_line
    )
