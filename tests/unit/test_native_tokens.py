"""The native extension (native/, Rust) tokenizes and pools exactly as the Python path and
WordLlama's own tokenizer do; bad input to it is an error, not a crash."""

from __future__ import annotations

import json
import os
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from tasks.embedding.local_embedder import LocalEmbedder
from tasks.native_extension import native_available, native_built
from tasks.records import Chunk
from tasks.tokens.code_tokens import search_document, search_documents
from tasks.tokens.native_pieces import NativePieceTokenizer, piece_tokenizer
from tasks.tokens.piece_tokens import PieceTokenizer
from tests.unit.test_piece_tokens import EDGE_CASES, reference

REQUIRED = os.environ.get("CODEFLOW_REQUIRE_NATIVE") == "1"  # set by .ci/run
needs_native = pytest.mark.skipif(
    not native_built(), reason="native extension not built (scripts/bootstrap)"
)


def test_the_extension_is_built_where_required() -> None:
    if not REQUIRED:
        pytest.skip("CODEFLOW_REQUIRE_NATIVE is not set")
    assert native_built(), "scripts/bootstrap should build native/"
    assert isinstance(LocalEmbedder()._pieces, NativePieceTokenizer)


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture(scope="module")
def native(embedder: LocalEmbedder) -> NativePieceTokenizer:
    if not native_built():
        pytest.skip("native extension not built (scripts/bootstrap)")
    found = piece_tokenizer(embedder._tokenizer, embedder._table)
    assert isinstance(found, NativePieceTokenizer)
    return found


def real_code(limit: int) -> list[str]:
    """Python source of installed packages, the kind of text an index sees."""
    site = Path(sysconfig.get_paths()["purelib"])
    files = sorted((site / "prefect").rglob("*.py"))[:limit]
    return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def test_edge_cases_match_the_tokenizer(embedder: LocalEmbedder, native: Any) -> None:
    expected = [reference(embedder._tokenizer, t) for t in EDGE_CASES]
    assert native.encode_batch(EDGE_CASES) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=8))
def test_random_texts_match_the_tokenizer(
    embedder: LocalEmbedder, native: Any, texts: list[str]
) -> None:
    assert native.encode_batch(texts) == [reference(embedder._tokenizer, t) for t in texts]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.sampled_from("ab_(). \n\u2581é漢🙂\x00"), max_size=60), max_size=6))
def test_dense_alphabets_match_the_tokenizer(
    embedder: LocalEmbedder, native: Any, texts: list[str]
) -> None:
    """Few characters, many repeats: merges compete and stale heap entries occur."""
    assert native.encode_batch(texts) == [reference(embedder._tokenizer, t) for t in texts]


def test_real_code_matches_the_python_path(embedder: LocalEmbedder, native: Any) -> None:
    texts = real_code(400)
    python = PieceTokenizer.for_tokenizer(embedder._tokenizer)
    assert python is not None
    got, want = native.encode_flat(texts), python.encode_flat(texts)
    assert len(want[0]) > 100_000  # the files were read: a real comparison
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_a_memo_that_starts_over_still_answers_exactly(embedder: LocalEmbedder) -> None:
    if not native_built():
        pytest.skip("native extension not built (scripts/bootstrap)")
    small = piece_tokenizer(embedder._tokenizer, embedder._table, max_pieces=3)
    assert isinstance(small, NativePieceTokenizer)
    texts = ["alpha beta gamma delta", "epsilon zeta alpha", "alpha beta gamma delta"]
    assert small.encode_batch(texts) == [reference(embedder._tokenizer, t) for t in texts]


def test_pooling_is_bit_for_bit_the_python_pooling(embedder: LocalEmbedder, native: Any) -> None:
    texts = [*real_code(40), "", "x"]
    ids, bounds = native.encode_flat(texts)
    python = np.zeros((len(texts), embedder.dimensions), np.float32)
    pure = object.__new__(LocalEmbedder)
    pure._table, pure._pieces = embedder._table, None
    pure._pool(ids, bounds, python)
    pooled = native.mean_rows(ids, bounds)
    assert python[:-2].any() and not pooled[-2].any()  # real vectors; no tokens: zeros
    assert np.array_equal(pooled, python)


def test_the_embedder_gives_the_same_vectors_with_and_without_it(
    monkeypatch: pytest.MonkeyPatch, embedder: LocalEmbedder, native: Any
) -> None:
    texts = [*EDGE_CASES, *real_code(30), "lone surrogate \udcff here"]
    monkeypatch.setenv("CODEFLOW_NATIVE", "0")
    assert not native_available()
    pure = LocalEmbedder()
    assert not isinstance(pure._pieces, NativePieceTokenizer)
    assert np.array_equal(embedder.embed(texts), pure.embed(texts))


@needs_native
def test_out_of_range_ids_or_bounds_are_an_error(native: Any) -> None:
    ids = np.array([1, 2, 3], np.int32)
    with pytest.raises(ValueError, match="out of range"):
        native.mean_rows(np.array([1, 10**9], np.int32), np.array([0, 2], np.int64))
    with pytest.raises(ValueError, match="out of range"):
        native.mean_rows(ids, np.array([0, 4], np.int64))
    with pytest.raises(ValueError, match="out of range"):
        native.mean_rows(ids, np.array([2, 1], np.int64))
    assert native.mean_rows(ids, np.array([0, 3], np.int64)).shape == (1, 256)


@needs_native
def test_a_model_without_byte_fallback_stays_in_python(embedder: LocalEmbedder) -> None:
    spec = json.loads(embedder._tokenizer.to_str())
    spec["model"]["byte_fallback"] = False
    other = Tokenizer.from_str(json.dumps(spec))
    found = piece_tokenizer(other, embedder._table)
    assert isinstance(found, PieceTokenizer) and not isinstance(found, NativePieceTokenizer)


@needs_native
def test_a_vocabulary_the_table_cannot_hold_is_refused(
    embedder: LocalEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    spec = json.loads(embedder._tokenizer.to_str())
    with pytest.raises(ValueError, match="does not match"):
        NativePieceTokenizer(embedder._tokenizer, spec["model"], embedder._table[:100], 10)
    found = piece_tokenizer(embedder._tokenizer, embedder._table[:100])
    assert type(found) is PieceTokenizer  # the Python path, which needs no table
    assert "using the Python path" in caplog.text


# ---- BM25 documents -------------------------------------------------------------------

FRAGMENTS = [*"aAbBzZ09_", "HTTP", "Server", "get", "URL", "v2", "__", " ", "\n", "(", ".", "-"]
IDENTIFIER_TEXT = st.lists(
    st.sampled_from([*FRAGMENTS, "é", "\u00a0", "\u2003", "\x1c"]), max_size=30
).map("".join)


def chunk_of(text: str, path: str = "pkg/mod.py", symbol: str | None = None) -> Chunk:
    return Chunk(path, "python", 1, 1, text, symbol)


def python_documents(chunks: list[Chunk]) -> list[str]:
    return [search_document(c) for c in chunks]


@needs_native
@settings(max_examples=500, deadline=None)
@given(st.lists(IDENTIFIER_TEXT, max_size=6), st.sampled_from([None, "HTTPServer.get_URL"]))
def test_native_bm25_documents_equal_the_python_ones(texts: list[str], symbol: str | None) -> None:
    chunks = [chunk_of(t, symbol=symbol) for t in texts]
    assert search_documents(chunks) == python_documents(chunks)


@needs_native
def test_native_bm25_documents_of_real_code_equal_the_python_ones() -> None:
    chunks = [chunk_of(t, f"f{i}.py") for i, t in enumerate(real_code(400))]
    documents = search_documents(chunks)
    assert sum(map(len, documents)) > 1_000_000  # the files were read: a real comparison
    assert documents == python_documents(chunks)


@needs_native
def test_texts_beyond_ascii_go_to_python_and_given_documents_are_kept() -> None:
    from tasks.tokens.code_tokens import _native_tokenizer

    assert _native_tokenizer().joined_tokens(["naïve_café getUserName", "getUserName"]) == [
        None,
        "getusername get user name",
    ]
    given_doc = Chunk("a.py", "python", 1, 1, "x", search_text="kept as is")
    chunks = [chunk_of("naïve_café getUserName"), given_doc]
    assert search_documents(chunks) == [search_document(chunks[0]), "kept as is"]


def test_without_the_extension_documents_come_from_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEFLOW_NATIVE", "0")
    chunks = [chunk_of("def getUserName(self): return self.HTTPServer_v2")]
    assert search_documents(chunks) == python_documents(chunks)


@needs_native
def test_threads_sharing_one_embedder_get_the_vectors_they_would_alone() -> None:
    """The extension releases the GIL while it works; its memos take one call at a time."""
    from concurrent.futures import ThreadPoolExecutor

    texts = real_code(60)
    batches = [texts[i::6] for i in range(6)]
    alone = [LocalEmbedder().embed(b) for b in batches]
    shared = LocalEmbedder()
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(shared.embed, batches))
        documents = list(pool.map(search_documents, [[chunk_of(t) for t in b] for b in batches]))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
    assert documents == [python_documents([chunk_of(t) for t in b]) for b in batches]
