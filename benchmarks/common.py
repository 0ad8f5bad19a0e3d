"""Helpers shared by the benchmarks: percentiles, a private Redis server, table printing."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall-clock milliseconds of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(samples), 4),
        "p99_ms": round(percentile(samples, 99), 4),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_server(*extra: str) -> Iterator[str]:
    """A private redis-server on a loopback TCP port, as a peer library would use it;
    ``extra``: more ``redis-server`` arguments."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="codeflow-bench-")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        ["redis-server", *args, "--dir", workdir, *extra], stdout=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(200):
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.02)
        yield url
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def codeflow_home(prefix: str) -> Iterator[Path]:
    """A throw-away work folder whose ``home`` is ``CODEFLOW_HOME`` (with Prefect's
    environment applied, before Prefect is imported); its embedded Redis is shut down and
    the folder removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["CODEFLOW_HOME"] = str(work / "home")
    from config import load_settings
    from config.prefect_env import apply_prefect_environment
    from tasks.redis_io.embedded import EmbeddedRedis

    apply_prefect_environment(load_settings())
    try:
        yield work
    finally:
        EmbeddedRedis(work / "home" / "redis").shutdown()  # it outlives processes by design
        shutil.rmtree(work, ignore_errors=True)
