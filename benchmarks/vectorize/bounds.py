"""The bounds the vectorize benchmark compares a cold index with: codeflow's embedder alone
(native and pure-Python paths) and WordLlama's own ``embed()``, over the same texts.

A module of its own, not ``__main__``: WordLlama's bound runs in spawned processes, which
import the functions they run by module name.
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks.vectorize.site_packages import flow_batches


def embedder_seconds(texts: list[str], workers: int) -> float:
    """The local embedder alone over ``texts`` in the flow's batches of 2,048: in this
    process when ``workers`` is 0, else spread over that many worker processes (the model
    loaded in each before the clock starts; its piece memo starts empty, as in a run)."""
    from concurrent.futures import ThreadPoolExecutor

    from tasks.embedding.cpu_workers import PooledLocalEmbedder, WorkerPool
    from tasks.embedding.local_embedder import LocalEmbedder

    batches = flow_batches(texts)
    if workers == 0:
        embedder = LocalEmbedder()
        start = time.perf_counter()
        for batch in batches:
            embedder.embed(batch)
        return time.perf_counter() - start
    pool = WorkerPool(workers)
    try:
        pooled = PooledLocalEmbedder(pool, 256)
        with ThreadPoolExecutor(workers) as threads:
            list(threads.map(lambda _: pooled.embed([""]), range(workers)))  # load the model
            start = time.perf_counter()
            list(threads.map(pooled.embed, batches))
            return time.perf_counter() - start
    finally:
        pool.close()


def python_path_seconds(texts: list[str], workers: int) -> float:
    """:func:`embedder_seconds` with the native extension turned off (``CODEFLOW_NATIVE=0``,
    which the worker processes inherit)."""
    before = os.environ.get("CODEFLOW_NATIVE")
    os.environ["CODEFLOW_NATIVE"] = "0"
    try:
        return embedder_seconds(texts, workers)
    finally:
        if before is None:
            del os.environ["CODEFLOW_NATIVE"]
        else:
            os.environ["CODEFLOW_NATIVE"] = before


_STOCK: dict[str, Any] = {}  # this process's WordLlama model, in wordllama_seconds' pool


def _load_wordllama() -> None:
    from tasks.embedding.local_embedder import load_stock_wordllama

    _STOCK["model"] = load_stock_wordllama()
    _STOCK["model"].embed(["warm up"], norm=True)


def _wordllama_embed(batch: list[str]) -> int:
    return len(_STOCK["model"].embed(batch, norm=True))


def wordllama_seconds(texts: list[str], workers: int) -> float:
    """WordLlama's own ``embed(norm=True)``, as the package ships it (its tokenizer pads each
    batch; its default batch size), over ``texts`` in batches of 2,048 spread over
    ``workers`` processes: the bound ARCHITECTURE.md and FIELD-NOTES.md name "the
    embedder's own time". The model is loaded in each process before the clock starts."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    batches = flow_batches(texts)
    spawn = multiprocessing.get_context("spawn")  # this process runs threads: never fork it
    with ProcessPoolExecutor(workers, spawn, initializer=_load_wordllama) as processes:
        wait([processes.submit(_wordllama_embed, ["x"]) for _ in range(workers * 2)])
        start = time.perf_counter()
        done = sum(processes.map(_wordllama_embed, batches))
        seconds = time.perf_counter() - start
    assert done == len(texts)
    return seconds
