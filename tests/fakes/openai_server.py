"""A local server speaking OpenAI's ``POST /v1/embeddings``, for tests and benchmarks.

It checks what OpenAI checks (bearer key, known model, ``dimensions`` range, at most 2,048
inputs, 8,191 tokens per input and 300,000 tokens per request, no empty strings), answers
with deterministic vectors (:class:`~tasks.embedding.hashing_embedder.HashingEmbedder`:
texts sharing identifiers get similar vectors), reports ``usage`` and sends
``x-ratelimit-*`` headers.
With ``rpm``/``tpm`` set it also *enforces* them over a sliding minute, answering 429 with
``Retry-After`` as OpenAI does. Faults come from :class:`tests.fakes.http_fake.Fault`.

>>> with OpenAIFake(api_key="sk-test-x") as fake:
...     client = openai.OpenAI(api_key="sk-test-x", base_url=fake.base_url)
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from tasks.embedding.hashing_embedder import HashingEmbedder
from tasks.embedding.usage import MODELS
from tasks.tokens.openai_tokens import token_counter
from tests.fakes.http_fake import FakeHTTPServer, Reply, Request


def _error(status: int, message: str, code: str | None = None) -> Reply:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


def fake_vectors(texts: list[str], dims: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Hashing-trick vectors; a text without code tokens gets one from its bytes (never 0)."""
    vectors = HashingEmbedder(max(dims, 8)).embed(texts)[:, :dims].copy()
    for row, text in enumerate(texts):
        if not vectors[row].any():
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
            vectors[row] = np.random.default_rng(seed).standard_normal(dims)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


class OpenAIFake(FakeHTTPServer):
    def __init__(
        self,
        api_key: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        extra_models: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.rpm, self.tpm = rpm, tpm
        self.models = {name: m.max_dimensions for name, m in MODELS.items()}
        self.models.update(extra_models or {})
        self.embedded_texts: list[str] = []  # every input of every successful request
        self.batches: list[tuple[int, int]] = []  # (inputs, tokens) per successful request
        self._window: deque[tuple[float, int]] = deque()
        self._window_lock = threading.Lock()
        self._counter = token_counter()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def route(self, request: Request) -> Reply:
        if (request.method, request.path) != ("POST", "/v1/embeddings"):
            return _error(404, f"no route {request.method} {request.path}")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        body = request.body if isinstance(request.body, dict) else {}
        return self._embeddings(body)

    def _embeddings(self, body: dict[str, Any]) -> Reply:
        model = body.get("model")
        if model not in self.models:
            return _error(404, f"The model `{model}` does not exist", "model_not_found")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or len(inputs) > 2048:
            return _error(400, "'input' must be 1..2048 strings")
        if any(not isinstance(text, str) or not text for text in inputs):
            return _error(400, "'input' cannot contain an empty string")
        counts = [self._counter.count(text) for text in inputs]
        if max(counts) > 8191:
            return _error(400, "This model's maximum context length is 8192 tokens")
        if sum(counts) > 300_000:
            return _error(400, "Requested 300001+ tokens, max 300000 tokens per request")
        dims = body.get("dimensions", self.models[model])
        if not isinstance(dims, int) or not 1 <= dims <= self.models[model]:
            return _error(400, f"dimensions must be 1..{self.models[model]}")
        throttled = self._admit(sum(counts))
        if throttled is not None:
            return throttled
        return self._answer(model, inputs, counts, dims, body.get("encoding_format", "float"))

    def _answer(
        self, model: str, inputs: list[str], counts: list[int], dims: int, encoding: str
    ) -> Reply:
        vectors = fake_vectors(inputs, dims)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(np.ascontiguousarray(v, "<f4").tobytes()).decode()
                if encoding == "base64"
                else v.tolist(),
            }
            for i, v in enumerate(vectors)
        ]
        with self._window_lock:
            self.embedded_texts.extend(inputs)
            self.batches.append((len(inputs), sum(counts)))
        usage = {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
        body = {"object": "list", "data": data, "model": model, "usage": usage}
        return Reply(200, body, self._limit_headers())

    # ---- server-side rate limits ------------------------------------------------------------

    def _admit(self, tokens: int) -> Reply | None:
        if self.rpm is None and self.tpm is None:
            return None
        now = time.monotonic()
        with self._window_lock:
            while self._window and now - self._window[0][0] >= 60:
                self._window.popleft()
            used_requests = len(self._window)
            used_tokens = sum(t for _, t in self._window)
            over = (self.rpm is not None and used_requests + 1 > self.rpm) or (
                self.tpm is not None and used_tokens + tokens > self.tpm
            )
            if over:
                wait = 60 - (now - self._window[0][0]) if self._window else 1.0
                reply = _error(429, "Rate limit reached for requests", "rate_limit_exceeded")
                reply.headers = {"Retry-After": f"{max(wait, 0.01):.3f}", **self._limit_headers()}
                return reply
            self._window.append((now, tokens))
        return None

    def _limit_headers(self) -> dict[str, str]:
        now = time.monotonic()
        with self._window_lock:
            used = [(at, t) for at, t in self._window if now - at < 60]
        headers: dict[str, str] = {}
        reset = f"{max(0.0, 60 - (now - used[0][0])):.3f}s" if used else "0s"
        if self.rpm is not None:
            headers["x-ratelimit-limit-requests"] = str(self.rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, self.rpm - len(used)))
            headers["x-ratelimit-reset-requests"] = reset
        if self.tpm is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.tpm)
            remaining = max(0, self.tpm - sum(t for _, t in used))
            headers["x-ratelimit-remaining-tokens"] = str(remaining)
            headers["x-ratelimit-reset-tokens"] = reset
        return headers
