"""Exact top-k by dot product over an in-memory float32 matrix: the vector half of search.

At 100K x 256 the float32 matrix is 100 MB, and BLAS's matrix-vector product reads all of it per
query: memory-bound. With the native extension built, large matrices also keep an int8 copy (a
quarter of the bytes, one scale per row): the extension scores every row with integer dot
products on every core and shortlists the best ``shortlist_size(k)`` rows, which are then scored
again in float32 here, about twice as fast (``benchmarks/search``). Only float32 scores leave
this module, and the ranking equals the plain product's unless a true top-k row falls outside a
shortlist 5k + 64 long (the search benchmark counts such misses). Rows tied at the cut go to the
lowest positions on both paths (duplicate chunks have equal vectors, hence equal int8 scores, so
the shortlist keeps the same ones).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tasks.native_extension import codeflow_native, native_available

#: Below this many rows the float32 product takes well under a millisecond: no int8 copy.
SHORTLIST_MIN_ROWS = 16_384


def shortlist_size(k: int) -> int:
    """How many int8-scored rows are scored again in float32 for a top-``k``."""
    return 5 * k + 64


class VectorScan:
    """Exact dot-product search over ``vectors`` (rows are chunks); immutable."""

    def __init__(
        self, vectors: NDArray[np.float32], *, shortlist_min_rows: int = SHORTLIST_MIN_ROWS
    ) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows, dims = self.vectors.shape
        use_int8 = native_available() and rows >= max(shortlist_min_rows, 1) and dims > 0
        self._int8: Any = codeflow_native.Int8Rows(self.vectors, dims) if use_int8 else None

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def shortlists(self) -> bool:
        """Whether queries go through the int8 shortlist."""
        return self._int8 is not None

    def top(self, query: NDArray[np.float32], k: int) -> tuple[list[int], list[float]]:
        """Positions and float32 scores of the ``k`` best rows, best first, ties by position."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        k = min(k, self.size)
        if k <= 0:
            return [], []
        if self._int8 is None or shortlist_size(k) >= self.size:
            return _best(np.arange(self.size), self.vectors @ query, k)
        raw = self._int8.shortlist(query.tobytes(), shortlist_size(k))
        pool = np.frombuffer(raw, dtype=np.uint32).astype(np.intp)
        return _best(pool, self.vectors[pool] @ query, k)


def _best(
    positions: NDArray[np.intp], scores: NDArray[np.float32], k: int
) -> tuple[list[int], list[float]]:
    """The ``k`` highest ``scores`` (of rows ``positions``), best first; of rows tied at the
    cut, the lowest positions (duplicate chunks have equal vectors, so ties are common).
    Rows scoring NaN (a NaN query or row) are left out."""
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    above = np.flatnonzero(scores > kth)
    ties = np.flatnonzero(scores == kth)
    ties = ties[np.argsort(positions[ties], kind="stable")][: k - above.size]
    picked = np.concatenate([above, ties])
    picked = picked[np.lexsort((positions[picked], -scores[picked]))]
    return positions[picked].tolist(), scores[picked].tolist()
