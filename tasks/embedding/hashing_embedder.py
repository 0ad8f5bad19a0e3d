"""HashingEmbedder: a tiny, deterministic embedder with no model (the in-memory twin of the
real embedders, for unit tests and fakes).

The hashing trick over :func:`tasks.tokens.code_tokens.code_tokens`: no semantic knowledge,
but a real embedder with stable output, so texts sharing identifiers get similar vectors.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from config.errors import ConfigError
from tasks.embedding import Vectors, normalize_rows
from tasks.tokens.code_tokens import code_tokens


class HashingEmbedder:
    """Signed hashing trick over code tokens, log-scaled term counts, L2-normalised.

    Deterministic across processes and machines (CRC32, not Python's salted ``hash``),
    no model, no I/O: texts sharing identifiers get similar vectors, nothing more.
    """

    def __init__(self, dimensions: int = 256) -> None:
        if dimensions < 8:
            raise ConfigError(f"hashing embedder needs at least 8 dimensions, not {dimensions}")
        self._dimensions = dimensions

    @property
    def id(self) -> str:
        return f"hashing:crc32:{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in code_tokens(text):
                digest = zlib.crc32(token.encode("utf-8", "surrogatepass"))
                sign = 1.0 if digest & 0x80000000 else -1.0
                out[row, digest % self._dimensions] += sign
        np.copysign(np.log1p(np.abs(out)), out, out=out)
        return normalize_rows(out)
