"""One backend suite, run against every store and every embedder codeflow ships.

Stores: LanceStore (embedded LanceDB) and PineconeStore (the official ``pinecone`` client
against the local Pinecone protocol server). Embedders: LocalEmbedder (WordLlama) and
OpenAIEmbedder (the official ``openai`` client against the local OpenAI protocol server).
The same assertions hold for each: that is what makes them interchangeable by settings.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from config.errors import VectorStoreError
from tasks.embedding import Embedder
from tasks.embedding.local_embedder import LocalEmbedder
from tasks.embedding.openai_embedder import OpenAIEmbedder
from tasks.records import Chunk
from tasks.search.hybrid import hybrid_search
from tasks.tokens.code_tokens import code_tokens
from tasks.vectors import HybridStore, VectorStore
from tasks.vectors.lance_store import LanceStore
from tasks.vectors.pinecone_store import PineconeStore
from tests.fakes.openai_server import OpenAIFake
from tests.fakes.pinecone_server import PineconeFake
from tests.store_support import NS, SHOP, put, snippets, synthetic

OPENAI_KEY = "sk-test-shared-suite"
PINECONE_KEY = "pc-test-shared-suite"
Store = LanceStore | PineconeStore


@pytest.fixture(scope="module")
def local_embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture(params=["lancedb", "pinecone"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "lancedb":
        yield LanceStore(tmp_path / "lancedb", dimensions=256)
        return
    with PineconeFake(PINECONE_KEY, dimension=256) as fake:
        yield PineconeStore(
            api_key=PINECONE_KEY,
            index_name="codeflow",
            controller_host=fake.url,
            dimensions=256,
            catalog_dir=tmp_path / "catalog",
        )


@pytest.fixture(params=["local", "openai"])
def embedder(request: pytest.FixtureRequest, local_embedder: LocalEmbedder) -> Iterator[Embedder]:
    if request.param == "local":
        yield local_embedder
        return
    with OpenAIFake(OPENAI_KEY) as fake:
        yield OpenAIEmbedder(api_key=OPENAI_KEY, base_url=fake.base_url, dimensions=256)


# ---- stores ----------------------------------------------------------------------------


def test_store_satisfies_the_protocols(store: Store) -> None:
    writer: VectorStore = store
    reader: HybridStore = store
    assert writer.count(NS) == 0 and reader.dimensions == 256


def test_upsert_twice_keeps_one_row_per_id(store: Store, local_embedder: LocalEmbedder) -> None:
    chunks = snippets()
    put(store, local_embedder, chunks)
    put(store, local_embedder, chunks)
    put(store, local_embedder, chunks + chunks[:2])  # duplicates inside one batch too
    assert store.count(NS) == len(chunks)
    assert store.ids(NS) == {c.id for c in chunks}


def test_delete_2500_ids_in_batches(store: Store, local_embedder: LocalEmbedder) -> None:
    chunks = synthetic(3000)
    put(store, local_embedder, chunks)
    assert store.count(NS) == 3000
    doomed = [c.id for c in chunks[:2500]]
    store.delete(NS, [*doomed, "not-an-id", "it's quoted"])
    assert store.count(NS) == 500
    assert store.ids(NS) == {c.id for c in chunks[2500:]}
    store.delete(NS, doomed)  # repeating a delete is harmless
    assert store.count(NS) == 500


def test_vector_query_finds_the_nearest_chunk(store: Store, local_embedder: LocalEmbedder) -> None:
    chunks = snippets()
    put(store, local_embedder, chunks)
    target = chunks[2]
    hits = store.query(NS, local_embedder.embed([target.text])[0], limit=3)
    assert hits[0].id == target.id and hits[0].text == target.text
    assert hits[0].path == "app/maths.py" and hits[0].symbol == "fibonacci"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_text_search_uses_code_tokens(store: Store, local_embedder: LocalEmbedder) -> None:
    put(store, local_embedder, snippets())
    hits = store.text_search(NS, code_tokens("serve forever"), limit=5)
    assert hits and hits[0].path == "app/server.py"
    assert store.text_search(NS, code_tokens("http"), limit=5)[0].symbol == "HTTPServer"
    assert store.text_search(NS, [], limit=5) == []


def test_namespaces_are_isolated(store: Store, local_embedder: LocalEmbedder) -> None:
    chunks = snippets()
    put(store, local_embedder, chunks[:2], ns="repo@main")
    put(store, local_embedder, chunks[2:], ns="repo@feature/x")
    assert store.ids("repo@main") == {c.id for c in chunks[:2]}
    assert store.ids("repo@feature/x") == {c.id for c in chunks[2:]}
    assert store.text_search("repo@main", ["fibonacci"], 5) == []
    query = local_embedder.embed([chunks[2].text])[0]
    assert chunks[2].id not in {h.id for h in store.query("repo@main", query, 10)}
    store.drop("repo@feature/x")
    assert store.count("repo@feature/x") == 0
    assert store.count("repo@main") == 2


def test_unknown_namespace_is_empty(store: Store) -> None:
    assert store.count("nobody@main") == 0
    assert store.ids("nobody@main") == set()
    assert store.query("nobody@main", np.full(256, 1 / 16, dtype=np.float32), 5) == []
    assert store.text_search("nobody@main", ["x"], 5) == []
    store.delete("nobody@main", ["x"])
    store.drop("nobody@main")


def test_wrong_shapes_are_refused(store: Store, local_embedder: LocalEmbedder) -> None:
    chunks = snippets()
    with pytest.raises(VectorStoreError, match="shape"):
        store.upsert(NS, chunks, np.zeros((len(chunks), 64), dtype=np.float32))
    put(store, local_embedder, chunks)
    with pytest.raises(VectorStoreError, match="dims"):
        store.query(NS, np.zeros(64, dtype=np.float32), 3)


def test_candidates_without_text_then_the_final_hits_with_it(
    store: Store, local_embedder: LocalEmbedder
) -> None:
    chunks = snippets()
    put(store, local_embedder, chunks)
    vector = local_embedder.embed(["http server"])[0]
    tokens = code_tokens("serve forever http")
    full = store.query(NS, vector, 3), store.text_search(NS, tokens, 3)
    bare = (
        store.query(NS, vector, 3, with_text=False),
        store.text_search(NS, tokens, 3, with_text=False),
    )
    for whole, light in zip(full, bare, strict=True):
        assert [replace(h, text="") for h in whole] == [replace(h, text="") for h in light]
        assert store.with_text(NS, light) == whole
    texts = {c.id: c.text for c in chunks}
    assert all(h.text == texts[h.id] for h in full[0] + full[1])
    gone = replace(full[0][0], id="not-stored", text="kept")
    assert store.with_text(NS, [gone]) == [gone]  # a row deleted meanwhile keeps its hit


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("load_settings", "shop/config.py"),
        ("HTTPClient", "shop/http.py"),
        ("total price", "shop/cart.py"),
    ],
)
def test_hybrid_search_over_every_pair(
    store: Store, embedder: Embedder, query: str, expected: str
) -> None:
    chunks = [
        Chunk(path, "python", 1, 5, textwrap.dedent(src).strip(), symbol, "function")
        for (path, symbol), src in SHOP.items()
    ]
    store.upsert(NS, chunks, embedder.embed([f"{c.path}\n{c.text}" for c in chunks]))
    hits = hybrid_search(query, store=store, embedder=embedder, namespace=NS, limit=3)
    assert hits[0].path == expected
    assert hits[0].text.startswith(("def", "class"))


# ---- embedders ---------------------------------------------------------------------------


def test_embedder_rows_are_normalised_ordered_and_deterministic(embedder: Embedder) -> None:
    texts = ["def add(a, b): return a + b", "class Stack:\n    def push(self, x): ..."]
    first, second = embedder.embed(texts), embedder.embed(list(reversed(texts)))
    assert first.dtype == np.float32 and first.shape == (2, embedder.dimensions)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.allclose(first, second[::-1], atol=1e-6)
    assert embedder.embed([]).shape == (0, embedder.dimensions)
    assert embedder.id.endswith(str(embedder.dimensions)) or f":{embedder.dimensions}@" in (
        embedder.id
    )


def test_embedder_puts_shared_identifiers_close(embedder: Embedder) -> None:
    parse, parse_file, other = embedder.embed(
        [
            "def parse_config(path): return load(path)",
            "def parse_config_file(path): return load(path)",
            "SELECT name FROM users WHERE age > 30",
        ]
    )
    assert float(parse @ parse_file) > float(parse @ other)


def test_embedder_never_drops_a_long_input(embedder: Embedder) -> None:
    long_text = "\n".join(f"def handler_{i}(event): return event.value + {i}" for i in range(3000))
    vectors = embedder.embed(["def short(): pass", long_text])
    assert vectors.shape == (2, embedder.dimensions)
    assert np.linalg.norm(vectors[1]) == pytest.approx(1.0, abs=1e-5)
