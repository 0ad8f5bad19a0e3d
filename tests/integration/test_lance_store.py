"""What is particular to LanceStore (real LanceDB in tmp_path, real LocalEmbedder); what every
store must do is in ``test_backends_shared.py``, which runs it against LanceDB too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from config.errors import ConfigError, VectorStoreError
from tasks.embedding.local_embedder import LocalEmbedder
from tasks.records import Chunk
from tasks.vectors.lance_store import LanceStore, _load_matrix, _Matrix, _reload_matrix, table_name
from tests.store_support import NS, put, snippets, synthetic


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LanceStore]:
    yield LanceStore(tmp_path / "lancedb", dimensions=256)


def test_lance_vector_search_agrees_with_the_matrix(
    tmp_path: Path, store: LanceStore, embedder: LocalEmbedder
) -> None:
    put(store, embedder, snippets())
    plain = LanceStore(tmp_path / "lancedb", dimensions=256, cache_vectors=False)
    query = embedder.embed(["http server serving requests"])[0]
    ours, theirs = store.query(NS, query, 4), plain.query(NS, query, 4)
    assert [h.id for h in ours] == [h.id for h in theirs]
    assert [h.score for h in ours] == pytest.approx([h.score for h in theirs], abs=1e-4)


def test_rows_written_after_the_index_are_searchable(
    store: LanceStore, embedder: LocalEmbedder
) -> None:
    put(store, embedder, snippets())
    late = Chunk("app/late.py", "python", 1, 2, "def quux_frobnicate():\n    pass", "quux")
    put(store, embedder, [late])
    assert [h.id for h in store.text_search(NS, ["frobnicate"], 5)] == [late.id]
    assert store.query(NS, embedder.embed([late.text])[0], 1)[0].id == late.id
    store.optimize(NS)  # compaction moves rows: the matrix must be read again
    assert [h.id for h in store.text_search(NS, ["frobnicate"], 5)] == [late.id]
    hits = store.query(NS, embedder.embed([late.text])[0], 5)
    assert hits[0].id == late.id and hits[0].text == late.text
    assert len({h.id for h in hits}) == len(hits) == 5
    table = store._open(NS)
    assert table is not None  # a small table ends with every row in the text index
    assert table.index_stats("tokens_idx").num_unindexed_rows == 0


def test_candidates_follow_rows_written_or_moved_after_the_matrix_was_read(
    tmp_path: Path, embedder: LocalEmbedder
) -> None:
    reader, writer = (LanceStore(tmp_path / "db", dimensions=256) for _ in range(2))
    chunks = snippets()
    put(writer, embedder, chunks)
    [first] = reader.text_search(NS, ["fibonacci"], 5, with_text=False)  # matrix read here
    late = Chunk("app/late.py", "python", 1, 2, "def quux_fibonacci():\n    pass", "quux")
    put(writer, embedder, [late])
    writer.optimize(NS)  # compaction gives every row a new address
    lexical = reader.text_search(NS, ["fibonacci"], 5, with_text=False)
    assert {h.id for h in lexical} == {first.id, late.id}
    assert {h.text for h in reader.with_text(NS, lexical)} == {chunks[2].text, late.text}
    # Texts of hits the cached matrix does not hold are read by id.
    stale = LanceStore(tmp_path / "db", dimensions=256)
    stale.query(NS, embedder.embed(["x"])[0], 1)
    put(writer, embedder, [replace(late, path="app/later.py")])
    newest = writer.text_search(NS, ["quux"], 5, with_text=False)
    assert sorted(h.text for h in stale.with_text(NS, newest)) == [late.text, late.text]


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


def test_a_table_of_other_dimensions_is_refused_on_open(
    tmp_path: Path, store: LanceStore, embedder: LocalEmbedder
) -> None:
    put(store, embedder, snippets())
    with pytest.raises(VectorStoreError, match="256-dim"):
        LanceStore(tmp_path / "lancedb", dimensions=64).count(NS)


def test_table_names_are_safe_and_distinct() -> None:
    names = {table_name(ns) for ns in ("a/b@main", "a_b@main", "a b@main", "../../etc@x")}
    assert len(names) == 4
    assert all(n.replace("-", "").replace("_", "").replace(".", "").isalnum() for n in names)
    with pytest.raises(ConfigError):
        table_name("")


def test_optimize_folds_and_compacts_small_tables_but_waits_on_large_ones() -> None:
    """The end-of-run upkeep: always on small tables, only when due on large ones."""
    from types import SimpleNamespace

    from tasks.vectors.lance_tables import _fold_due

    def stats(indexed: int, unindexed: int) -> SimpleNamespace:
        return SimpleNamespace(num_indexed_rows=indexed, num_unindexed_rows=unindexed)

    assert _fold_due(stats(1_000, 10))  # small table: always
    assert not _fold_due(stats(1_000, 0))  # nothing new
    assert not _fold_due(stats(200_000, 2_000))  # 1% of a large table: wait
    assert _fold_due(stats(200_000, 30_000))  # over a tenth: fold
    assert not _fold_due(None)


def _same(reloaded: _Matrix, whole: _Matrix) -> None:
    assert reloaded.version == whole.version
    assert np.array_equal(reloaded.vectors, whole.vectors)
    assert reloaded.columns == whole.columns and reloaded.positions == whole.positions
    assert np.array_equal(reloaded.addresses, whole.addresses)
    assert np.array_equal(reloaded.by_address, whole.by_address)
    assert reloaded.fragments == whole.fragments


def test_a_matrix_read_again_after_writes_equals_one_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After each kind of write, reusing the rows the last matrix holds gives exactly the
    matrix a fresh read gives: appends, re-upserts with new vectors, deletes, a table dropped
    and written again by another store (fragment ids start over, with other data), and
    compaction (every row moves)."""
    rng = np.random.default_rng(3)
    chunks = synthetic(400)
    store, other = (LanceStore(tmp_path / "db", dimensions=8) for _ in range(2))

    def vectors(n: int) -> NDArray[np.float32]:
        return rng.standard_normal((n, 8), dtype=np.float32)

    def recreate() -> None:  # the same row addresses as before, holding other rows
        other.drop(NS)
        other.append(NS, chunks[200:400], vectors(200))

    def dataset() -> Any:
        table = LanceStore(tmp_path / "db", dimensions=8)._open(NS)
        assert table is not None
        return table.to_lance()

    writes: list[Callable[[], object]] = [
        recreate,
        lambda: other.append(NS, chunks[:60], vectors(60)),
        lambda: other.upsert(NS, chunks[210:230], vectors(20)),  # same ids, new vectors
        lambda: other.delete(NS, [c.id for c in chunks[240:290]]),
        lambda: other.upsert(NS, chunks[60:100], vectors(40)),
        lambda: other.optimize(NS),
        lambda: other.append(NS, chunks[100:105], vectors(5)),
    ]
    store.append(NS, chunks[:200], vectors(200))
    matrix = _load_matrix(dataset(), 8)
    read_whole: list[int] = []

    def counted(data: Any, dimensions: int) -> _Matrix:
        read_whole.append(len(read_whole))
        return _load_matrix(data, dimensions)

    monkeypatch.setattr("tasks.vectors.lance_store._load_matrix", counted)
    for step, write in enumerate(writes):
        write()
        read_whole.clear()
        reloaded = _reload_matrix(matrix, dataset(), 8)
        _same(reloaded, _load_matrix(dataset(), 8))
        # Read whole only when the rows are other data or have all moved.
        assert bool(read_whole) is (write in (recreate, writes[5])), step
        matrix = reloaded


@pytest.mark.parametrize("cache_vectors", [True, False])
def test_full_text_hits_of_equal_score_come_in_id_order(
    tmp_path: Path, embedder: LocalEmbedder, cache_vectors: bool
) -> None:
    """Duplicate chunks score the same; LanceDB returns them in no fixed order, and fusion
    works on ranks, so the store orders ties by id, also at the cut: with a margin of
    ``TIE_MARGIN`` rows fetched beyond the limit, the 20 lowest ids of 30 tied rows."""
    store = LanceStore(tmp_path / "lancedb", dimensions=256, cache_vectors=cache_vectors)
    text = "def frobnicate_widget(widget):\n    return widget.frobnicate()"
    copies = [
        Chunk(f"pkg/mod{n}.py", "python", 1, 2, text, "frobnicate_widget") for n in range(10, 40)
    ]
    put(store, embedder, copies)
    hits = store.text_search(NS, ["frobnicate"], 20)
    assert len(hits) == 20 and len({h.score for h in hits}) == 1  # all tied
    assert [h.id for h in hits] == sorted(c.id for c in copies)[:20]
