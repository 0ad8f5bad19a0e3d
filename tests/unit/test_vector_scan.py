"""The vector half's exact top-k: the int8 shortlist (native) ranks as the float32 product
does, and the extension's int8 scores are those of a numpy reference."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from tasks.native_extension import codeflow_native, native_built
from tasks.vectors.vector_scan import VectorScan, _best, shortlist_size

needs_native = pytest.mark.skipif(
    not native_built(), reason="native extension not built (scripts/bootstrap)"
)
DIMS = 64


def clustered(rows: int, seed: int, duplicates: int = 0) -> NDArray[np.float32]:
    """Unit vectors around 50 centres (close scores, as real chunks have), the first
    ``duplicates`` rows repeated at the end (exact ties)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, DIMS))
    vectors = centres[rng.integers(0, 50, rows)] + 0.5 * rng.standard_normal((rows, DIMS))
    vectors = np.vstack([vectors, vectors[:duplicates]])
    norms: NDArray[np.float64] = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / norms).astype(np.float32)


def exact(vectors: NDArray[np.float32]) -> VectorScan:
    return VectorScan(vectors, shortlist_min_rows=sys.maxsize)


def reference_top(vectors: NDArray[np.float32], query: NDArray[np.float32], k: int) -> list[int]:
    """Top ``k`` by a full sort: score descending, then position."""
    scores = vectors @ query
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def test_the_float32_path_ranks_by_score_then_position() -> None:
    vectors = clustered(3_000, seed=1, duplicates=300)
    scan = exact(vectors)
    for query in vectors[::97]:
        positions, scores = scan.top(query, 40)
        assert positions == reference_top(vectors, query, 40)
        assert scores == sorted(scores, reverse=True)


@needs_native
def test_the_shortlist_gives_the_float32_ranking_and_scores() -> None:
    vectors = clustered(20_000, seed=2, duplicates=2_000)  # ties across the cut
    scan, plain = VectorScan(vectors, shortlist_min_rows=1), exact(vectors)
    assert scan.shortlists and not plain.shortlists
    queries = [*vectors[::401], *clustered(100, seed=3)]
    for query in queries:
        for k in (1, 10, 50):
            positions, scores = scan.top(query, k)
            assert positions == plain.top(query, k)[0]
            assert np.allclose(scores, (vectors @ query)[positions], atol=1e-6)


@needs_native
def test_small_matrices_and_large_k_skip_the_shortlist() -> None:
    vectors = clustered(500, seed=4)
    assert not VectorScan(vectors).shortlists  # below SHORTLIST_MIN_ROWS
    scan = VectorScan(vectors, shortlist_min_rows=1)
    k = 500 // 5  # shortlist_size(k) >= rows: every row is scored in float32
    assert shortlist_size(k) >= 500
    assert scan.top(vectors[0], k)[0] == reference_top(vectors, vectors[0], k)
    assert scan.top(vectors[0], 10_000)[0] == reference_top(vectors, vectors[0], 500)


def test_rows_tied_at_the_cut_are_taken_by_position_whatever_their_order() -> None:
    positions = np.array([9, 5, 7, 3], np.intp)  # a shortlist's order, not position order
    scores = np.array([0.5, 0.2, 0.2, 0.2], np.float32)
    top, top_scores = _best(positions, scores, 3)
    assert top == [9, 3, 5]
    assert top_scores == pytest.approx([0.5, 0.2, 0.2])


def test_empty_matrix_and_zero_k() -> None:
    empty = VectorScan(np.zeros((0, DIMS), np.float32), shortlist_min_rows=0)
    assert empty.top(np.ones(DIMS, np.float32), 10) == ([], [])
    assert exact(clustered(10, seed=5)).top(np.ones(DIMS, np.float32), 0) == ([], [])


def test_a_nan_query_finds_nothing_on_either_path() -> None:
    vectors = clustered(2_000, seed=7)
    query = np.full(DIMS, np.nan, np.float32)
    assert exact(vectors).top(query, 5) == ([], [])
    assert VectorScan(vectors, shortlist_min_rows=1).top(query, 5) == ([], [])


def int8_codes(rows: NDArray[np.float32]) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """The extension's quantization in numpy: each row scaled by its largest magnitude to
    -127..127, rounded half away from zero; a zero row has scale 0."""
    peak = np.abs(rows).max(axis=1)
    safe = np.where(peak > 0, peak, 1).astype(np.float32)
    scaled = rows * (np.float32(127) / safe)[:, None]
    codes = np.trunc(scaled + np.copysign(np.float32(0.5), scaled)).astype(np.int32)
    return codes, np.where(peak > 0, peak / np.float32(127), 0).astype(np.float32)


@needs_native
@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 300),
    k=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    zero_rows=st.integers(0, 3),
)
def test_the_int8_shortlist_matches_a_numpy_reference(
    rows: int, k: int, seed: int, zero_rows: int
) -> None:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((rows, 24)).astype(np.float32)
    vectors[: min(zero_rows, rows)] = 0
    query = rng.standard_normal(24).astype(np.float32)
    codes, scales = int8_codes(vectors)
    query_codes, _ = int8_codes(query[None, :])
    approx = (codes @ query_codes[0]).astype(np.float32) * scales
    expected = sorted(range(rows), key=lambda i: (-approx[i], i))[:k]
    found = np.frombuffer(
        codeflow_native.Int8Rows(vectors, 24).shortlist(query.tobytes(), k), np.uint32
    )
    assert found.tolist() == expected


@needs_native
def test_bad_input_to_the_int8_rows_is_an_error() -> None:
    vectors = clustered(10, seed=6)
    with pytest.raises(ValueError, match="C-contiguous"):
        codeflow_native.Int8Rows(vectors[:, ::2], DIMS // 2)
    with pytest.raises(ValueError, match="not rows of"):
        codeflow_native.Int8Rows(vectors, DIMS + 1)
    with pytest.raises(BufferError):
        codeflow_native.Int8Rows(vectors.astype(np.float64), DIMS)
    rows = codeflow_native.Int8Rows(vectors, DIMS)
    assert len(rows) == 10
    with pytest.raises(ValueError, match="dims"):
        rows.shortlist(vectors[0, :10].tobytes(), 3)
