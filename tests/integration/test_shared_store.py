"""LanceDB tables, manifests and the registry on S3-compatible storage (moto's real S3 API
on a socket): every operation codeflow uses, and one-line errors for a store it cannot use."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from config import load_settings
from config.errors import StorageError
from config.storage import MANIFESTS, REGISTRY
from tasks.embedding.local_embedder import LocalEmbedder
from tasks.index.manifests import IndexManifest
from tasks.index.s3_manifests import S3ManifestStore
from tasks.objects.s3_objects import S3Objects
from tasks.repo.registry import registry_for
from tasks.repo.source_params import parse_source
from tasks.search.hybrid import hybrid_search
from tasks.services import _manifests
from tasks.tokens.code_tokens import code_tokens
from tasks.vectors.lance_store import LanceStore
from tests.s3_support import Bucket
from tests.store_support import NS, put, snippets, synthetic


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def lance_on(bucket: Bucket, **env: str) -> LanceStore:
    settings = load_settings({**bucket.env(), **env})
    assert settings.store_uri is not None
    return LanceStore(settings.store_uri, 256, shared=settings.shared_store)


def test_every_store_operation_works_on_s3(bucket: Bucket, embedder: LocalEmbedder) -> None:
    """Append, merge, delete, ids, full-text and vector search, optimize (compaction and
    index folding through ``to_lance()``), drop: on the bucket, seen by a second reader."""
    writer, reader = lance_on(bucket), lance_on(bucket)
    chunks = synthetic(300)
    vectors = embedder.embed([c.text for c in chunks])
    writer.append(NS, chunks[:200], vectors[:200])
    writer.upsert(NS, chunks[150:], vectors[150:])  # 50 merged, 100 new
    put(writer, embedder, snippets())
    writer.delete(NS, [c.id for c in chunks[:20]])
    assert writer.count(NS) == reader.count(NS) == 284
    assert reader.ids(NS) == {c.id for c in chunks[20:]} | {c.id for c in snippets()}
    writer.optimize(NS)
    table = writer._open(NS)
    assert table is not None
    assert table.index_stats("tokens_idx").num_unindexed_rows == 0
    assert table.stats()["fragment_stats"]["num_fragments"] < 4  # compacted
    assert reader.text_search(NS, code_tokens("serve forever"), 3)[0].path == "app/server.py"
    target = snippets()[2]
    hit = reader.query(NS, embedder.embed([target.text])[0], 1)[0]
    assert (hit.id, hit.text) == (target.id, target.text)
    found = hybrid_search("fibonacci", store=reader, embedder=embedder, namespace=NS, limit=3)
    assert found[0].symbol == "fibonacci"
    writer.drop(NS)
    assert writer.count(NS) == 0 and not [k for k in bucket.objects() if ".lance/" in k]


def test_a_later_write_reaches_a_long_lived_reader(bucket: Bucket, embedder: LocalEmbedder) -> None:
    writer, reader = lance_on(bucket), lance_on(bucket)
    put(writer, embedder, snippets()[:2])
    assert reader.count(NS) == 2
    put(writer, embedder, snippets()[2:])
    query = embedder.embed([snippets()[3].text])[0]
    assert reader.query(NS, query, 1)[0].symbol == "slugify"


def test_a_store_that_cannot_be_used_fails_in_one_line(bucket: Bucket) -> None:
    settings = load_settings({**bucket.env(), "CODEFLOW_STORE_URI": "s3://no-such-bucket/x"})
    assert settings.shared_store is not None
    with pytest.raises(StorageError, match=r"^bucket 'no-such-bucket' does not exist at http"):
        S3Objects(settings.shared_store).check()
    closed = load_settings({**bucket.env(), "CODEFLOW_S3_ENDPOINT": "http://127.0.0.1:9"})
    assert closed.shared_store is not None
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"^cannot reach the object store at http://127"):
        S3Objects(closed.shared_store, timeout_s=1).check()
    assert time.monotonic() - started < 30
    for error in (StorageError("x"),):
        assert "\n" not in str(error)


def test_secrets_stay_out_of_reprs_and_errors(bucket: Bucket) -> None:
    env = {**bucket.env(), "AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "CODEFLOW_STORE_URI": "s3://x"}
    settings = load_settings(env)
    assert "s3cr3t-value" not in repr(settings) + repr(settings.shared_store)
    with pytest.raises(StorageError) as caught:
        S3Objects(settings.shared_store).check()  # type: ignore[arg-type]
    assert "s3cr3t-value" not in str(caught.value)


def manifest(repo_id: str, branch: str, commit: str) -> IndexManifest:
    return IndexManifest(
        repo_id, branch, "/src/app", commit, files={"a.py": "1" * 40}, chunks={"a.py": ["c1"]}
    )


def test_manifests_and_pending_ids_live_in_the_bucket(bucket: Bucket, tmp_path: Path) -> None:
    settings = load_settings({**bucket.env(), "CODEFLOW_HOME": str(tmp_path)})
    store = _manifests(settings, settings.home)
    assert isinstance(store, S3ManifestStore)
    rid = "0123456789abcdef"
    assert store.load(rid, "main") is None and store.committed(rid, "main") is None
    store.note_pending(rid, "main", ["p1", "p2"])
    store.note_pending(rid, "main", ["p3"])
    store.save(manifest(rid, "main", "a" * 40))
    assert store.committed(rid, "main") == "a" * 40
    store.note_pending(rid, "main", ["p4"])
    loaded = store.load(rid, "main")
    assert loaded is not None and loaded.pending == ["p4"] and loaded.chunks == {"a.py": ["c1"]}
    store.save(manifest(rid, "feature/x", "b" * 40))
    store.save(manifest(rid, "main", "c" * 40 + "-longer"))
    assert store.committed(rid, "main") == "c" * 40 + "-longer"  # a new version is read
    assert store.branches(rid) == ["feature_x", "main"]
    assert sorted(m.branch for m in store.all()) == ["feature/x", "main"]
    prefix = f"codeflow/{MANIFESTS}/lancedb/{rid}/"
    assert sorted(bucket.objects()) == [prefix + "feature_x.json", prefix + "main.json"]
    assert not any(tmp_path.iterdir())


def test_the_registry_lives_in_the_bucket(bucket: Bucket, tmp_path: Path) -> None:
    settings = load_settings({**bucket.env(), "CODEFLOW_HOME": str(tmp_path / "a")})
    added = registry_for(settings).add(parse_source("file:///srv/git/app.git"), schedule=None)
    other = load_settings({**bucket.env(), "CODEFLOW_HOME": str(tmp_path / "b")})
    registry = registry_for(other)
    assert [e.name for e in registry.entries()] == [added.name] == ["app"]
    registry.record("app", at=5.0, commit="f" * 40)
    assert registry_for(settings).find("app")[0].last_commit == "f" * 40
    assert f"codeflow/{REGISTRY}" in bucket.objects()
    assert not (tmp_path / "b" / "registry.json").exists()
    registry.remove("app")
    assert registry_for(settings).entries() == []


def test_vectors_from_the_bucket_are_numpy_float32(bucket: Bucket, embedder: LocalEmbedder) -> None:
    store = lance_on(bucket)
    put(store, embedder, snippets())
    hits = store.query(NS, np.asarray(embedder.embed(["x"])[0]), 2, with_text=False)
    assert len(hits) == 2 and all(h.text == "" for h in hits)
