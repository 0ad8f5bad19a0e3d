"""The local embedder's tokenizer and pooling in native code, when it is built.

``native/`` is a small Rust extension (``codeflow_native``, built by ``scripts/bootstrap``
where cargo is installed). It does what :class:`~tasks.tokens.piece_tokens.PieceTokenizer` and
``LocalEmbedder._pool`` do, with the same results bit for bit: cut each normalised text
into pieces, encode every distinct piece once by BPE (its own implementation of the
``tokenizers`` crate's algorithm, byte fallback included), remember it, and average each
text's token vectors, with a fraction of the Python path's CPU (``benchmarks/native``).

Without the extension, or with ``CODEFLOW_NATIVE=0``, or for a tokenizer whose shape the
native BPE does not cover, :func:`piece_tokenizer` returns the Python tokenizer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from tasks.native_extension import codeflow_native, native_available
from tasks.tokens.piece_tokens import MAX_PIECES, Bounds, PieceTokenizer, TokenIds

Vectors = np.ndarray[Any, np.dtype[np.float32]]
log = logging.getLogger(__name__)


class NativePieceTokenizer(PieceTokenizer):
    """:class:`PieceTokenizer` whose piece encoding (and the embedder's pooling) is native.

    Texts holding a special token's text still go to the tokenizer itself (inherited)."""

    def __init__(
        self, tokenizer: Any, model: dict[str, Any], table: Vectors, max_pieces: int
    ) -> None:
        super().__init__(tokenizer, max_pieces)
        assert codeflow_native is not None
        rows = np.ascontiguousarray(table, dtype=np.float32)
        self._dims = rows.shape[1]
        self._native = codeflow_native.PieceEncoder(
            model["vocab"], [_pair(m) for m in model["merges"]], rows.tobytes(), self._dims,
            max_pieces,
        )  # fmt: skip

    def _encode_pieces(self, texts: Sequence[str]) -> tuple[TokenIds, Bounds]:
        ids, bounds = self._native.encode(list(texts))
        return np.frombuffer(ids, np.int32), np.frombuffer(bounds, np.int64)

    def mean_rows(self, ids: TokenIds, bounds: Bounds) -> Vectors:
        """Each text's mean token vector (zeros for a text without tokens)."""
        raw = self._native.mean_rows(
            np.ascontiguousarray(ids, np.int32).tobytes(),
            np.ascontiguousarray(bounds, np.int64).tobytes(),
        )
        return np.frombuffer(raw, np.float32).reshape(len(bounds) - 1, self._dims)


def _pair(merge: Any) -> tuple[str, str]:
    """A merge as a pair, from either of tokenizer.json's forms (``["a", "b"]`` or ``"a b"``)."""
    left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
    return str(left), str(right)


def _native_shape(model: dict[str, Any]) -> bool:
    """Whether the BPE model is one the native encoder reproduces exactly: byte fallback
    with all 256 byte tokens, no word prefix or suffix, merges always applied."""
    vocab = model.get("vocab") or {}
    return (
        model.get("byte_fallback") is True
        and model.get("continuing_subword_prefix") is None
        and model.get("end_of_word_suffix") is None
        and not model.get("ignore_merges")
        and all(f"<0x{b:02X}>" in vocab for b in range(256))
    )


def piece_tokenizer(
    tokenizer: Any, table: Vectors, max_pieces: int = MAX_PIECES
) -> PieceTokenizer | None:
    """The fastest exact piece tokenizer for ``tokenizer``: native when available and the
    model's shape allows, else Python; None when no piece tokenizer is exact."""
    python = PieceTokenizer.for_tokenizer(tokenizer, max_pieces)
    if python is None or not native_available():
        return python
    model = json.loads(tokenizer.to_str())["model"]
    if not _native_shape(model):
        return python
    try:
        return NativePieceTokenizer(tokenizer, model, table, max_pieces)
    except ValueError as exc:  # a model the extension cannot take: Python still can
        log.warning("native tokenizer unavailable (%s); using the Python path", exc)
        return python
