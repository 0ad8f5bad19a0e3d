"""What a search query asks for, read before ranking (pure: no I/O).

Developers ask two kinds of questions. A *symbol* query names code: ``Context.Next``,
``where is parse_config defined``, ``RouterGroup.combineHandlers``. A *prose* query
describes behaviour: ``how are redirects followed``. They want different rankings: a
symbol query wants the definition of that name above every chunk that merely uses it; a
prose query wants the code that does the thing, and rarely its tests, examples or docs.

>>> intent = analyze("where is Context.Next defined")
>>> intent.kind, intent.identifiers
('symbol', ('context.next',))
>>> analyze("how are redirects followed").kind
'prose'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from tasks.tokens.code_tokens import code_tokens

QueryKind = Literal["symbol", "prose"]

#: A possibly qualified identifier: ``a.b``, ``a::b``, ``A#b``, ``a->b``.
_NAME = re.compile(r"[A-Za-z_$][\w$]*(?:(?:\.|::|#|->)[A-Za-z_$][\w$]*)*")
_SEPARATORS = re.compile(r"\.|::|#|->")
#: Words that frame a symbol question without naming anything.
_FRAMING = frozenset(
    {
        "where", "is", "are", "the", "a", "an", "of", "in", "for", "find", "show", "me",
        "defined", "definition", "declared", "declaration", "implemented", "implementation",
        "function", "method", "class", "struct", "interface", "type", "trait", "enum",
        "macro", "constant", "module", "field", "property", "variable",
        "how", "what", "why", "when", "which", "does", "do",
    }
)  # fmt: skip
#: A prose query that asks for these kinds of file gets them ranked as code.
_TEST_WORDS = frozenset({"test", "tests", "testing", "spec", "specs", "fixture", "fixtures"})
_DOC_WORDS = frozenset({"doc", "docs", "readme", "documentation", "guide"})
_EXAMPLE_WORDS = frozenset({"example", "examples", "sample", "samples", "demo", "demos"})
_MAX_SYMBOL_WORDS = 3


@dataclass(frozen=True)
class QueryIntent:
    """``terms``: the query's code tokens; ``identifiers``: the names it spells like code,
    lower-cased; ``kind``: symbol or prose; ``wants_*``: the kinds of file it asks for."""

    text: str
    terms: frozenset[str]
    identifiers: tuple[str, ...]
    kind: QueryKind
    wants_tests: bool
    wants_docs: bool
    wants_examples: bool


def analyze(query: str) -> QueryIntent:
    """Read ``query``: its terms, the identifiers it names, and which kind of query it is."""
    words = [w for w in _NAME.findall(query) if w.lower() not in _FRAMING]
    identifiers = tuple(dict.fromkeys(w.lower() for w in words if _looks_like_code(w)))
    kind: QueryKind = "symbol" if identifiers and len(words) <= _MAX_SYMBOL_WORDS else "prose"
    terms = frozenset(code_tokens(query))
    return QueryIntent(
        text=query,
        terms=terms,
        identifiers=identifiers,
        kind=kind,
        wants_tests=bool(terms & _TEST_WORDS),
        wants_docs=bool(terms & _DOC_WORDS),
        wants_examples=bool(terms & _EXAMPLE_WORDS),
    )


def _looks_like_code(word: str) -> bool:
    """``snake_case``, ``camelCase``, ``PascalCase``, ``HTTP``, ``a.b``: not an English word."""
    if _SEPARATORS.search(word) or "_" in word.strip("_") or "$" in word:
        return True
    inner = word[1:]
    return any(c.isupper() for c in inner) or (word[0].isupper() and len(word) > 1)


def last_name(symbol: str) -> str:
    """The last component of a qualified name: ``Context.Next`` -> ``Next``."""
    return _SEPARATORS.split(symbol)[-1]
