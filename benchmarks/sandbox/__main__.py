"""Sandbox benchmark: codeflow's DockerRuntime vs llm-sandbox, same engine, same image, same run.

    .venv/bin/python -m benchmarks.sandbox [--n 30] [--quick] [--no-peer] [--runtimes runc runsc]

For each container runtime (Docker's runc, and gVisor's runsc where it is registered),
measures start-to-result latency of ``print("hi")`` in a fresh container (p50/p95), the same
with a warm pool of pre-started single-use containers, and throughput (runs/s) at 1, 4 and 16
concurrent runs. The peer, llm-sandbox (``uv pip install llm-sandbox``, benchmark only), runs
the same code on the same local image (found with ``images.get``: nothing is pulled) with the
same network/memory/CPU limits, one fresh session per execution, as a sandbox for untrusted
code must. Goals: fresh p50 <= 1 s, warm p50 <= 0.2 s.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import docker
import pandas as pd

from benchmarks.common import percentile
from config.errors import SandboxError
from tasks.sandbox.docker_runtime import DockerRuntime
from tasks.sandbox.image import DEFAULT_DOCKER_URL, build_image
from tasks.sandbox.models import ExecutionRequest
from tasks.sandbox.warm_pool import WarmPool

CODE = "print('hi')"


def latency_row(name: str, samples: list[float]) -> dict[str, object]:
    return {
        "what": name,
        "runs": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "p95_ms": round(percentile(samples, 95) * 1000, 1),
    }


def sample(
    fn: Callable[[], str], n: int, before: Callable[[], object] = lambda: None
) -> list[float]:
    out = []
    for _ in range(n):
        before()
        started = time.perf_counter()
        assert fn().strip() == "hi"
        out.append(time.perf_counter() - started)
    return out


def throughput(fn: Callable[[], str], concurrency: int, total: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outputs = list(pool.map(lambda _: fn(), range(total)))
    assert all(o.strip() == "hi" for o in outputs)
    return round(total / (time.perf_counter() - started), 2)


def codeflow_fresh(runtime: DockerRuntime) -> Callable[[], str]:
    return lambda: runtime.run(ExecutionRequest(CODE)).stdout


def peer_fresh(client: docker.DockerClient, image: str) -> Callable[[], str]:
    from llm_sandbox import SandboxSession

    configs = {
        "network_mode": "none",
        "mem_limit": "512m",
        "memswap_limit": "512m",
        "nano_cpus": 500_000_000,
        "init": True,  # without it `docker stop` waits 10 s for a PID 1 that ignores SIGTERM
    }

    def run() -> str:
        with SandboxSession(
            client=client,
            image=image,
            lang="python",
            skip_environment_setup=True,
            runtime_configs=configs,
        ) as session:
            return str(session.run(CODE).stdout)

    return run


def measure(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    client = docker.DockerClient(base_url=DEFAULT_DOCKER_URL, max_pool_size=64)
    image = build_image(client=client)
    latency: list[dict[str, object]] = []
    rates: dict[str, dict[int, float]] = {}
    for name in args.runtimes:
        runtime = DockerRuntime(client, image=image, runtime=name)
        try:
            runtime.check()
        except SandboxError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        runtime.sweep()
        fresh = sample(codeflow_fresh(runtime), args.n)
        latency.append(latency_row(f"codeflow {name}, fresh container", fresh))
        latency.append(latency_row(f"codeflow {name}, warm pool", warm_samples(runtime, args.n)))
        rates[f"codeflow {name} fresh"] = {
            c: throughput(codeflow_fresh(runtime), c, args.total) for c in args.c
        }
    if not args.no_peer:
        peer_latency, peer_rates = measure_peer(client, image, args)
        latency.extend(peer_latency)
        rates.update(peer_rates)
    table = pd.DataFrame(rates).T
    table.columns = [f"runs/s @{c}" for c in table.columns]
    return pd.DataFrame(latency), table


def warm_samples(runtime: DockerRuntime, n: int) -> list[float]:
    with WarmPool(runtime, size=2) as pool:
        pool.wait_ready(timeout=60)
        return sample(
            lambda: pool.run(ExecutionRequest(CODE)).stdout,
            n,
            before=lambda: pool.wait_ready(timeout=60),
        )


def measure_peer(
    client: docker.DockerClient, image: str, args: argparse.Namespace
) -> tuple[list[dict[str, object]], dict[str, dict[int, float]]]:
    try:
        run = peer_fresh(client, image)
        run()
    except Exception as exc:  # report any peer failure, keep our figures
        print(f"llm-sandbox did not run: {exc!r}")
        return [], {}
    n = max(5, args.n // 3)
    latency = [latency_row("llm-sandbox fresh session", sample(run, n))]
    total = max(8, args.total // 2)
    return latency, {"llm-sandbox fresh": {c: throughput(run, c, total) for c in args.c}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="latency samples")
    parser.add_argument("--total", type=int, default=32, help="runs per throughput figure")
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--no-peer", action="store_true", help="skip llm-sandbox")
    parser.add_argument("--runtimes", nargs="+", default=["runc", "runsc"])
    args = parser.parse_args()
    args.c = [1, 4, 16]
    if args.quick:
        args.n, args.total = 10, 16
    logging.getLogger("llm_sandbox").setLevel(logging.ERROR)
    latency, rates = measure(args)
    print("\nstart-to-result latency, print('hi') (goals: fresh p50 <= 1000 ms, warm <= 200 ms)")
    print(latency.to_string(index=False))
    print("\nthroughput, fresh container per run")
    print(rates.to_string())


if __name__ == "__main__":
    main()
