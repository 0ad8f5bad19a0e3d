"""Dask benchmark: a cold index of the same corpus with the default thread pool, then on a
Dask cluster of separate processes (``dask scheduler`` + 1, then 2, ``dask worker --nthreads
1`` processes), each run on a fresh Redis server and a fresh ``CODEFLOW_HOME``; chunks/s and
whole-run seconds (the flow call, as a caller waits for it; the cluster is started before).
Each runner indexes twice: on just-started workers ("cold": each worker process imports
Prefect, loads the model and opens LanceDB on its first tasks), then again on the same
workers ("warm"), with Redis emptied and a new home in between.

    .venv/bin/python -m benchmarks.dask [--source DIR] [--files N] [--quick]

The corpus is ``--files`` (default 3,000; ``--quick``: 300) Python files of DIR (default:
this interpreter's site-packages), in a git repository (``benchmarks/vectorize``'s corpus).
Prefect runs on a temporary API server (Prefect's test harness) the workers reach over HTTP;
Redis is a private redis-server on a loopback TCP port; the store is LanceDB under the run's
``CODEFLOW_HOME``, which on this one machine the workers open too. Also printed: how long
reading the corpus's files takes in one thread, the work a shipping runner moves to the flow.
"""

from __future__ import annotations

import argparse
import os
import sysconfig
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.common import codeflow_home, redis_server
from benchmarks.vectorize.site_packages import build_corpus

RUNNERS = (("threads", 0), ("dask", 1), ("dask", 2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["purelib"]))
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="300 files")
    return parser.parse_args()


def index_twice(work: Path, repo: Path, runner: str, workers: int) -> list[dict[str, Any]]:
    """Two cold indexes on a fresh Redis (emptied between them) and fresh homes; the first
    on just-started Dask workers, the second on the same, warm, workers."""
    from tests.dask_support import DaskCluster

    name = f"{runner}-{workers}"
    with redis_server() as url:
        env = {"REDIS_URL": url, "CODEFLOW_TASK_RUNNER": runner}
        cluster = None
        if workers:
            worker_env = {"REDIS_URL": url, "PREFECT_HOME": str(work / name / "prefect")}
            cluster = DaskCluster(work / name / "dask", worker_env, workers=workers).start()
            env["CODEFLOW_DASK_ADDRESS"] = cluster.address
        try:
            rows = []
            for run in ("cold", "warm"):
                redis.Redis.from_url(url).flushall()
                rows.append(_timed_index({**env, "CODEFLOW_HOME": str(work / name / run)}, repo))
            return rows
        finally:
            if cluster is not None:
                cluster.stop()


def _timed_index(env: dict[str, str], repo: Path) -> dict[str, Any]:
    from flows.sync import vectorize_source

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        started = time.perf_counter()
        summary = vectorize_source(str(repo))
        return {**summary, "whole_s": time.perf_counter() - started}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def read_seconds(repo: Path, files: list[Path]) -> float:
    """Reading every file of the corpus in one thread, as the flow does for shipped loads."""
    from config import load_settings
    from tasks.pipeline import index_steps
    from tasks.services import in_memory_services

    svc = in_memory_services(load_settings({}), repo / ".." / "scratch")
    paths = [p.relative_to(repo).as_posix() for p in files]
    started = time.perf_counter()
    index_steps.read(svc, str(repo), paths)
    return time.perf_counter() - started


def print_report(corpus: str, rows: dict[str, dict[str, Any]], read_s: float) -> None:
    print(corpus)
    print(f"{'runner':<22}{'chunks':>8}{'whole s':>10}{'flow s':>9}{'chunks/s':>11}")
    for name, row in rows.items():
        rate = row["chunks_total"] / row["whole_s"]
        print(
            f"{name:<22}{row['chunks_total']:>8}{row['whole_s']:>10.2f}"
            f"{row['duration_s']:>9.2f}{rate:>11.0f}"
        )
    shipped = "the flow's part when tasks ship"
    print(f"reading the corpus's files in one thread ({shipped}): {read_s:.3f} s")


def run_all(args: argparse.Namespace, work: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    repo = work / "repo"
    repo.mkdir()
    files = build_corpus(args.source, repo, 300 if args.quick else args.files)
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    rows: dict[str, dict[str, Any]] = {}
    with prefect_test_harness(server_startup_timeout=120):
        for runner, workers in RUNNERS:
            label = "threads (default)" if runner == "threads" else f"dask, {workers} worker(s)"
            cold, warm = index_twice(work, repo, runner, workers)
            rows[label], rows[f"{label}, warm"] = cold, warm
    corpus = f"corpus: {len(files)} Python files, {megabytes:.1f} MB"
    print_report(corpus, rows, read_seconds(repo, files))


def main() -> None:
    args = parse_args()
    with codeflow_home("codeflow-daskbench-") as work:
        run_all(args, work)


if __name__ == "__main__":
    main()
