"""Scale-out: the vectorize flow on a real Dask cluster of separate processes (a ``dask
scheduler`` and two ``dask worker`` processes) gives exactly the index the default thread
pool gives: same manifest, same rows (IDs, texts, vectors) in the store.

The workers share nothing with the flow but a password-protected TCP Redis and, on this one
machine, the LanceDB folder the flow's ``CODEFLOW_HOME`` names (another engineer is moving
the store to object storage). They reach the test's temporary Prefect API through the
settings Prefect ships with each task.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config import Settings, load_settings
from config.errors import SettingsError
from tasks.index.manifests import namespace_for
from tasks.repo.git_repository import GitRepository
from tasks.services import services_for
from tasks.vectors.lance_tables import table_name
from tests.dask_support import DaskCluster, TcpRedis, polyglot_files, worker_tasks
from tests.git_support import make_repo

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

pytest.importorskip("distributed")
pytest.importorskip("prefect_dask")


@pytest.fixture
def tcp_redis(tmp_path: Path) -> Iterator[TcpRedis]:
    server = TcpRedis(tmp_path / "tcp-redis").start()
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path: Path, tcp_redis: TcpRedis) -> Iterator[DaskCluster]:
    env = {"REDIS_URL": tcp_redis.url, "PREFECT_HOME": str(tmp_path / "worker-prefect")}
    made = DaskCluster(tmp_path / "dask", env)
    try:
        yield made.start()
    finally:
        made.stop()


def _env(home: Path, redis_url: str, **extra: str) -> dict[str, str]:
    # Small batches: the fan-out is several embed tasks, spread over both Dask workers.
    tenant = "d" + uuid.uuid4().hex[:10]
    base = {"CODEFLOW_HOME": str(home), "CODEFLOW_TENANT": tenant, "REDIS_URL": redis_url}
    return {**base, "CODEFLOW_EMBED_BATCH_SIZE": "16", **extra}


def _index(env: dict[str, str], repo: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the deployment's entry flow in environment ``env``."""
    from flows.sync import vectorize_source

    for key in ("REDIS_URL", "CODEFLOW_TASK_RUNNER", "CODEFLOW_DASK_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return vectorize_source(str(repo))


def _snapshot(settings: Settings, repo: Path) -> tuple[Any, ...]:
    """The manifest (files, chunks, skips, commit) and every row of the store, by ID."""
    import lancedb

    with GitRepository.open(repo) as opened:
        repo_id, label = opened.repo_id, opened.branch_label()
    manifest = services_for(settings).manifests.load(repo_id, label)
    assert manifest is not None
    table = lancedb.connect(settings.home / "lancedb").open_table(
        table_name(namespace_for(repo_id, label))
    )
    rows = sorted(table.to_arrow().select(["id", "text", "vector"]).to_pylist(), key=_id)
    vectors = np.array([r["vector"] for r in rows], dtype=np.float32)
    texts = [(r["id"], r["text"]) for r in rows]
    return manifest.files, manifest.chunks, manifest.skipped, manifest.commit, texts, vectors


def _id(row: dict[str, Any]) -> str:
    return str(row["id"])


def _same(left: tuple[Any, ...], right: tuple[Any, ...]) -> None:
    assert left[:-1] == right[:-1]
    assert np.array_equal(left[-1], right[-1])


def test_distributed_cluster_gives_the_same_index_as_threads(
    tmp_path: Path,
    redis_url: str,
    tcp_redis: TcpRedis,
    cluster: DaskCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each runner gets its own Redis, so neither reuses the other's cached embeddings."""
    repo = make_repo(tmp_path / "repo", polyglot_files(60))
    threads = _env(tmp_path / "threads", redis_url)
    dask = _env(
        tmp_path / "dask",
        tcp_redis.url,
        CODEFLOW_TASK_RUNNER="dask",
        CODEFLOW_DASK_ADDRESS=cluster.address,
    )
    first = _index(threads, repo, monkeypatch)
    before = worker_tasks(cluster.address)
    second = _index(dask, repo, monkeypatch)
    ran = worker_tasks(cluster.address)
    assert second["chunks_embedded"] > 3 * 16, "several batches went through the cluster"
    assert first["chunks_total"] == second["chunks_total"]
    _same(_snapshot(load_settings(threads), repo), _snapshot(load_settings(dask), repo))
    assert sorted(ran) == ["w0", "w1"]
    assert all(ran[name] > before[name] for name in ran), (before, ran)
    assert tcp_redis.password not in cluster.logs()


def test_a_killed_worker_loses_nothing(
    tmp_path: Path,
    redis_url: str,
    tcp_redis: TcpRedis,
    cluster: DaskCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGKILL a worker while it runs a task: Dask runs that task again on the other worker,
    and the index equals a fresh one made by the thread pool."""
    repo = make_repo(tmp_path / "repo", polyglot_files(900))
    dask = _env(
        tmp_path / "dask",
        tcp_redis.url,
        CODEFLOW_TASK_RUNNER="dask",
        CODEFLOW_DASK_ADDRESS=cluster.address,
    )
    killed: list[str] = []
    args = (cluster, "w1", killed)
    killer = threading.Thread(target=_kill_when_busy, args=args, daemon=True)
    killer.start()
    started = time.monotonic()
    summary = _index(dask, repo, monkeypatch)
    print(f"run with a killed worker: {time.monotonic() - started:.1f} s; killed in {killed}")
    killer.join(timeout=5)
    assert killed, "the worker was killed mid-run, running a task"
    fresh = _env(tmp_path / "fresh", redis_url)
    again = _index(fresh, repo, monkeypatch)
    assert summary["chunks_total"] == again["chunks_total"]
    _same(_snapshot(load_settings(dask), repo), _snapshot(load_settings(fresh), repo))


def _kill_when_busy(
    cluster: DaskCluster, name: str, killed: list[str], timeout_s: float = 120
) -> None:
    """SIGKILL worker ``name`` as soon as it runs a chunking task (an embedding killed
    mid-way would hold its batch's lock, which the retry waits out); ``killed`` gets the
    tasks it was running."""
    import distributed

    deadline = time.monotonic() + timeout_s
    untyped: Any = distributed.Client  # untyped: so are its methods
    with untyped(cluster.address, timeout=30) as client:
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        while time.monotonic() < deadline:
            busy = {names.get(a): keys for a, keys in client.processing().items()}
            if any(str(key).startswith("chunk") for key in busy.get(name, ())):
                cluster.kill(name)
                killed.extend(str(key) for key in busy[name])
                return
            time.sleep(0.005)


def test_a_scheduler_address_needs_redis_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without REDIS_URL, the workers would start Redis servers of their own: the flow
    refuses to start, naming the variable."""
    from flows.sync import vectorize_flow

    env = _env(tmp_path / "home", "", CODEFLOW_TASK_RUNNER="dask")
    env["CODEFLOW_DASK_ADDRESS"] = "tcp://127.0.0.1:1"
    del env["REDIS_URL"]
    with pytest.raises(SettingsError, match="REDIS_URL is not set") as caught:
        vectorize_flow(load_settings(env))
    assert caught.value.variable == "REDIS_URL"


def test_a_local_cluster_of_processes_shares_the_embedded_redis(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No address, no REDIS_URL: a LocalCluster of two worker processes, whose tasks and
    hooks use the flow's embedded Redis rather than starting their own."""
    from tasks.redis_io.embedded import EmbeddedRedis

    repo = make_repo(tmp_path / "repo", polyglot_files(30))
    local = _env(tmp_path / "local", "", CODEFLOW_TASK_RUNNER="dask")
    del local["REDIS_URL"]
    try:
        summary = _index(local, repo, monkeypatch)
        made = _snapshot(load_settings(local), repo)
    finally:
        EmbeddedRedis(tmp_path / "local" / "redis").shutdown()
    threads = _env(tmp_path / "threads", redis_url)
    again = _index(threads, repo, monkeypatch)
    assert summary["chunks_total"] == again["chunks_total"] > 30
    _same(made, _snapshot(load_settings(threads), repo))
