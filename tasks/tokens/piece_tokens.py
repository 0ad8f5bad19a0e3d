"""Exact token IDs for WordLlama's SentencePiece-style BPE tokenizer, ~3x faster.

WordLlama's tokenizer (Llama-2's vocabulary) has no pre-tokenizer: its normalizer turns
spaces into ``▁`` and prepends one, then BPE runs over the *whole text as one word*, which
is slow on code (long words defeat the tokenizer's cache) and is most of a cold index's
embedding time.

No token in that vocabulary holds ``▁`` after another character, so no BPE merge can cross
a point where ``▁`` follows a non-``▁`` character. Cutting the normalised text at those
points and running BPE on each piece therefore yields exactly the same IDs, and pieces
repeat constantly in code (``▁self``, ``▁return``, ``):``), so each distinct piece is
encoded once and remembered. :func:`PieceTokenizer.for_tokenizer` checks those properties
on the tokenizer it is given and returns ``None`` when they do not hold (then the caller
uses the tokenizer itself). Texts that hold a special token's text (``<s>``, ``</s>``,
``<unk>``), which the tokenizer matches before anything else, go to the tokenizer too.

The IDs of a batch come back flat, as one array and each text's bounds in it, gathered by
numpy from the memo's arrays; per-text Python lists cost more than the pooling itself.

Pieces of ``"def f(x):  return x"`` after normalisation: ``▁def``, ``▁f(x):``, ``▁▁return``,
``▁x``.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Sequence
from itertools import chain, pairwise
from typing import Any

import numpy as np
from numpy.typing import NDArray

SPACE = "\u2581"  # "▁", SentencePiece's visible space
_PIECE = re.compile(f"{SPACE}*[^{SPACE}]+|{SPACE}+")
_NORMALIZER = {
    "type": "Sequence",
    "normalizers": [
        {"type": "Prepend", "prepend": SPACE},
        {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
    ],
}
MAX_PIECES = 1_000_000  # remembered pieces before the memo starts over (~30-50 MB)

TokenIds = NDArray[np.int32]
Bounds = NDArray[np.int64]


def flatten(ids_per_text: Sequence[Sequence[int]]) -> tuple[TokenIds, Bounds]:
    """Per-text ID lists as one array plus bounds: text ``i`` is ``ids[b[i]:b[i + 1]]``."""
    bounds = np.zeros(len(ids_per_text) + 1, np.int64)
    np.cumsum([len(ids) for ids in ids_per_text], out=bounds[1:])
    flat = np.fromiter(chain.from_iterable(ids_per_text), np.int32, int(bounds[-1]))
    return flat, bounds


class PieceTokenizer:
    """Token IDs of texts, equal to ``tokenizer.encode(text, add_special_tokens=False).ids``."""

    def __init__(self, tokenizer: Any, max_pieces: int = MAX_PIECES) -> None:
        self._tokenizer = tokenizer
        self._model = tokenizer.model  # encodes one piece as is
        specials = [t.content for t in tokenizer.get_added_tokens_decoder().values()]
        self._special = re.compile("|".join(map(re.escape, specials))) if specials else None
        self._max_pieces = max_pieces
        self._forget()

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, max_pieces: int = MAX_PIECES) -> PieceTokenizer | None:
        """A piece tokenizer equivalent to ``tokenizer``, or None if it cannot be one."""
        spec = json.loads(tokenizer.to_str())
        model = spec.get("model") or {}
        if (
            model.get("type") != "BPE"
            or spec.get("normalizer") != _NORMALIZER
            or spec.get("pre_tokenizer") is not None
            or model.get("dropout") is not None
            or any(re.search(f"[^{SPACE}]{SPACE}", token) for token in model.get("vocab", {}))
        ):
            return None
        return cls(tokenizer, max_pieces)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token IDs of each text (no special tokens)."""
        flat, bounds = self.encode_flat(texts)
        ids: list[int] = flat.tolist()
        return [ids[a:b] for a, b in pairwise(bounds.tolist())]

    def encode_flat(self, texts: Sequence[str]) -> tuple[TokenIds, Bounds]:
        """Every text's token IDs in one array, and each text's bounds in it."""
        special = [i for i, t in enumerate(texts) if self._special and self._special.search(t)]
        if not special:
            return self._encode_pieces(texts)
        aside = set(special)
        flat, bounds = self._encode_pieces(["" if i in aside else t for i, t in enumerate(texts)])
        per_text = [flat[a:b].tolist() for a, b in pairwise(bounds.tolist())]
        picked = [texts[i] for i in special]
        done = self._tokenizer.encode_batch_fast(picked, add_special_tokens=False)
        for i, encoding in zip(special, done, strict=True):
            per_text[i] = encoding.ids
        return flatten(per_text)

    def _encode_pieces(self, texts: Sequence[str]) -> tuple[TokenIds, Bounds]:
        pieces = [_PIECE.findall(SPACE + t.replace(" ", SPACE)) if t else [] for t in texts]
        missing = {p for ps in pieces for p in ps if p not in self._index}
        if len(self._index) + len(missing) > self._max_pieces:
            self._forget()
            missing = {p for ps in pieces for p in ps}
        self._learn(missing)
        bounds = np.zeros(len(texts) + 1, np.int64)
        np.cumsum([len(ps) for ps in pieces], out=bounds[1:])
        get = self._index.__getitem__
        numbers = np.fromiter(chain.from_iterable(map(get, ps) for ps in pieces), np.int64)
        return self._gather(numbers, bounds)

    def _gather(self, numbers: NDArray[np.int64], piece_bounds: Bounds) -> tuple[TokenIds, Bounds]:
        """The IDs of the pieces numbered ``numbers``, one after another, gathered from the
        memo's arrays by numpy; piece bounds per text become token bounds per text."""
        starts = np.frombuffer(self._starts, np.int64)[numbers]
        lengths = np.frombuffer(self._lengths, np.int64)[numbers]
        ends = np.zeros(len(numbers) + 1, np.int64)
        np.cumsum(lengths, out=ends[1:])
        positions = np.arange(ends[-1]) + np.repeat(starts - ends[:-1], lengths)
        return np.frombuffer(self._ids, np.int32)[positions], ends[piece_bounds]

    def _forget(self) -> None:
        self._index: dict[str, int] = {}  # piece -> its number
        self._ids = array("i")  # every remembered piece's IDs, one piece after another
        self._starts = array("q")  # piece number -> where its IDs start in _ids
        self._lengths = array("q")  # piece number -> how many IDs it has

    def _learn(self, new: set[str]) -> None:
        # One model call per piece: ~2x faster than ``encode_batch_fast`` over the pieces
        # (no Encoding objects), and far faster than one call over them joined (BPE time
        # grows faster than linearly with the length of a word).
        tokenize, ids = self._model.tokenize, self._ids
        starts, lengths = self._starts, self._lengths
        for piece in new:
            learned = [token.id for token in tokenize(piece)]  # may raise: then nothing is noted
            self._index[piece] = len(starts)
            starts.append(len(ids))
            lengths.append(len(learned))
            ids.extend(learned)
