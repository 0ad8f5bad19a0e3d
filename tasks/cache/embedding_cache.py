"""The embedding cache: chunk text -> vector, keyed by what determines the vector.

The key is a hash of (embedder id, dimensions, chunk text) and nothing else: no path, no
commit, no branch. A renamed file, a branch switch or an unchanged chunk in an edited file
therefore re-embeds nothing. Vectors are stored as their little-endian float32 bytes: exact,
and a 256-dim vector takes 1 KB of Redis (1.4 KB as the base64 JSON strings stored before,
which are still read).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tasks.cache import Cache

Vectors = NDArray[np.float32]


def embedding_key(embedder_id: str, dimensions: int, text: str) -> str:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{embedder_id}\0{dimensions}\0".encode())
    digest.update(text.encode("utf-8", "surrogatepass"))
    return "e:" + digest.hexdigest()


def encode_vector(vector: NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vector(value: object, dimensions: int) -> NDArray[np.float32] | None:
    """The vector, or ``None`` for a value of the wrong type or shape (treated as a miss).
    Bytes are this version's format; a string is the base64 of earlier versions."""
    if isinstance(value, str):
        try:
            value = base64.b64decode(value, validate=True)
        except ValueError:
            return None
    if not isinstance(value, bytes) or len(value) != 4 * dimensions:
        return None
    return np.frombuffer(value, dtype="<f4").astype(np.float32)


class EmbeddingCache:
    """Batched lookups and stores over a :class:`~tasks.cache.redis_cache.Cache` namespace."""

    def __init__(self, cache: Cache, embedder_id: str, dimensions: int) -> None:
        self.cache = cache
        self.embedder_id = embedder_id
        self.dimensions = dimensions

    def keys(self, texts: Sequence[str]) -> list[str]:
        """The cache key of each text; a run computes them once, for lookup and store."""
        return [embedding_key(self.embedder_id, self.dimensions, t) for t in texts]

    def lookup(self, keys: Sequence[str]) -> dict[int, Vectors]:
        """Index in ``keys`` -> cached vector, for the keys that hit (one MGET-like call)."""
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        out: dict[int, Vectors] = {}
        for index, key in enumerate(keys):
            vector = decode_vector(found.get(key), self.dimensions)
            if vector is not None:
                out[index] = vector
        return out

    def store(self, keys: Sequence[str], vectors: Vectors) -> None:
        self.cache.set_many({k: encode_vector(v) for k, v in zip(keys, vectors, strict=True)})
