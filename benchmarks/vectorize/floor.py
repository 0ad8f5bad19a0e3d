"""The floor under a cold index's overhead: what the parts issue 3 requires cost on their
own, next to the embedding they surround.

    .venv/bin/python -m benchmarks.vectorize.floor [--source DIR] [--files N]

Issue 3 asks for "pipeline overhead <= 20% of embedding time". On the vectorize
benchmark's corpus (same files, same history), this measures each required part alone, in
this process, in CPU seconds (so that the two cores do not blur the comparison):

- embedding: codeflow's local embedder over every chunk, in the flow's batches;
- reading the files (with the flow's checks), chunking them syntax-aware, and the chunks'
  BM25 documents (code-aware tokens, as the chunk workers make them);
- LanceDB: writing the rows in the flow's write batches, then folding them into the
  full-text index;
- Prefect: the task runs a cold run makes (at least: one per load, lookup and write, one
  embedding task per load, four more), with tasks that do nothing; this process's CPU
  and that of its temporary API server, which records the runs after they end.

Their sum besides embedding is a lower bound of the pipeline's overhead, not an estimate
of it: a run also hashes every text twice, looks up and fills the embedding cache in
Redis, and moves chunks and vectors between processes.

The corpus is Python. Chunking the other languages goes through tree-sitter; its cost is
printed on its own, against the embedding of the same chunks, over the relevance
benchmark's projects in ten other languages (``python -m benchmarks.relevance.corpus``
fetches them; without them that part is skipped).
"""

from __future__ import annotations

import argparse
import math
import os
import sysconfig
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from benchmarks.common import codeflow_home
from benchmarks.vectorize.site_packages import MAX_BYTES, build_corpus, flow_batches
from config import load_settings
from flows.cli.prefect_api import PrefectApi, start_prefect_api

T = TypeVar("T")
QUIET_S = 0.5  # the API server counts as done once it used < 10 ms of CPU over this long
QUIET_LIMIT_S = 30.0


def cpu_seconds(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and the CPU seconds this process (all its threads) spent in it."""
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settled_cpu(pid: int) -> float:
    """``pid``'s CPU seconds once it has gone quiet (it works through events after a run)."""
    deadline = time.monotonic() + QUIET_LIMIT_S
    last = process_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(QUIET_S)  # sampling another process's CPU: nothing to wait on
        now = process_cpu(pid)
        if now - last < 0.01:
            return now
        last = now
    return last


def read_and_chunk(repo: Path) -> tuple[list[Any], dict[str, float]]:
    from tasks.index.chunking import ChunkingPolicy, chunk_files
    from tasks.repo.git_repository import GitRepository
    from tasks.tokens.code_tokens import search_documents

    with GitRepository.open(str(repo)) as git_repo:
        paths = sorted(git_repo.fingerprint().files)
        (contents, _), read_s = cpu_seconds(lambda: git_repo.read_files(paths, MAX_BYTES))
    policy = ChunkingPolicy()
    (chunks, _), chunk_s = cpu_seconds(lambda: chunk_files(list(contents.items()), policy))
    documents, bm25_s = cpu_seconds(lambda: search_documents(chunks))
    chunks = [replace(c, search_text=d) for c, d in zip(chunks, documents, strict=True)]
    return chunks, {
        "reading the files": read_s,
        "chunking (syntax-aware)": chunk_s,
        "BM25 documents (code-aware tokens)": bm25_s,
    }


def embed(texts: list[str]) -> tuple[np.ndarray[Any, np.dtype[np.float32]], float]:
    from tasks.embedding.local_embedder import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.embed([""])  # the model loads before the clock starts
    parts, seconds = cpu_seconds(lambda: [embedder.embed(b) for b in flow_batches(texts)])
    return np.vstack(parts), seconds


def lancedb_seconds(work: Path, chunks: list[Any], vectors: Any) -> dict[str, float]:
    from flows.vectorize import WRITE_BATCH
    from tasks.vectors.lance_store import LanceStore

    store = LanceStore(work / "floor-lancedb", dimensions=vectors.shape[1])

    def write_all() -> None:
        for start in range(0, len(chunks), WRITE_BATCH):
            end = start + WRITE_BATCH
            store.append("floor@main", chunks[start:end], vectors[start:end])

    return {
        "LanceDB: write the rows in the flow's batches": cpu_seconds(write_all)[1],
        "LanceDB: fold them into the full-text index": cpu_seconds(
            lambda: store.optimize("floor@main")
        )[1],
    }


def cold_task_runs(files: int, chunks: int) -> int:
    """The fewest task runs a cold run of ``files`` files and ``chunks`` chunks makes."""
    from flows.vectorize import WRITE_BATCH
    from tasks.pipeline.scheduler import FILES_PER_LOAD

    loads = math.ceil(files / FILES_PER_LOAD)
    embeds = max(loads, math.ceil(chunks / load_settings().embedding_batch))
    return 2 * loads + embeds + math.ceil(chunks / WRITE_BATCH) + 4


def prefect_seconds(api: PrefectApi, runs: int) -> float:
    """CPU seconds of ``runs`` task runs that do nothing, submitted as the flow submits its
    tasks (thread-pool runner); this process's and its temporary API server's."""
    api.ready()
    from prefect import flow, task
    from prefect.futures import wait

    from flows.vectorize import TASK_RUNNER

    @task
    def nothing(i: int) -> int:
        return i

    @flow(task_runner=TASK_RUNNER)
    def pattern(n: int) -> None:
        wait([nothing.submit(i) for i in range(n)])

    if api.process is None:
        raise SystemExit("run this benchmark without PREFECT_API_URL: it measures its own server")
    with api.flow_runs():
        pattern(1)  # the first run's one-off costs (clients, routes) are not per task
        before = settled_cpu(api.process.pid)
        _, own = cpu_seconds(lambda: pattern(runs))
        server = settled_cpu(api.process.pid) - before
    return own + server


def other_languages() -> None:
    """Tree-sitter chunking against embedding, over the relevance corpus's non-Python files."""
    from benchmarks.relevance.corpus import DEFAULT_CACHE, projects
    from tasks.index.chunking import ChunkingPolicy, chunk_files

    trees = [DEFAULT_CACHE / p.name / "tree" for p in projects() if p.language != "python"]
    if not all((tree / ".git").is_dir() for tree in trees):
        print("\nother languages: skipped (fetch them: python -m benchmarks.relevance.corpus)")
        return
    files = [
        (path.relative_to(tree).as_posix(), path.read_bytes())
        for tree in trees
        for path in sorted(tree.rglob("*"))
        if path.is_file() and ".git" not in path.parts and not path.name.endswith(".py")
    ]
    (chunks, _), chunk_s = cpu_seconds(lambda: chunk_files(files, ChunkingPolicy()))
    _, embed_s = embed([c.text for c in chunks])
    megabytes = sum(len(data) for _, data in files) / 1e6
    print(f"\nother languages: {len(files)} files, {megabytes:.1f} MB, {len(chunks)} chunks")
    print(f"{'embedding (codeflow embedder)':<58} {embed_s:7.2f} {'100%':>13}")
    name = "chunking, syntax-aware (tree-sitter)"
    print(f"{name:<58} {chunk_s:7.2f} {chunk_s / embed_s:12.0%}")


def report(figures: dict[str, float], embed_s: float, corpus: str) -> None:
    print(corpus)
    print(f"{'part':<58} {'CPU-s':>7} {'vs embedding':>13}")
    print(f"{'embedding (codeflow embedder)':<58} {embed_s:7.2f} {'100%':>13}")
    for name, seconds in figures.items():
        print(f"{name:<58} {seconds:7.2f} {seconds / embed_s:12.0%}")
    rest = sum(figures.values())
    print(f"{'sum besides embedding: the floor of the overhead':<58} {rest:7.2f} "
          f"{rest / embed_s:12.0%}")  # fmt: skip
    print("issue 3's goal: overhead <= 20% of embedding time")


def measure(work: Path, files: list[Path], api: PrefectApi) -> tuple[dict[str, float], float, int]:
    """Each part's CPU seconds, the embedding's, and how many chunks there were."""
    chunks, figures = read_and_chunk(work / "repo")
    vectors, embed_s = embed([c.text for c in chunks])
    figures.update(lancedb_seconds(work, chunks, vectors))
    runs = cold_task_runs(len(files), len(chunks))
    figures[f"Prefect: {runs} task runs that do nothing (+ its API)"] = prefect_seconds(api, runs)
    return figures, embed_s, len(chunks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["purelib"]))
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    with codeflow_home("codeflow-floor-") as work:
        api = start_prefect_api(load_settings())  # before prefect is imported; starts meanwhile
        try:
            (work / "repo").mkdir()
            files = build_corpus(args.source, work / "repo", args.files)
            figures, embed_s, chunks = measure(work, files, api)
        finally:
            api.stop()
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        report(figures, embed_s, f"{len(files)} files, {megabytes:.1f} MB, {chunks} chunks")
    other_languages()


if __name__ == "__main__":
    main()
