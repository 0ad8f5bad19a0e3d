"""Production backends through the local protocol servers: throughput and rate limits.

    .venv/bin/python -m benchmarks.backends [--chunks 20000] [--rpm 600]

Measures, with the official clients over real HTTP on loopback:
* OpenAIEmbedder: chunks/s and tokens/s with no limit; then requests per minute *measured
  at the server* with ``--rpm`` configured (client pacing), and with the server enforcing a
  lower limit through its ``x-ratelimit-*`` headers (the client must follow, not hit 429s).
* PineconeStore: upsert vectors/s (requests within 1,000 records / 2 MB), query p50/p99,
  delete vectors/s.
The fakes' own work (hashing vectors, JSON) is part of every figure: these are upper bounds
on client overhead, not predictions of the real services' latency.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import percentile
from tasks.embedding.openai_embedder import OpenAIEmbedder
from tasks.records import Chunk
from tasks.vectors.pinecone_store import PineconeStore
from tests.fakes.openai_server import OpenAIFake
from tests.fakes.pinecone_server import PineconeFake

KEY = "sk-test-benchmark"


def corpus(n: int) -> list[str]:
    body = "\n".join(
        f"    total_{j} = compute(values[{j}], weight={j}) + offset" for j in range(20)
    )
    return [
        f"def handler_{i}(values, offset):\n{body}\n    return total_{i % 20}" for i in range(n)
    ]


def embed_throughput(n: int) -> dict[str, object]:
    texts = corpus(n)
    with OpenAIFake(KEY) as fake:
        embedder = OpenAIEmbedder(
            api_key=KEY, base_url=fake.base_url, dimensions=256, rpm=1e9, tpm=1e12
        )
        started = time.perf_counter()
        for start in range(0, n, 512):  # the flow's batch size
            embedder.embed(texts[start : start + 512])
        seconds = time.perf_counter() - started
    usage = embedder.usage
    return {
        "case": f"openai embed {n} chunks, no limit",
        "seconds": round(seconds, 2),
        "chunks_per_s": round(n / seconds),
        "tokens_per_s": round(usage.tokens / seconds),
        "requests": usage.requests,
        "est_cost_usd": usage.estimated_cost_usd,
    }


def measured_rpm(times: list[float]) -> float:
    return (len(times) - 1) / (max(times) - min(times)) * 60 if len(times) > 1 else 0.0


def rate_limit(rpm: int, requests: int, server_rpm: int | None) -> dict[str, object]:
    with OpenAIFake(KEY, rpm=server_rpm) as fake:
        embedder = OpenAIEmbedder(api_key=KEY, base_url=fake.base_url, dimensions=64, rpm=rpm)
        for text in corpus(requests):
            embedder.embed([text])
        log = fake.requests_to("/v1/embeddings")
    times = [e.at for e in log]
    return {
        "case": f"rpm client={rpm} server={server_rpm or '-'}",
        "requests": len(times),
        "measured_rpm": round(measured_rpm(times), 1),
        "http_429": sum(e.outcome == "429" for e in log),
        "limiter_waits": embedder.limiter.stats.waits,
    }


def pinecone(n: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((n, 256)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(f"m{i // 40}.py", "python", i, i + 3, text) for i, text in enumerate(corpus(n))]
    with tempfile.TemporaryDirectory() as tmp, PineconeFake("pc-test-bench", dimension=256) as fake:
        store = PineconeStore(
            api_key="pc-test-bench",
            index_name="codeflow",
            controller_host=fake.url,
            dimensions=256,
            catalog_dir=Path(tmp) / "catalog",
        )
        started = time.perf_counter()
        for start in range(0, n, 5000):  # the flow's upsert slice
            store.upsert("bench@main", chunks[start : start + 5000], vectors[start : start + 5000])
        upsert_s = time.perf_counter() - started
        latencies = []
        for row in vectors[:100]:
            t = time.perf_counter()
            store.query("bench@main", row, 10)
            latencies.append((time.perf_counter() - t) * 1000)
        started = time.perf_counter()
        store.delete("bench@main", [c.id for c in chunks])
        delete_s = time.perf_counter() - started
        sizes = fake.upsert_sizes
    return [
        {
            "case": f"pinecone upsert {n} x 256d",
            "seconds": round(upsert_s, 2),
            "vectors_per_s": round(n / upsert_s),
            "requests": len(sizes),
            "max_request_mb": round(max(s for _, s in sizes) / 1e6, 2),
        },
        {
            "case": "pinecone query top-10 (fake scans all)",
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
        },
        {
            "case": f"pinecone delete {n}",
            "seconds": round(delete_s, 2),
            "vectors_per_s": round(n / delete_s),
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--rpm", type=int, default=600)
    args = parser.parse_args()
    rows = [embed_throughput(args.chunks)]
    rows.append(rate_limit(args.rpm, 40, None))
    rows.append(rate_limit(6000, 12, server_rpm=300))
    rows.extend(pinecone(args.chunks))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).astype(object).fillna("").to_string(index=False))


if __name__ == "__main__":
    main()
