"""Embedding: texts in, L2-normalised float32 rows out.

- :class:`Embedder`: the Protocol every backend implements;
- :mod:`~tasks.embedding.local_embedder`: WordLlama's packaged static model (default, offline);
- :mod:`~tasks.embedding.openai_embedder`: OpenAI or any compatible ``/v1/embeddings`` server,
  with :mod:`~tasks.embedding.rate_limit` and :mod:`~tasks.embedding.usage` (pure);
- :mod:`~tasks.embedding.cpu_workers`: chunking and local embedding in worker processes;
- :mod:`~tasks.embedding.hashing_embedder`: a deterministic embedder with no model (tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 rows; ``id`` keys the embedding cache."""

    @property
    def id(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def normalize_rows(matrix: Vectors) -> Vectors:
    """L2-normalise rows in place; all-zero rows (text with no tokens) stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    matrix /= norms
    return matrix
