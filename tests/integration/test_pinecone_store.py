"""PineconeStore: the official ``pinecone`` client against the local Pinecone protocol server.

Request limits, metadata size, filters, the dimension check and fault handling are measured
at the server: what it received, in how many requests, of what size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from config.errors import ConfigError, VectorStoreError
from tasks.embedding.hashing_embedder import HashingEmbedder
from tasks.records import Chunk
from tasks.vectors.pinecone_store import PineconeStore, pinecone_namespace
from tests.fakes.http_fake import Fault
from tests.fakes.pinecone_server import MAX_METADATA_BYTES, PineconeFake

KEY = "pc-test-pinecone-store"
NS = "github.com/acme/app@main"


@pytest.fixture
def fake() -> Iterator[PineconeFake]:
    with PineconeFake(KEY, dimension=64) as server:
        yield server


def open_store(fake: PineconeFake, tmp_path: Path, dimensions: int = 64) -> PineconeStore:
    return PineconeStore(
        api_key=KEY,
        index_name="codeflow",
        controller_host=fake.url,
        dimensions=dimensions,
        catalog_dir=tmp_path / "catalog",
    )


def chunks(n: int, language: str = "python") -> list[Chunk]:
    return [
        Chunk(f"pkg/m{i // 20}.py", language, i, i + 2, f"def handler_{i}(event):\n    return {i}")
        for i in range(n)
    ]


def vectors_for(items: list[Chunk], dims: int = 64) -> NDArray[np.float32]:
    return HashingEmbedder(dims).embed([c.text for c in items])


def test_upserts_stay_within_record_and_byte_caps(tmp_path: Path) -> None:
    with PineconeFake(KEY, dimension=1536) as wide:
        store = open_store(wide, tmp_path, dimensions=1536)
        items = chunks(1200)
        rng = np.random.default_rng(7)
        store.upsert(NS, items, rng.standard_normal((1200, 1536)).astype(np.float32))
        sizes = wide.upsert_sizes
        assert sum(n for n, _ in sizes) == 1200 and len(sizes) >= 10
        assert all(n <= 1000 and size <= 2 * 1024 * 1024 for n, size in sizes)
        assert len(wide.all_ids(NS)) == 1200

    with PineconeFake(KEY, dimension=8) as narrow:
        store = open_store(narrow, tmp_path / "narrow", dimensions=8)
        store.upsert(NS, chunks(2500), vectors_for(chunks(2500), 8))
        assert [n for n, _ in narrow.upsert_sizes] == [1000, 1000, 500]


def test_deletes_go_in_batches_of_at_most_1000(fake: PineconeFake, tmp_path: Path) -> None:
    store = open_store(fake, tmp_path)
    items = chunks(2300)
    store.upsert(NS, items, vectors_for(items))
    store.delete(NS, [c.id for c in items[:2200]] * 2)  # repeated ids are sent once
    assert fake.delete_sizes == [1000, 1000, 200]
    assert fake.all_ids(NS) == sorted(c.id for c in items[2200:])
    assert store.catalog.ids(NS) == {c.id for c in items[2200:]}


def test_huge_chunks_keep_metadata_small_and_text_whole(fake: PineconeFake, tmp_path: Path) -> None:
    store = open_store(fake, tmp_path)
    text = "def huge():\n" + "    value = 'x' * 80\n" * 5000  # ~100 KB
    chunk = Chunk("big/module.py", "python", 1, 5001, text, "huge", "function")
    store.upsert(NS, [chunk], vectors_for([chunk]))
    _, metadata = fake.namespaces[pinecone_namespace(NS)][chunk.id]
    assert len(str(metadata).encode()) < MAX_METADATA_BYTES
    assert metadata["path"] == "big/module.py" and text.startswith(metadata["preview"])
    hit = store.query(NS, vectors_for([chunk])[0], 1)[0]
    assert hit.text == text  # the full text comes from the catalog

    elsewhere = PineconeStore(
        api_key=KEY,
        index_name="codeflow",
        controller_host=fake.url,
        dimensions=64,
        catalog_dir=tmp_path / "other-catalog",
    )
    fallback = elsewhere.query(NS, vectors_for([chunk])[0], 1)[0]
    assert (fallback.path, fallback.start_line, fallback.symbol) == ("big/module.py", 1, "huge")
    assert fallback.text == metadata["preview"]


def test_queries_take_metadata_filters(fake: PineconeFake, tmp_path: Path) -> None:
    store = open_store(fake, tmp_path)
    items = chunks(30) + chunks(5, language="markdown")
    items = list({c.id: c for c in items}.values())
    store.upsert(NS, items, vectors_for(items))
    query = vectors_for(items[:1])[0]
    markdown = store.query(NS, query, 50, where={"language": {"$eq": "markdown"}})
    assert markdown and {h.language for h in markdown} == {"markdown"}
    some = store.query(
        NS, query, 50, where={"path": {"$in": ["pkg/m0.py"]}, "start_line": {"$lt": 5}}
    )
    assert some and all(h.path == "pkg/m0.py" and h.start_line < 5 for h in some)


def test_dimension_is_checked_before_the_first_write(fake: PineconeFake, tmp_path: Path) -> None:
    store = open_store(fake, tmp_path, dimensions=256)
    items = chunks(3)
    with pytest.raises(VectorStoreError, match="holds 64-dim vectors but the embedder makes 256"):
        store.upsert(NS, items, vectors_for(items, 256))
    assert fake.requests_to("/vectors/upsert") == [] and store.catalog.count(NS) == 0
    with pytest.raises(ConfigError, match="PINECONE_API_KEY is not set"):
        PineconeStore(api_key="", index_name="codeflow", dimensions=64, catalog_dir=tmp_path)
    with pytest.raises(ConfigError, match="nope"):
        PineconeStore(
            api_key=KEY,
            index_name="nope",
            controller_host=fake.url,
            dimensions=64,
            catalog_dir=tmp_path,
        )


def test_faults_are_retried_without_loss_or_duplicates(fake: PineconeFake, tmp_path: Path) -> None:
    store = open_store(fake, tmp_path)
    store.check()
    fake.inject(Fault("status", status=503), Fault("status", status=429, retry_after=0.2))
    fake.inject(Fault("drop"))
    items = chunks(40)
    store.upsert(NS, items, vectors_for(items))
    store.upsert(NS, items, vectors_for(items))  # an interrupted run repeats its writes
    outcomes = [e.outcome for e in fake.requests_to("/vectors/upsert")]
    assert outcomes == ["fault:status", "fault:status", "fault:drop", "ok", "ok"]
    assert fake.all_ids(NS) == sorted(c.id for c in items)


def test_retries_are_bounded(fake: PineconeFake, tmp_path: Path) -> None:
    store = open_store(fake, tmp_path)
    store.check()
    fake.inject(*[Fault("status", status=500)] * 6)
    with pytest.raises(VectorStoreError, match="upsert failed"):
        store.upsert(NS, chunks(2), vectors_for(chunks(2)))
    assert len(fake.requests_to("/vectors/upsert")) == 4  # one try + the client's 3 retries
    fake.faults.clear()
