"""LanceStore against a real LanceDB in tmp_path, with the real LocalEmbedder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tasks.codetokens import code_tokens
from tasks.embedders import LocalEmbedder
from tasks.errors import ConfigError, VectorStoreError
from tasks.lance_store import LanceStore, table_name
from tasks.records import Chunk
from tasks.search import VectorStore

NS = "github.com/acme/app@main"


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LanceStore]:
    yield LanceStore(tmp_path / "lancedb", dimensions=256)


def snippets() -> list[Chunk]:
    sources = {
        "app/config.py": (
            "load_config",
            "def load_config(path):\n    return json.load(open(path))",
        ),
        "app/server.py": ("HTTPServer", "class HTTPServer:\n    def serve_forever(self): ..."),
        "app/maths.py": ("fibonacci", "def fibonacci(n):\n    a, b = 0, 1\n    return a"),
        "app/text.py": ("slugify", "def slugify(title):\n    return re.sub('[^a-z]+', '-', title)"),
    }
    return [
        Chunk(path, "python", 1, 3, text, symbol, "function")
        for path, (symbol, text) in sources.items()
    ]


def synthetic(n: int) -> list[Chunk]:
    return [
        Chunk(f"gen/m{i // 50}.py", "python", i, i + 1, f"def handler_{i}(event):\n    return {i}")
        for i in range(n)
    ]


def put(store: LanceStore, embedder: LocalEmbedder, chunks: list[Chunk], ns: str = NS) -> None:
    store.upsert(ns, chunks, embedder.embed([c.text for c in chunks]))


def test_store_satisfies_the_protocol(store: LanceStore) -> None:
    backend: VectorStore = store
    assert backend.count(NS) == 0


def test_upsert_twice_keeps_one_row_per_id(store: LanceStore, embedder: LocalEmbedder) -> None:
    chunks = snippets()
    put(store, embedder, chunks)
    put(store, embedder, chunks)
    put(store, embedder, chunks + chunks[:2])  # duplicates inside one batch too
    assert store.count(NS) == len(chunks)
    assert store.ids(NS) == {c.id for c in chunks}


def test_delete_2500_ids_in_batches(store: LanceStore, embedder: LocalEmbedder) -> None:
    chunks = synthetic(3000)
    put(store, embedder, chunks)
    doomed = [c.id for c in chunks[:2500]]
    store.delete(NS, [*doomed, "not-an-id", "it's quoted"])
    assert store.count(NS) == 500
    assert store.ids(NS) == {c.id for c in chunks[2500:]}
    store.delete(NS, doomed)  # repeating a delete is harmless
    assert store.count(NS) == 500


def test_vector_query_finds_the_nearest_chunk(store: LanceStore, embedder: LocalEmbedder) -> None:
    chunks = snippets()
    put(store, embedder, chunks)
    target = chunks[2]
    hits = store.query(NS, embedder.embed([target.text])[0], limit=3)
    assert hits[0].id == target.id
    assert hits[0].path == "app/maths.py" and hits[0].symbol == "fibonacci"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_lance_vector_search_agrees_with_the_matrix(
    tmp_path: Path, store: LanceStore, embedder: LocalEmbedder
) -> None:
    put(store, embedder, snippets())
    plain = LanceStore(tmp_path / "lancedb", dimensions=256, cache_vectors=False)
    query = embedder.embed(["http server serving requests"])[0]
    ours, theirs = store.query(NS, query, 4), plain.query(NS, query, 4)
    assert [h.id for h in ours] == [h.id for h in theirs]
    assert [h.score for h in ours] == pytest.approx([h.score for h in theirs], abs=1e-4)


def test_text_search_uses_code_tokens(store: LanceStore, embedder: LocalEmbedder) -> None:
    put(store, embedder, snippets())
    hits = store.text_search(NS, code_tokens("serve forever"), limit=5)
    assert hits and hits[0].path == "app/server.py"
    assert store.text_search(NS, code_tokens("http"), limit=5)[0].symbol == "HTTPServer"
    assert store.text_search(NS, [], limit=5) == []


def test_rows_written_after_the_index_are_searchable(
    store: LanceStore, embedder: LocalEmbedder
) -> None:
    put(store, embedder, snippets())
    late = Chunk("app/late.py", "python", 1, 2, "def quux_frobnicate():\n    pass", "quux")
    put(store, embedder, [late])
    assert [h.id for h in store.text_search(NS, ["frobnicate"], 5)] == [late.id]
    assert store.query(NS, embedder.embed([late.text])[0], 1)[0].id == late.id
    store.optimize(NS)
    assert [h.id for h in store.text_search(NS, ["frobnicate"], 5)] == [late.id]
    table = store._open(NS)
    assert table is not None  # a small table ends with every row in the text index
    assert table.index_stats("tokens_idx").num_unindexed_rows == 0


def test_namespaces_are_isolated(store: LanceStore, embedder: LocalEmbedder) -> None:
    chunks = snippets()
    put(store, embedder, chunks[:2], ns="repo@main")
    put(store, embedder, chunks[2:], ns="repo@feature/x")
    assert store.ids("repo@main") == {c.id for c in chunks[:2]}
    assert store.ids("repo@feature/x") == {c.id for c in chunks[2:]}
    assert store.text_search("repo@main", ["fibonacci"], 5) == []
    store.drop("repo@feature/x")
    assert store.count("repo@feature/x") == 0
    assert store.count("repo@main") == 2


def test_reopened_store_and_other_instances_see_the_data(
    tmp_path: Path, embedder: LocalEmbedder
) -> None:
    writer = LanceStore(tmp_path / "db", dimensions=256)
    reader = LanceStore(tmp_path / "db", dimensions=256)
    chunks = snippets()
    put(writer, embedder, chunks[:2])
    assert reader.query(NS, embedder.embed([chunks[0].text])[0], 1)[0].id == chunks[0].id
    put(writer, embedder, chunks[2:])
    writer.delete(NS, [chunks[0].id])
    # The reader cached its vector matrix; it must notice the new table version.
    top = reader.query(NS, embedder.embed([chunks[3].text])[0], 10)
    assert top[0].id == chunks[3].id
    assert chunks[0].id not in {h.id for h in top}
    assert LanceStore(tmp_path / "db", dimensions=256).count(NS) == 3


def test_unknown_namespace_is_empty(store: LanceStore) -> None:
    assert store.count("nobody@main") == 0
    assert store.ids("nobody@main") == set()
    assert store.query("nobody@main", np.full(256, 1 / 16, dtype=np.float32), 5) == []
    assert store.text_search("nobody@main", ["x"], 5) == []
    store.delete("nobody@main", ["x"])
    store.drop("nobody@main")


def test_dimension_mismatches_are_refused(
    tmp_path: Path, store: LanceStore, embedder: LocalEmbedder
) -> None:
    chunks = snippets()
    with pytest.raises(VectorStoreError, match="shape"):
        store.upsert(NS, chunks, np.zeros((len(chunks), 64), dtype=np.float32))
    put(store, embedder, chunks)
    with pytest.raises(VectorStoreError, match="256-dim"):
        LanceStore(tmp_path / "lancedb", dimensions=64).count(NS)
    with pytest.raises(VectorStoreError, match="dims"):
        store.query(NS, np.zeros(64, dtype=np.float32), 3)


def test_table_names_are_safe_and_distinct() -> None:
    names = {table_name(ns) for ns in ("a/b@main", "a_b@main", "a b@main", "../../etc@x")}
    assert len(names) == 4
    assert all(n.replace("-", "").replace("_", "").replace(".", "").isalnum() for n in names)
    with pytest.raises(ConfigError):
        table_name("")


def test_optimize_folds_and_compacts_small_tables_but_waits_on_large_ones() -> None:
    """The end-of-run upkeep: always on small tables, only when due on large ones."""
    from types import SimpleNamespace

    from tasks.lance_tables import _fold_due

    def stats(indexed: int, unindexed: int) -> SimpleNamespace:
        return SimpleNamespace(num_indexed_rows=indexed, num_unindexed_rows=unindexed)

    assert _fold_due(stats(1_000, 10))  # small table: always
    assert not _fold_due(stats(1_000, 0))  # nothing new
    assert not _fold_due(stats(200_000, 2_000))  # 1% of a large table: wait
    assert _fold_due(stats(200_000, 30_000))  # over a tenth: fold
    assert not _fold_due(None)
