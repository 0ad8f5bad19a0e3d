"""Scale-out: the embedding fan-out on a real Dask cluster (prefect-dask) gives exactly the
index the default thread pool gives: same manifest, same chunk IDs in the store, same vectors.

The cluster is a LocalCluster with 2 workers in this process (``processes=False``): the tasks
then share the test's temporary Prefect API, as workers on other machines share a real one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config import Settings, load_settings
from tasks.index.manifests import namespace_for
from tasks.repo.git_repository import GitRepository
from tasks.services import services_for
from tests.git_support import make_repo

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

distributed = pytest.importorskip("distributed")
pytest.importorskip("prefect_dask")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as made:
        yield made


def _settings(home: Path, redis_url: str, tenant: str, **extra: str) -> Settings:
    # Small batches: the fan-out is several embed tasks, spread over both Dask workers.
    env = {"CODEFLOW_HOME": str(home), "REDIS_URL": redis_url, "CODEFLOW_TENANT": tenant}
    return load_settings({**env, "CODEFLOW_EMBED_BATCH_SIZE": "16", **extra})


def _index(settings: Settings, repo: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the deployment's entry flow with the environment ``settings`` came from."""
    from flows.sync import vectorize_source

    for key, value in {
        "CODEFLOW_HOME": str(settings.home),
        "REDIS_URL": settings.redis_url or "",
        "CODEFLOW_TENANT": settings.tenant,
        "CODEFLOW_EMBED_BATCH_SIZE": str(settings.embed_batch_size),
        "CODEFLOW_TASK_RUNNER": settings.task_runner,
        "CODEFLOW_DASK_ADDRESS": settings.dask_address or "",
    }.items():
        monkeypatch.setenv(key, value)
    return vectorize_source(str(repo))


def _snapshot(settings: Settings, repo: Path) -> tuple[Any, ...]:
    """Manifest, stored chunk IDs, and every chunk's score against a few queries."""
    with GitRepository.open(repo) as opened:
        repo_id, label = opened.repo_id, opened.branch_label()
    rt = services_for(settings)
    manifest = rt.manifests.load(repo_id, label)
    assert manifest is not None
    namespace = namespace_for(repo_id, label)
    everything = manifest.chunks_total  # every row scored: tie order cannot matter
    neighbours = [
        sorted((h.id, round(h.score, 5)) for h in rt.store.query(namespace, vector, everything))
        for vector in rt.embedder.embed(QUERIES)
    ]
    return manifest.files, manifest.chunks, sorted(rt.store.ids(namespace)), neighbours


QUERIES = ["sum of values times a factor", "holder label", "compute 7"]


def test_dask_cluster_gives_the_same_index_as_threads(
    tmp_path: Path,
    redis_url: str,
    private_redis: Any,
    cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each runner gets its own Redis, so neither reuses the other's cached embeddings."""
    files: dict[str, str | bytes] = {
        f"lib/part_{i}.py": f"def compute_{i}(values):\n    return sum(v * {i} for v in values)\n"
        f"\n\nclass Holder{i}:\n    label = 'holder {i}'\n"
        for i in range(60)
    }
    repo = make_repo(tmp_path / "repo", files)
    tenants = ["d" + uuid.uuid4().hex[:10], "d" + uuid.uuid4().hex[:10]]
    threads = _settings(tmp_path / "threads", redis_url, tenants[0])
    dask = _settings(
        tmp_path / "dask",
        private_redis.url,
        tenants[1],
        CODEFLOW_TASK_RUNNER="dask",
        CODEFLOW_DASK_ADDRESS=cluster.scheduler_address,
    )
    try:
        first = _index(threads, repo, monkeypatch)
        second = _index(dask, repo, monkeypatch)
        assert second["chunks_embedded"] > 16, "several batches went through the cluster"
        assert first["chunks_total"] == second["chunks_total"]
        assert _snapshot(threads, repo) == _snapshot(dask, repo)
        executed = [w.state.executed_count for w in cluster.workers.values()]
        assert len(executed) == 2 and all(n > 0 for n in executed), executed
    finally:
        client = redis.Redis.from_url(redis_url)
        for tenant in tenants[:1]:
            keys = list(client.scan_iter(match=f"cf:{{{tenant}.*", count=1000))
            if keys:
                client.unlink(*keys)
