"""PieceTokenizer gives exactly the IDs of WordLlama's own tokenizer, and refuses tokenizers
for which its piece-splitting would not be exact."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from tasks.embedding.local_embedder import LocalEmbedder, load_stock_wordllama
from tasks.tokens.code_tokens import code_tokens
from tasks.tokens.piece_tokens import PieceTokenizer

EDGE_CASES = [
    "",
    " ",
    "   ",
    "x",
    " leading and trailing ",
    "\n\n\t\tindented\r\n",
    "def parse(path: str) -> dict:\n    return json.loads(Path(path).read_text())  # ok\n",
    "ünïcødé ✓ 漢字 🙂 \x00\x01\ufffd",
    "\u2581already\u2581 visible\u2581\u2581spaces",
    "a" * 3000,
    " ".join(["self"] * 500),
    "html = '<s>struck</s>'  # <unk> too",  # special tokens' text: the tokenizer matches it
    "</s>",
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return LocalEmbedder()._tokenizer


@pytest.fixture(scope="module")
def pieces(tokenizer: Any) -> PieceTokenizer:
    found = PieceTokenizer.for_tokenizer(tokenizer)
    assert found is not None, "WordLlama's tokenizer should qualify"
    return found


def reference(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False).ids
    return ids


def test_edge_cases_match_the_tokenizer(tokenizer: Any, pieces: PieceTokenizer) -> None:
    assert pieces.encode_batch(EDGE_CASES) == [reference(tokenizer, t) for t in EDGE_CASES]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=8))
def test_random_texts_match_the_tokenizer(
    tokenizer: Any, pieces: PieceTokenizer, texts: list[str]
) -> None:
    assert pieces.encode_batch(texts) == [reference(tokenizer, t) for t in texts]


def test_memo_that_starts_over_still_answers_exactly(tokenizer: Any) -> None:
    small = PieceTokenizer(tokenizer, max_pieces=3)
    texts = ["alpha beta gamma delta", "epsilon zeta alpha", "alpha beta gamma delta"]
    assert small.encode_batch(texts) == [reference(tokenizer, t) for t in texts]


def test_a_text_the_model_cannot_take_leaves_the_memo_consistent(tokenizer: Any) -> None:
    fresh = PieceTokenizer(tokenizer)
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate: LocalEmbedder replaces it
        fresh.encode_batch(["fine words \udcff"])
    texts = ["fine words", "words fine again"]
    assert fresh.encode_batch(texts) == [reference(tokenizer, t) for t in texts]


def test_a_vocabulary_with_merges_across_spaces_is_refused(tokenizer: Any) -> None:
    spec = json.loads(tokenizer.to_str())
    spec["model"]["vocab"]["x\u2581y"] = len(spec["model"]["vocab"])
    assert PieceTokenizer.for_tokenizer(Tokenizer.from_str(json.dumps(spec))) is None


def test_a_tokenizer_with_a_pre_tokenizer_is_refused(tokenizer: Any) -> None:
    spec = json.loads(tokenizer.to_str())
    spec["pre_tokenizer"] = {"type": "Whitespace"}
    assert PieceTokenizer.for_tokenizer(Tokenizer.from_str(json.dumps(spec))) is None


@pytest.mark.parametrize("dimensions", [64, 128, 256])
def test_local_embedder_equals_wordllamas_own_embed(dimensions: int) -> None:
    """Loading the packaged files directly and the fast path (pieces, no padding) give
    WordLlama's own normalised vectors of the texts' code tokens (text without tokens: 0)."""
    model = load_stock_wordllama(dimensions)
    texts = [*EDGE_CASES[1:], "class Cache:\n    def get(self, key): ...\n"]
    words = [" ".join(code_tokens(text)) for text in texts]
    ours = LocalEmbedder(dimensions=dimensions).embed(texts)
    assert ours.shape == (len(texts), dimensions)
    for row, word in zip(ours, words, strict=True):
        expected = model.embed([word], norm=True)[0] if word else np.zeros(dimensions)
        assert abs(row - expected).max() < 1e-5
