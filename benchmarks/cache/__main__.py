"""Cache benchmark: codeflow's RedisCache vs cashews, same Redis server, same run.

    .venv/bin/python -m benchmarks.cache [--quick]

Prints p50/p99 of get, get_many(100), set, invalidate-by-tag over 1K/10K/100K tagged keys,
and the hit rate of a realistic repeated-lookup workload (Zipf-distributed lookups of chunk
embeddings, cache-aside), then the ratios peer / codeflow.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import redis
from cashews import Cache

from benchmarks.common import redis_server, summary, timed
from tasks.cache.redis_cache import RedisCache

VALUE = {"vector": [round(random.random(), 6) for _ in range(80)], "path": "src/app/models.py"}


def bench_codeflow(url: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    client = redis.Redis.from_url(url)
    cache = RedisCache(client, "bench", ttl_s=3600)
    keys = [f"k{i}" for i in range(1000)]
    cache.set_many(dict.fromkeys(keys, VALUE))
    rows = {
        "get": summary(timed(lambda: cache.get(random.choice(keys)), args.n)),
        "get_many(100)": summary(
            timed(lambda: cache.get_many(random.sample(keys, 100)), args.n // 5)
        ),
        "set": summary(timed(lambda: cache.set(random.choice(keys), VALUE), args.n)),
    }
    for size in args.sizes:
        tag = f"tag{size}"
        for start in range(0, size, 5000):
            cache.set_many(
                {f"t{size}:{i}": i for i in range(start, min(size, start + 5000))}, tags=[tag]
            )
        samples = timed(functools.partial(cache.invalidate_tags, [tag]), 1)
        rows[f"invalidate tag ({size:,} keys)"] = summary(samples)
    rows["hit rate (Zipf workload)"] = {"value": zipf_hit_rate(cache.get, cache.set)}
    client.flushdb()
    return rows


def bench_cashews(url: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    return asyncio.run(_cashews(url, args))


async def _cashews(url: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    cache = Cache()
    cache.setup(url)
    keys = [f"k{i}" for i in range(1000)]
    await cache.set_many(dict.fromkeys(keys, VALUE), expire=3600)
    rows = {
        "get": summary(await atimed(lambda: cache.get(random.choice(keys)), args.n)),
        "get_many(100)": summary(
            await atimed(lambda: cache.get_many(*random.sample(keys, 100)), args.n // 5)
        ),
        "set": summary(
            await atimed(lambda: cache.set(random.choice(keys), VALUE, expire=3600), args.n)
        ),
    }
    for size in args.sizes:
        tag = f"tag{size}"
        cache.register_tag(tag, f"t{size}:{{i}}")
        for start in range(0, size, 5000):
            await asyncio.gather(
                *(
                    cache.set(f"t{size}:{i}", i, expire=3600, tags=[tag])
                    for i in range(start, min(size, start + 5000))
                )
            )
        rows[f"invalidate tag ({size:,} keys)"] = summary(
            await atimed(functools.partial(cache.delete_tags, tag), 1)
        )
    rows["hit rate (Zipf workload)"] = {"value": float("nan")}
    await cache.clear()
    await cache.close()
    return rows


async def atimed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def zipf_hit_rate(
    get: Callable[[str], Any], put: Callable[[str, Any], None], lookups: int = 20_000
) -> float:
    """Cache-aside over 5,000 distinct chunks looked up with a Zipf(1.1) popularity."""
    rng = random.Random(7)
    weights = [1 / (rank**1.1) for rank in range(1, 5001)]
    hits = 0
    for key in rng.choices([f"chunk{i}" for i in range(5000)], weights, k=lookups):
        if get(key) is not None:
            hits += 1
        else:
            put(key, VALUE)
    return round(hits / lookups, 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples, 1K/10K keys only")
    args = parser.parse_args()
    args.n = 500 if args.quick else 5000
    args.sizes = [1000, 10_000] if args.quick else [1000, 10_000, 100_000]
    with redis_server() as url:
        ours = bench_codeflow(url, args)
        peer = bench_cashews(url, args)
    table = pd.DataFrame(
        {
            "codeflow p50 ms": {k: v.get("p50_ms", v.get("value")) for k, v in ours.items()},
            "codeflow p99 ms": {k: v.get("p99_ms") for k, v in ours.items()},
            "cashews p50 ms": {k: v.get("p50_ms", v.get("value")) for k, v in peer.items()},
            "cashews p99 ms": {k: v.get("p99_ms") for k, v in peer.items()},
        }
    )
    table["p99 ratio (cashews/codeflow)"] = (
        table["cashews p99 ms"] / table["codeflow p99 ms"]
    ).round(1)
    print(table.to_string())


if __name__ == "__main__":
    main()
