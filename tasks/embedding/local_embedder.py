"""LocalEmbedder, the default embedder: WordLlama's static model (token embeddings averaged), whose
256-dimensional weights and tokenizer ship inside the ``wordllama`` wheel. It runs offline
and never downloads: the package's own folder is passed as the cache directory with
downloads disabled (``WordLlama.load()`` otherwise looks for the tokenizer in a sub-folder
that does not exist and falls back to Hugging Face).

>>> embedder = LocalEmbedder(dimensions=256)      # ~0.5-1 s: import + load
>>> embedder.embed(["def parse(path): ..."]).shape
(1, 256)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from config.errors import ConfigError, EmbedderError
from tasks.embedding import Vectors, normalize_rows
from tasks.tokens.code_tokens import joined_tokens
from tasks.tokens.native_pieces import NativePieceTokenizer, piece_tokenizer
from tasks.tokens.piece_tokens import Bounds, TokenIds, flatten

#: Dimensions WordLlama's matryoshka-trained ``l2_supercat`` model can be truncated to
#: from the 256-dim weights the wheel ships.
LOCAL_DIMENSIONS = (64, 128, 256)
_LOCAL_CONFIG = "l2_supercat"
_SHIPPED_DIM = 256
#: Every :class:`LocalEmbedder` id starts with this.
LOCAL_ID_PREFIX = "wordllama:"


def wordllama_files() -> tuple[Path, Path]:
    """The weights and tokenizer files inside the installed ``wordllama`` package, found
    without importing it (its import alone takes ~0.6 s: ``requests``, config parsing)."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None or spec.origin is None:
        raise EmbedderError("the wordllama package is not installed; reinstall codeflow")
    package = Path(spec.origin).parent
    return (
        package / "weights" / f"{_LOCAL_CONFIG}_{_SHIPPED_DIM}.safetensors",
        package / "tokenizers" / f"{_LOCAL_CONFIG}_tokenizer_config.json",
    )


def load_stock_wordllama(dimensions: int = _SHIPPED_DIM) -> Any:
    """WordLlama's own model object, from the files inside its wheel, downloads disabled:
    the peer benchmarks and tests compare :class:`LocalEmbedder` with (its ``embed``)."""
    from wordllama import WordLlama

    package = wordllama_files()[0].parent.parent
    return WordLlama.load(
        _LOCAL_CONFIG, cache_dir=package, dim=_SHIPPED_DIM, disable_download=True,
        trunc_dim=None if dimensions == _SHIPPED_DIM else dimensions,
    )  # fmt: skip


def _load_packaged(dimensions: int) -> tuple[Vectors, Any]:
    """WordLlama's token-embedding table (its first ``dimensions`` columns, as
    ``WordLlama.load(trunc_dim=...)`` takes them) and tokenizer, offline."""
    from safetensors import safe_open
    from tokenizers import Tokenizer

    weights, tokenizer = wordllama_files()
    try:
        with safe_open(str(weights), framework="np", device="cpu") as tensors:
            table = tensors.get_tensor("embedding.weight")[:, :dimensions]
        return np.ascontiguousarray(table, dtype=np.float32), Tokenizer.from_file(str(tokenizer))
    except Exception as exc:  # safetensors and tokenizers raise their own error types
        raise EmbedderError(
            f"WordLlama's packaged model could not be loaded from {weights.parent.parent} "
            f"({exc}); reinstall the wordllama wheel"
        ) from exc


def _encodable(text: str) -> str:
    """``text`` with lone surrogates (which UTF-8 cannot hold) replaced by ``?``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def local_embedder_id(dimensions: int, words: bool = True) -> str:
    """The id :class:`LocalEmbedder` reports, known without loading the model (``+words``:
    it embeds a text's code tokens, see :class:`LocalEmbedder`)."""
    return f"{LOCAL_ID_PREFIX}{_LOCAL_CONFIG}{'+words' if words else ''}:{dimensions}"


class LocalEmbedder:
    """WordLlama ``l2_supercat``, offline, CPU only; ~5-7 MB/s of code on one core.

    The model is loaded in ``__init__`` (~0.5 s with the import) so a broken installation
    fails at start-up, not mid-run. Texts are tokenized without padding by
    :class:`~tasks.tokens.piece_tokens.PieceTokenizer` (the same IDs as the Rust tokenizer, each
    distinct piece encoded once: ~3x faster on code, on one core, leaving the other to the
    chunker) and each text's token vectors are averaged; both steps run in codeflow's
    native extension when it is built (:mod:`tasks.tokens.native_pieces`, another ~3x). WordLlama's
    own ``embed`` pads every batch to its longest text, which costs ~40% more on code chunks
    of uneven length.

    What is embedded is a text's code tokens (:func:`~tasks.tokens.code_tokens.joined_tokens`:
    ``getUserName`` -> ``getusername get user name``), not its raw characters: WordLlama
    knows English words, and it ranks code by the words its identifiers are made of far
    better than by their camelCase spelling (``benchmarks/relevance``). Results equal
    WordLlama's ``embed(norm=True)`` of those tokens (``words=False``: of the raw text).
    """

    def __init__(self, dimensions: int = 256, batch_size: int = 512, *, words: bool = True) -> None:
        if dimensions not in LOCAL_DIMENSIONS:
            raise ConfigError(
                f"the local embedder supports dimensions {LOCAL_DIMENSIONS}, not {dimensions}"
            )
        if batch_size < 1:
            raise ConfigError(f"embedding batch size must be >= 1, not {batch_size}")
        self._table, self._tokenizer = _load_packaged(dimensions)
        if self._tokenizer.get_vocab_size(with_added_tokens=True) > len(self._table):
            raise EmbedderError("WordLlama's tokenizer and weights disagree; reinstall it")
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._pieces = piece_tokenizer(self._tokenizer, self._table)
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._words = words

    @property
    def id(self) -> str:
        return local_embedder_id(self._dimensions, self._words)

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            batch = joined_tokens(batch) if self._words else batch
            self._pool(*self._token_ids(batch), out[start : start + len(batch)])
        return normalize_rows(out)

    def _token_ids(self, texts: Sequence[str]) -> tuple[TokenIds, Bounds]:
        try:
            return self._encode(texts)
        except UnicodeEncodeError:  # lone surrogates, which UTF-8 cannot hold: rare
            return self._encode([_encodable(t) for t in texts])

    def _encode(self, texts: Sequence[str]) -> tuple[TokenIds, Bounds]:
        if self._pieces is not None:
            return self._pieces.encode_flat(texts)
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return flatten([e.ids for e in encodings])

    def _pool(self, ids: TokenIds, bounds: Bounds, out: Vectors) -> None:
        """Mean of each text's token vectors into ``out``; texts without tokens stay zero.
        (A per-row gather beats one ``np.add.reduceat`` over the batch by ~10x here.)"""
        if isinstance(self._pieces, NativePieceTokenizer):
            out[:] = self._pieces.mean_rows(ids, bounds)
            return
        table, total = self._table, np.add.reduce
        for row, (start, end) in enumerate(pairwise(bounds.tolist())):
            if end > start:
                out[row] = total(table[ids[start:end]], axis=0)
                out[row] /= end - start
