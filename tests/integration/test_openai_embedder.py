"""OpenAIEmbedder: the official ``openai`` client against the local OpenAI protocol server,
with faults injected. Measurements are taken at the server (what it received, and when)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from config.errors import ConfigError, EmbedderError
from tasks.embedding.openai_embedder import OpenAIEmbedder
from tasks.tokens.openai_tokens import token_counter
from tests.fakes.http_fake import Fault, max_in_window
from tests.fakes.openai_server import OpenAIFake, fake_vectors

KEY = "sk-test-openai-embedder"
PATH = "/v1/embeddings"


@pytest.fixture
def fake() -> Iterator[OpenAIFake]:
    with OpenAIFake(KEY) as server:
        yield server


def make(fake: OpenAIFake, **options: object) -> OpenAIEmbedder:
    settings: dict[str, object] = {"dimensions": 64, "backoff_s": 0.05, "timeout_s": 1.0}
    settings.update(options)
    return OpenAIEmbedder(api_key=KEY, base_url=fake.base_url, **settings)  # type: ignore[arg-type]


def texts(n: int) -> list[str]:
    return [f"def handler_{i}(event):\n    return event.value + {i}" for i in range(n)]


def test_requests_stay_within_the_input_and_token_caps(fake: OpenAIFake) -> None:
    embedder = make(fake)
    vectors = embedder.embed(texts(2100))
    assert vectors.shape == (2100, 64)
    assert [inputs for inputs, _ in fake.batches] == [2048, 52]
    small = make(fake, max_request_tokens=1000)
    fake.batches.clear()
    small.embed(texts(200))
    assert all(tokens <= 1000 for _, tokens in fake.batches) and len(fake.batches) > 1
    assert sum(inputs for inputs, _ in fake.batches) == 200


def test_long_inputs_are_split_and_averaged_never_dropped(fake: OpenAIFake) -> None:
    counter = token_counter()
    long_text = "\n".join(f"value_{i} = compute_{i}(data) + {i}" for i in range(2500))
    assert counter.count(long_text) > 8191
    embedder = make(fake)
    vector = embedder.embed(["def short(): pass", long_text])[1]
    pieces = fake.embedded_texts[1:]
    assert "".join(pieces) == long_text and all(counter.count(p) <= 8191 for p in pieces)
    weights = np.array([counter.count(p) for p in pieces], dtype=np.float32)
    expected = (fake_vectors(pieces, 64) * weights[:, None]).sum(axis=0)
    assert np.allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)
    assert embedder.split_inputs == 1

    fake.embedded_texts.clear()
    truncating = make(fake, long_inputs="truncate")
    assert np.linalg.norm(truncating.embed([long_text])[0]) == pytest.approx(1.0, abs=1e-5)
    assert fake.embedded_texts == [pieces[0]] and truncating.truncated_inputs == 1


def test_faults_are_retried_and_nothing_is_lost(fake: OpenAIFake) -> None:
    clean = make(fake).embed(texts(10))
    fake.reset_log()
    fake.inject(
        Fault("status", status=500),
        Fault("status", status=502),
        Fault("drop"),
        Fault("slow", delay_s=2.0),  # the client's timeout is 1 s
    )
    embedder = make(fake, max_retries=4)
    assert np.array_equal(embedder.embed(texts(10)), clean)
    assert [e.outcome for e in fake.requests_to(PATH)] == [
        "fault:status",
        "fault:status",
        "fault:drop",
        "fault:slow",
        "ok",
    ]
    assert (embedder.usage.retries, embedder.usage.requests) == (4, 1)


def test_retries_are_bounded(fake: OpenAIFake) -> None:
    fake.inject(*[Fault("status", status=503)] * 4)
    embedder = make(fake, max_retries=2)
    with pytest.raises(EmbedderError, match=r"after 3 attempts.*503"):
        embedder.embed(["def f(): pass"])
    assert len(fake.requests_to(PATH)) == 3 and embedder.usage.retries == 2


def test_retry_after_is_honoured_by_every_thread(fake: OpenAIFake) -> None:
    fake.inject(Fault("status", status=429, retry_after=0.6))
    embedder = make(fake)
    embedder.embed(["def f(): pass"])
    first, second = fake.requests_to(PATH)
    assert second.at - first.at >= 0.6
    assert embedder.usage.throttled == 1 and embedder.limiter.stats.penalties == 1


def test_exhausted_quota_is_not_retried(fake: OpenAIFake) -> None:
    body = {"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}}
    fake.inject(Fault("status", status=429, body=body))
    with pytest.raises(EmbedderError, match="no quota left"):
        make(fake).embed(["def f(): pass"])
    assert len(fake.requests_to(PATH)) == 1


def test_configured_requests_per_minute_are_respected(fake: OpenAIFake) -> None:
    """600 requests/min = one every 100 ms, from three threads sharing the embedder."""
    embedder = make(fake, rpm=600)
    work = [texts(8)[i : i + 1] for i in range(8)]

    def run() -> None:
        for batch in work:
            embedder.embed(batch)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times = [e.at for e in fake.requests_to(PATH)]
    assert len(times) == 24
    assert max_in_window(times, 1.0) <= 11  # 10 per second, +1 for arrival jitter
    per_minute = (len(times) - 1) / (max(times) - min(times)) * 60
    assert per_minute <= 600 * 1.05, per_minute


def test_server_headers_lower_the_limit_and_avoid_429s() -> None:
    with OpenAIFake(KEY, rpm=300) as strict:
        embedder = make(strict, rpm=6000)
        for text in texts(6):
            embedder.embed([text])
        assert embedder.limiter.requests.per_minute == 300
        outcomes = [e.outcome for e in strict.requests_to(PATH)]
        assert outcomes == ["ok"] * 6
        times = [e.at for e in strict.requests_to(PATH)]
        gaps = np.diff(times)[1:]  # after the first answer taught the limiter
        assert gaps.min() >= 0.19, gaps


def test_usage_counts_billed_tokens_and_cost(fake: OpenAIFake) -> None:
    embedder = make(fake)
    embedder.embed(texts(30))
    tokens = sum(t for _, t in fake.batches)
    usage = embedder.usage
    assert (usage.requests, usage.tokens) == (1, tokens)
    assert usage.estimated_cost_usd == pytest.approx(round(tokens * 0.02 / 1e6, 6))
    assert usage.as_summary()["embedding_tokens"] == tokens


def test_id_and_configuration_checks(fake: OpenAIFake) -> None:
    embedder = make(fake, model="text-embedding-3-large", dimensions=1024)
    host = fake.base_url.split("//")[1].split("/")[0]
    assert embedder.id == f"openai:text-embedding-3-large:1024@{host}"
    embedder.check()
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        OpenAIEmbedder(api_key="", base_url=fake.base_url)
    with pytest.raises(ConfigError, match="unknown OpenAI embedding model"):
        OpenAIEmbedder(api_key=KEY, model="text-embedding-9")
    with pytest.raises(ConfigError, match=r"1\.\.1536"):
        OpenAIEmbedder(api_key=KEY, dimensions=4096)
    with pytest.raises(ConfigError, match="only makes 1536"):
        OpenAIEmbedder(api_key=KEY, model="text-embedding-ada-002", dimensions=256)
    unknown_here = make(fake, model="nomic-embed-text", dimensions=64)
    with pytest.raises(ConfigError, match="unknown embedding model 'nomic-embed-text'"):
        unknown_here.check()
    with pytest.raises(ConfigError, match="OPENAI_API_KEY was rejected"):
        OpenAIEmbedder(api_key="sk-test-other", base_url=fake.base_url).check()
