"""Hybrid search over a real LanceDB with the real, offline LocalEmbedder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from config.errors import ConfigError, VectorStoreError
from tasks.embedding.hashing_embedder import HashingEmbedder
from tasks.embedding.local_embedder import LocalEmbedder
from tasks.records import Chunk, ChunkKind
from tasks.search.hybrid import LOCAL_SEMANTIC_WEIGHT, hybrid_search, semantic_weight_for
from tasks.tokens.code_tokens import code_tokens
from tasks.vectors.lance_store import LanceStore
from tests.store_support import SHOP

NS = "acme/shop@main"


def corpus() -> list[Chunk]:
    chunks = []
    for (path, symbol), source in SHOP.items():
        text = textwrap.dedent(source).strip()
        kind: ChunkKind = "module" if symbol is None else "function"
        chunks.append(Chunk(path, "python", 1, text.count("\n") + 1, text, symbol, kind))
    return chunks


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> LanceStore:
    store = LanceStore(tmp_path_factory.mktemp("search") / "lancedb", dimensions=256)
    chunks = corpus()
    store.upsert(NS, chunks, embedder.embed([f"{c.path}\n{c.text}" for c in chunks]))
    return store


def top(query: str, store: LanceStore, embedder: LocalEmbedder, limit: int = 3) -> list[str]:
    hits = hybrid_search(query, store=store, embedder=embedder, namespace=NS, limit=limit)
    return [h.path for h in hits]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("load_settings", "shop/config.py"),  # exact identifier
        ("HTTPClient", "shop/http.py"),  # identifier part of a qualified symbol
        ("total price", "shop/cart.py"),  # definition above its test
        ("hash a password", "shop/auth.py"),
        ("read the configuration file", "shop/config.py"),  # words from a docstring
        ("exponential backoff when the connection fails", "shop/retry.py"),  # semantic
        ("fetch json from a url", "shop/http.py"),
    ],
)
def test_hybrid_search_finds_the_right_chunk(
    query: str, expected: str, store: LanceStore, embedder: LocalEmbedder
) -> None:
    assert top(query, store, embedder)[0] == expected


def test_hits_are_complete_and_scores_descend(store: LanceStore, embedder: LocalEmbedder) -> None:
    hits = hybrid_search("cart total", store=store, embedder=embedder, namespace=NS, limit=5)
    assert 1 <= len(hits) <= 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    first = hits[0]
    assert (first.path, first.start_line, first.symbol) == ("shop/cart.py", 1, "Cart.total_price")
    assert first.text.startswith("class Cart") and first.language == "python"
    tests_rank = [h.path for h in hits].index("tests/test_cart.py")
    assert tests_rank > 0


def test_bad_queries_fail_clearly(store: LanceStore, embedder: LocalEmbedder) -> None:
    with pytest.raises(ConfigError, match="empty"):
        hybrid_search("   ", store=store, embedder=embedder, namespace=NS)
    with pytest.raises(ConfigError, match="limit"):
        hybrid_search("cart", store=store, embedder=embedder, namespace=NS, limit=0)
    with pytest.raises(VectorStoreError, match="dim"):
        hybrid_search("cart", store=store, embedder=HashingEmbedder(64), namespace=NS)


def test_unknown_namespace_returns_nothing(store: LanceStore, embedder: LocalEmbedder) -> None:
    assert hybrid_search("cart", store=store, embedder=embedder, namespace="nope@main") == []


def test_stop_word_only_query_still_uses_vectors(
    store: LanceStore, embedder: LocalEmbedder
) -> None:
    assert top("if the", store, embedder)  # no BM25 terms left, semantic half answers


def test_the_vector_half_weighs_what_suits_the_embedder(
    store: LanceStore, embedder: LocalEmbedder
) -> None:
    assert semantic_weight_for(embedder.id) == LOCAL_SEMANTIC_WEIGHT < 1.0
    assert semantic_weight_for(HashingEmbedder(256).id) == 1.0
    # At weight 0 the vectors only add candidates: what BM25 did not find scores nothing.
    query = "cart price total"
    lexical = {h.id for h in store.text_search(NS, code_tokens(query), 50)}
    for weight in (0.0, None):
        hits = hybrid_search(query, store=store, embedder=embedder, namespace=NS, limit=20,
                             semantic_weight=weight)  # fmt: skip
        others = [h.score for h in hits if h.id not in lexical]
        assert others and all(h.score > 0 for h in hits if h.id in lexical)
        assert (max(others) == 0.0) is (weight == 0.0)


def test_local_embedder_rows_are_normalised_and_deterministic(embedder: LocalEmbedder) -> None:
    texts = ["def add(a, b): return a + b", "class Stack:\n    def push(self, x): ..."]
    first, second = embedder.embed(texts), embedder.embed(list(reversed(texts)))
    assert first.dtype == np.float32 and first.shape == (2, 256)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, second[::-1])
    assert embedder.id == "wordllama:l2_supercat+words:256"
    assert embedder.embed([]).shape == (0, 256)


@pytest.mark.parametrize("dimensions", [64, 128])
def test_local_embedder_truncates_matryoshka_dimensions(dimensions: int) -> None:
    small = LocalEmbedder(dimensions=dimensions)
    vectors = small.embed(["def parse(path): ...", "def parse_file(path): ..."])
    assert vectors.shape == (2, dimensions) and small.id.endswith(f":{dimensions}")
    assert float(vectors[0] @ vectors[1]) > 0.5
    with pytest.raises(ConfigError):
        LocalEmbedder(dimensions=100)


def test_hashing_embedder_is_deterministic_across_processes() -> None:
    vector = HashingEmbedder(64).embed(["getUserName(user_id)"])[0]
    code = (
        "from tasks.embedding.hashing_embedder import HashingEmbedder as H; "
        "print(H(64).embed(['getUserName(user_id)'])[0].tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert np.allclose(vector, json.loads(out.stdout))


def test_local_embedder_works_with_no_network(tmp_path: Path) -> None:
    """Any socket connect raises, proxies point nowhere, HOME is empty: it still embeds."""
    script = textwrap.dedent(
        """
        import json, socket
        def refuse(*args, **kwargs):
            raise OSError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from tasks.embedding.local_embedder import LocalEmbedder
        vectors = LocalEmbedder().embed(["def main(): pass"])
        print(json.dumps({"shape": list(vectors.shape), "norm": float((vectors ** 2).sum())}))
        """
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().endswith("_PROXY") and not key.startswith(("HF_", "TRANSFORMERS_"))
    }
    env.update(
        HOME=str(tmp_path),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shape"] == [1, 256]
    assert report["norm"] == pytest.approx(1.0, abs=1e-5)
    assert not (tmp_path / ".cache" / "wordllama").exists()
