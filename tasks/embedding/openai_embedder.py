"""OpenAI embeddings (or any OpenAI-compatible ``/v1/embeddings`` server) behind ``Embedder``.

What it guarantees, and how:

* **Request caps.** Inputs are counted offline and exactly
  (:mod:`tasks.tokens.openai_tokens`) and packed into requests of at most 2,048 inputs and
  300,000 tokens. An input above the model's 8,191-token cap is **split** into pieces on
  token boundaries; the pieces are embedded and their vectors averaged, weighted by token
  count, then re-normalised (OpenAI's cookbook recipe). ``long_inputs="truncate"`` keeps only
  the first piece instead. Either way every
  input gets a vector: nothing is dropped. Empty strings (which the API rejects) get a zero
  vector, as the local embedder gives text without tokens.
* **Rate limits.** One :class:`~tasks.embedding.rate_limit.RateLimiter` per embedder paces
  requests and tokens per minute, follows the ``x-ratelimit-*`` headers of every response
  and holds all threads for a 429's ``Retry-After``.
* **Retries, our own and bounded.** The client is built with ``max_retries=0``: 429 (except
  ``insufficient_quota``), 5xx, timeouts and dropped connections are retried here, at most
  ``max_retries`` times per request, with exponential backoff and full jitter
  (``uniform(0, min(max_backoff_s, backoff_s * 2**attempt))``), never less than the server's
  ``Retry-After``. Every retry is counted in :attr:`OpenAIEmbedder.usage`; when they run out
  the call raises :class:`EmbedderError` naming the last failure. Other 4xx are not retried.
* **Configuration errors first.** A missing key, an unknown model, a width the model cannot
  produce raise :class:`ConfigError` in ``__init__``; :meth:`OpenAIEmbedder.check` makes one
  tiny request to prove the key, the model and the returned width before any work.

``id`` is ``openai:<model>:<dimensions>@<host[:port]>``: it keys the embedding cache, so
vectors from another model, width or server are never mixed up.

>>> embedder = OpenAIEmbedder(api_key=key, model="text-embedding-3-small", dimensions=256)
>>> embedder.embed(["def parse(path): ..."]).shape
(1, 256)
>>> embedder.usage.tokens, embedder.usage.estimated_cost_usd
(5, 1e-07)
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import openai

from config.errors import ConfigError, EmbedderError
from tasks.embedding import Vectors, normalize_rows
from tasks.embedding.rate_limit import RateLimiter, parse_duration
from tasks.embedding.usage import MODELS, EmbeddingUsage, price_per_million
from tasks.tokens.openai_tokens import TokenCounter, token_counter

logger = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000
_RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)


def resolve_dimensions(model: str, dimensions: int | None) -> int:
    """The width vectors will have: ``dimensions`` if given, else the model's native width."""
    if dimensions is not None:
        return dimensions
    known = MODELS.get(model)
    if known is None:
        raise ConfigError(
            f"set CODEFLOW_OPENAI_DIMENSIONS: model {model!r} is not in codeflow's table, "
            "so its vector width is not known"
        )
    return known.max_dimensions


def _check_model(model: str, dimensions: int | None, host: str) -> None:
    known = MODELS.get(model)
    if known is None:
        if host == "api.openai.com":
            raise ConfigError(
                f"unknown OpenAI embedding model {model!r} (CODEFLOW_OPENAI_MODEL): "
                f"use one of {', '.join(sorted(MODELS))}"
            )
        return  # another server's model: check() asks the server itself
    if dimensions is None:
        return
    if not 1 <= dimensions <= known.max_dimensions:
        raise ConfigError(
            f"{model} makes vectors of 1..{known.max_dimensions} dimensions, not {dimensions}"
        )
    if not known.shortenable and dimensions != known.max_dimensions:
        raise ConfigError(f"{model} only makes {known.max_dimensions}-dimensional vectors")


@dataclass(frozen=True, slots=True)
class _Piece:
    owner: int  # index of the input text this piece belongs to
    text: str
    tokens: int


class OpenAIEmbedder:
    """Implements :class:`~tasks.embedding.Embedder` over the official ``openai`` client."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str = "text-embedding-3-small",
        dimensions: int | None = None,
        base_url: str = OPENAI_BASE_URL,
        rpm: float = 3000,
        tpm: float = 1_000_000,
        max_retries: int = 5,
        timeout_s: float = 60.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_request_tokens: int = MAX_TOKENS_PER_REQUEST,
        max_request_inputs: int = MAX_INPUTS_PER_REQUEST,
        long_inputs: Literal["split", "truncate"] = "split",
        counter: TokenCounter | None = None,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ConfigError(
                "OPENAI_API_KEY is not set: export it, or use CODEFLOW_EMBEDDER=local"
            )
        self._host = urlsplit(base_url).netloc or base_url
        self._model = model
        hostname = urlsplit(base_url).hostname or ""
        _check_model(model, dimensions, hostname)
        self._dimensions = resolve_dimensions(model, dimensions)
        if not 1 <= max_request_inputs <= MAX_INPUTS_PER_REQUEST:
            raise ConfigError(f"inputs per request must be 1..{MAX_INPUTS_PER_REQUEST}")
        if not 1 <= max_request_tokens <= MAX_TOKENS_PER_REQUEST:
            raise ConfigError(f"tokens per request must be 1..{MAX_TOKENS_PER_REQUEST}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, not {max_retries}")
        known = MODELS.get(model)
        self._max_input_tokens = min(known.max_input_tokens if known else 8191, max_request_tokens)
        self._send_dimensions = known is None or known.shortenable
        self._max_request_tokens = max_request_tokens
        self._max_request_inputs = max_request_inputs
        self._long_inputs = long_inputs
        self._max_retries = max_retries
        self._backoff_s, self._max_backoff_s = backoff_s, max_backoff_s
        self._counter = counter or token_counter()
        self._limiter = limiter or RateLimiter(rpm=rpm, tpm=tpm)
        self._sleep = sleep
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )
        self._lock = threading.Lock()
        self._usage = EmbeddingUsage(model=model, cost_per_million=price_per_million(model))
        self.split_inputs = 0
        self.truncated_inputs = 0

    # ---- Embedder -----------------------------------------------------------------------

    @property
    def id(self) -> str:
        return f"openai:{self._model}:{self._dimensions}@{self._host}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def usage(self) -> EmbeddingUsage:
        """Requests, billed tokens, retries and 429s so far (a consistent snapshot)."""
        with self._lock:
            return self._usage

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised row per text, in order; long texts split and averaged."""
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        pieces = self._pieces(texts)
        for request in self._requests(pieces):
            vectors = self._embed_request([p.text for p in request], sum(p.tokens for p in request))
            for piece, vector in zip(request, vectors, strict=True):
                out[piece.owner] += vector * piece.tokens
        return normalize_rows(out)

    def check(self) -> None:
        """One tiny request: proves the key, the model and the vector width, or raises
        :class:`ConfigError` saying which is wrong. Call it before any work starts."""
        try:
            self._embed_request(["codeflow configuration check"], 4)
        except EmbedderError as exc:
            raise ConfigError(f"the OpenAI embedder at {self._host} is unusable: {exc}") from exc

    # ---- batching -----------------------------------------------------------------------

    def _pieces(self, texts: Sequence[str]) -> list[_Piece]:
        pieces: list[_Piece] = []
        for owner, text in enumerate(texts):
            if not text:
                continue
            tokens = self._counter.count(text)
            if tokens <= self._max_input_tokens:
                pieces.append(_Piece(owner, text, max(tokens, 1)))
                continue
            parts = self._counter.split(text, self._max_input_tokens)
            if self._long_inputs == "truncate":
                parts = parts[:1]
                self.truncated_inputs += 1
            else:
                self.split_inputs += 1
            pieces.extend(_Piece(owner, p, max(self._counter.count(p), 1)) for p in parts)
        return pieces

    def _requests(self, pieces: list[_Piece]) -> list[list[_Piece]]:
        """Greedy packing, order kept: <= max inputs and <= max tokens per request."""
        requests: list[list[_Piece]] = []
        current: list[_Piece] = []
        tokens = 0
        for piece in pieces:
            full = len(current) >= self._max_request_inputs
            if current and (full or tokens + piece.tokens > self._max_request_tokens):
                requests.append(current)
                current, tokens = [], 0
            current.append(piece)
            tokens += piece.tokens
        if current:
            requests.append(current)
        return requests

    # ---- one request, with retries ------------------------------------------------------

    def _embed_request(self, texts: list[str], tokens: int) -> Vectors:
        last: Exception | None = None
        for attempt in range(self._max_retries + 1):
            if attempt:
                self._count(retries=1)
            self._limiter.acquire(tokens)
            try:
                raw = self._client.embeddings.with_raw_response.create(
                    input=texts,
                    model=self._model,
                    encoding_format="base64",
                    dimensions=self._dimensions if self._send_dimensions else openai.omit,
                )
            except _RETRYABLE as exc:
                last = exc
                self._back_off(exc, attempt)
                continue
            except openai.APIStatusError as exc:
                raise self._refusal(exc) from exc
            self._limiter.observe(raw.headers)
            return self._decode(raw.parse(), len(texts), tokens)
        raise EmbedderError(
            f"embedding request to {self._host} failed after {self._max_retries + 1} attempts: "
            f"{_describe(last)}"
        ) from last

    def _back_off(self, exc: Exception, attempt: int) -> None:
        """Wait before the next attempt; a 429 holds every thread through the limiter."""
        delay = random.uniform(0.0, min(self._max_backoff_s, self._backoff_s * 2**attempt))
        if isinstance(exc, openai.RateLimitError):
            if _error_code(exc) == "insufficient_quota":
                raise EmbedderError(
                    f"the OpenAI account behind OPENAI_API_KEY has no quota left ({self._host})"
                ) from exc
            self._count(throttled=1)
            self._limiter.observe(exc.response.headers)
            retry_after = _retry_after(exc.response.headers)
            self._limiter.penalize(max(delay, retry_after or 0.0))
            delay = 0.0  # the limiter's hold is the wait
        logger.info("embedding attempt %d failed (%s); retrying", attempt + 1, _describe(exc))
        if delay and attempt < self._max_retries:
            self._sleep(delay)

    def _refusal(self, exc: openai.APIStatusError) -> Exception:
        status = exc.status_code
        if status == 401:
            return ConfigError(f"OPENAI_API_KEY was rejected by {self._host} (401)")
        if status == 403:
            return ConfigError(f"OPENAI_API_KEY may not use {self._model} at {self._host} (403)")
        if status == 404:
            return ConfigError(
                f"unknown embedding model {self._model!r} at {self._host} "
                "(CODEFLOW_OPENAI_MODEL); the server said: " + _describe(exc)
            )
        return EmbedderError(f"{self._host} refused the embedding request: {_describe(exc)}")

    def _decode(self, response: Any, expected: int, tokens: int) -> Vectors:
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != expected:
            raise EmbedderError(f"{self._host} returned {len(rows)} vectors for {expected} inputs")
        matrix = np.stack([_vector(row.embedding) for row in rows])
        if matrix.shape[1] != self._dimensions:
            raise EmbedderError(
                f"{self._host} returned {matrix.shape[1]}-dimensional vectors, expected "
                f"{self._dimensions}: set CODEFLOW_OPENAI_DIMENSIONS to what the model makes"
            )
        usage = getattr(response, "usage", None)
        billed = getattr(usage, "total_tokens", None)
        self._count(requests=1, tokens=billed if isinstance(billed, int) else tokens)
        return normalize_rows(matrix.astype(np.float32, copy=False))

    def _count(self, **deltas: int) -> None:
        with self._lock:
            u = self._usage
            self._usage = EmbeddingUsage(
                requests=u.requests + deltas.get("requests", 0),
                tokens=u.tokens + deltas.get("tokens", 0),
                retries=u.retries + deltas.get("retries", 0),
                throttled=u.throttled + deltas.get("throttled", 0),
                model=u.model,
                cost_per_million=u.cost_per_million,
            )


def _vector(value: Any) -> Vectors:
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


def _retry_after(headers: Any) -> float | None:
    millis = headers.get("retry-after-ms")
    if millis is not None:
        seconds = parse_duration(millis)
        return None if seconds is None else seconds / 1000
    raw = headers.get("retry-after")
    return parse_duration(raw) if raw is not None else None


def _error_code(exc: openai.APIStatusError) -> str | None:
    code = getattr(exc, "code", None)
    return str(code) if code else None


def _describe(exc: Exception | None) -> str:
    """One line about a failure: its kind and status, never a header or a key."""
    if exc is None:
        return "no attempt was made"
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    first = str(message).splitlines()[0][:200]
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {first}"
