"""Code-aware tokens for BM25: identifiers split the way programmers read them.

A plain word tokenizer sees ``getUserName`` as one opaque token, so a query for "user name"
never finds it. :func:`code_tokens` keeps the whole identifier (exact matches stay strong)
and adds its parts: camelCase, PascalCase, snake_case, kebab-case, digit runs and acronyms
(``HTTPServer`` -> ``http``, ``server``). Everything is lower-cased; one-character noise and a
small stop list of words that occur in almost every chunk are dropped, because they only
add posting-list work and no ranking signal.

The same function tokenizes documents (at index time) and queries (at search time), so the
two always agree. Pure and memoised: ``bytes.translate`` turns ASCII punctuation into spaces
and ``str.split`` cuts the text into runs, both in C; each distinct run is tokenized once by
the regular expressions below, which is faster than one ``findall`` over the whole text
(``benchmarks/chunking``).

>>> code_tokens("def getUserName(self): return self.HTTPServer_v2")
['getusername', 'get', 'user', 'name', 'httpserver_v2', 'http', 'server', 'v2']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from itertools import chain
from typing import cast

from tasks.native_extension import codeflow_native, native_available
from tasks.records import Chunk

# A "word" is a run of identifier characters (Unicode letters and digits included).
_WORD = re.compile(r"[^\W_]+(?:_+[^\W_]+)*", re.UNICODE)
# Parts inside one underscore-free piece: acronym before a capitalised word (HTTP|Server),
# capitalised or lower words, trailing acronyms, digit runs.
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

#: Words so common in code (keywords, pronouns of English prose in comments) that they carry
#: no ranking signal. Kept deliberately small: "get", "set", "test" and friends stay.
STOP_WORDS: frozenset[str] = frozenset(
    {
        "the", "and", "for", "not", "are", "was", "this", "that", "with", "from",
        "def", "self", "return", "import", "none", "true", "false", "if", "else", "in",
        "is", "of", "to", "or", "an", "as", "it", "be", "by", "on", "at", "we", "do",
    }
)  # fmt: skip

_MAX_TOKEN_CHARS = 64
# ASCII characters that cannot be part of a word become spaces; bytes of other characters
# (UTF-8 never uses ASCII bytes inside them) stay as they are.
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_PUNCTUATION_TO_SPACE = bytes(b if b in _WORD_BYTES or b >= 128 else 32 for b in range(256))


def _parts(word: str) -> list[str]:
    """Split one identifier into its lower-cased parts (``HTTPServer_v2`` -> http, server, v2).

    A lower-case letters+digits piece (``v2``, ``sha256sum``) is kept whole as well as split,
    because people type it both ways. Non-ASCII pieces are kept whole: case rules for them
    are not worth a slower regex.
    """
    out: list[str] = []
    for piece in word.split("_"):
        if not piece:
            continue
        sub = [m.group(0).lower() for m in _PART.finditer(piece)] if piece.isascii() else []
        if len(sub) <= 1:
            out.append(piece.lower())
            continue
        if piece.islower():
            out.append(piece)
        out.extend(sub)
    return out


def _keep(token: str) -> bool:
    return 1 < len(token) <= _MAX_TOKEN_CHARS and token not in STOP_WORDS


@lru_cache(maxsize=1 << 16)
def _expand(word: str) -> tuple[str, ...]:
    """The tokens of one identifier, memoised: code repeats its identifiers constantly."""
    whole = word.lower()
    head = (whole,) if _keep(whole) else ()
    if word.isalpha() and (word.islower() or word[1:].islower()):
        return head
    return head + tuple(p for p in _parts(word) if p != whole and _keep(p))


@lru_cache(maxsize=1 << 16)
def _run_tokens(run: str) -> str:
    """The tokens of one run of text without spaces or ASCII punctuation, space-joined
    (a run may still hold non-ASCII punctuation: ``_WORD`` finds the words in it)."""
    return " ".join(chain.from_iterable(map(_expand, _WORD.findall(run))))


def _joined_tokens(text: str) -> str:
    """``" ".join(code_tokens(text))``, computed run by run.

    Exact: no word contains a space or an ASCII character other than letters, digits and
    ``_``, so cutting the text there first finds the same words in the same order.
    """
    raw = text.encode("utf-8", "surrogatepass").translate(_PUNCTUATION_TO_SPACE)
    runs = raw.decode("utf-8", "surrogatepass").split()
    return " ".join(filter(None, map(_run_tokens, runs)))


def code_tokens(text: str) -> list[str]:
    """Tokens of ``text`` in order of appearance: each identifier whole, then its parts.

    Duplicates are kept (BM25 needs term frequencies); a part equal to its whole identifier
    is not repeated.
    """
    return _joined_tokens(text).split()


def unique_tokens(tokens: Iterable[str]) -> list[str]:
    """The distinct tokens in first-seen order (for queries: repeating a term adds nothing)."""
    return list(dict.fromkeys(tokens))


#: English suffixes a question's words carry and the code's words mostly do not
#: ("redirects", "interned", "handling" against ``redirect``, ``intern``, ``handle``).
_SUFFIXES = ("ations", "ation", "ings", "ing", "ied", "ies", "ers", "er", "ed", "es", "s", "ly")
_MIN_STEM = 3
_MIN_ING_STEM = 4  # "string" is not "str" + "ing"


def stem(token: str) -> str:
    """``token`` without one common English suffix (a light, rule-based stemmer)."""
    for suffix in _SUFFIXES:
        shortest = _MIN_ING_STEM if "ing" in suffix else _MIN_STEM
        if token.endswith(suffix) and len(token) - len(suffix) >= shortest:
            root = token[: -len(suffix)]
            return root + "y" if suffix in ("ied", "ies") else root
    return token


def query_tokens(text: str) -> list[str]:
    """A query's BM25 terms: its code tokens, then the stems they do not already hold
    (``handling`` also asks for ``handl`` and ``handle``). Documents are not stemmed: a
    question's inflected words then still match code that spells them out, and the stems
    find the rest."""
    tokens = unique_tokens(code_tokens(text))
    extra = []
    for token in tokens:
        root = stem(token)
        if root != token:
            extra.append(root)
            if token.endswith(("ing", "ed")):
                extra.append(root + "e")
    return unique_tokens(tokens + extra)


def joined_tokens(texts: Sequence[str]) -> list[str]:
    """``" ".join(code_tokens(text))`` of each text, through the native extension for
    ASCII texts when it is built (the same tokens, several times faster)."""
    if not native_available():
        return [_joined_tokens(text) for text in texts]
    try:
        native = _native_tokenizer().joined_tokens(list(texts))
    except UnicodeEncodeError:  # a lone surrogate, which the extension cannot take: rare
        return [_joined_tokens(text) for text in texts]
    return [_joined_tokens(t) if doc is None else doc for t, doc in zip(texts, native, strict=True)]


def _document_text(chunk: Chunk) -> str:
    return f"{chunk.path}\n{chunk.symbol or ''}\n{chunk.text}"


def search_document(chunk: Chunk) -> str:
    """The BM25 document of a chunk: its path and symbol count as words of its text."""
    if chunk.search_text is not None:
        return chunk.search_text
    return _joined_tokens(_document_text(chunk))


@cache
def _native_tokenizer() -> codeflow_native.CodeTokenizer:
    assert codeflow_native is not None
    return codeflow_native.CodeTokenizer(sorted(STOP_WORDS), _MAX_TOKEN_CHARS)


def search_documents(chunks: Sequence[Chunk]) -> list[str]:
    """:func:`search_document` of each chunk. Texts that are all ASCII (most code) are
    tokenized by the native extension when it is built: the same tokens, several times
    faster (benchmarks/RESULTS.md)."""
    if not native_available():
        return [search_document(c) for c in chunks]
    docs = [c.search_text for c in chunks]
    todo = [i for i, doc in enumerate(docs) if doc is None]
    texts = [_document_text(chunks[i]) for i in todo]
    for i, text, doc in zip(todo, texts, _native_tokenizer().joined_tokens(texts), strict=True):
        docs[i] = _joined_tokens(text) if doc is None else doc
    return cast(list[str], docs)
