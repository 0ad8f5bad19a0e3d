"""code_tokens: identifier splitting for BM25 (pure, no daemons)."""

from __future__ import annotations

from itertools import chain

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.records import Chunk
from tasks.tokens.code_tokens import (
    _WORD,
    STOP_WORDS,
    _expand,
    code_tokens,
    search_document,
    unique_tokens,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("getUserName", ["getusername", "get", "user", "name"]),
        ("HTTPServer", ["httpserver", "http", "server"]),
        ("XMLHttpRequest", ["xmlhttprequest", "xml", "http", "request"]),
        ("parse_json_v2", ["parse_json_v2", "parse", "json", "v2"]),
        ("MAX_RETRIES = 3", ["max_retries", "max", "retries"]),
        ("IOError", ["ioerror", "io", "error"]),
        ("sha256sum", ["sha256sum", "sha", "256", "sum"]),
        ("__init__", ["init"]),
        ("kebab-case-name", ["kebab", "case", "name"]),
        ("über_Größe", ["über_größe", "über", "größe"]),
    ],
)
def test_identifiers_split_like_programmers_read_them(text: str, expected: list[str]) -> None:
    assert code_tokens(text) == expected


def test_stop_words_and_one_character_noise_are_dropped() -> None:
    tokens = code_tokens("def f(self, x): return x if x is not None else y")
    assert tokens == []
    assert "get" not in STOP_WORDS  # domain verbs stay searchable


def test_term_frequency_is_kept_for_bm25() -> None:
    assert code_tokens("load(); load(); loadAll()").count("load") == 3


def test_unique_tokens_keeps_first_seen_order() -> None:
    assert unique_tokens(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


@given(st.text(max_size=400))
def test_never_crashes_and_tokens_are_lowercase_words(text: str) -> None:
    tokens = code_tokens(text)
    for token in tokens:
        assert token == token.lower()
        assert len(token) > 1
        assert not any(ch.isspace() for ch in token)
        assert token not in STOP_WORDS


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=300))
def test_tokenizing_tokens_again_is_stable(text: str) -> None:
    """A query made of index tokens finds the same terms: re-tokenizing is a fixed point.

    (Case is lost by lower-casing, so the fixed point is reached from the lower-cased text.)
    """
    tokens = set(code_tokens(text.lower()))
    assert set(code_tokens(" ".join(sorted(tokens)))) == tokens


@given(st.from_regex(r"[a-z]{2,8}(_[a-z]{2,8}){0,3}", fullmatch=True))
def test_snake_case_keeps_whole_and_parts(identifier: str) -> None:
    tokens = code_tokens(identifier)
    parts = [p for p in identifier.split("_") if p not in STOP_WORDS]
    if identifier not in STOP_WORDS:
        assert tokens[0] == identifier
    assert set(parts) <= set(tokens)


def _words_then_tokens(text: str) -> list[str]:
    """The definition code_tokens implements faster: every word of the whole text, in order,
    expanded into its tokens."""
    return list(chain.from_iterable(map(_expand, _WORD.findall(text))))


# Text with what cuts it into runs (spaces, ASCII punctuation) and what does not (non-ASCII
# punctuation, marks, other scripts' letters and digits, underscores).
_MIXED = st.text(
    alphabet=st.one_of(
        st.characters(codec="ascii"),
        st.sampled_from("→—\uff08\uff09·•«»…éÉßİıǅⅫ٣𝔘\u0301\u00a0\u2028\u3000\x1c"),
        st.characters(),
    ),
    max_size=300,
)


@given(_MIXED)
def test_run_by_run_tokens_equal_the_words_of_the_whole_text(text: str) -> None:
    assert code_tokens(text) == _words_then_tokens(text)
    chunk = Chunk("pkg/mod.py", "python", 1, 2, text, "someSymbol")
    expected = _words_then_tokens(f"pkg/mod.py\nsomeSymbol\n{text}")
    assert search_document(chunk) == " ".join(expected)


def test_lone_surrogates_pass_through() -> None:
    text = "bad\ud800name getUser\udfff_x"
    assert (
        code_tokens(text) == _words_then_tokens(text) == ["bad", "name", "getuser", "get", "user"]
    )
