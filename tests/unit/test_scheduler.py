"""The vectorize scheduler (steps 3-6) on the in-memory services: no Redis, Prefect or LanceDB."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from config import load_settings
from tasks.embedding import Vectors
from tasks.events.memory_bus import MemoryBus
from tasks.index.manifests import namespace_for
from tasks.pipeline.index_steps import InlineSteps, Target, fingerprint
from tasks.pipeline.scheduler import Reporter, Scheduler
from tasks.records import Chunk
from tasks.services import Services, in_memory_services
from tasks.vectors.memory_store import MemoryStore
from tests.git_support import make_repo

FILES: dict[str, str | bytes] = {
    f"pkg/mod{i}.py": f"def handler_{i}(event):\n    return event['n'] + {i}\n\n"
    f"class Widget{i}:\n    def render(self):\n        return '<w{i}>'\n"
    for i in range(12)
}


class FullDisk(MemoryStore):
    def append(self, namespace: str, chunks: Sequence[Chunk], vectors: Vectors) -> None:
        raise OSError("disk full")


@pytest.fixture
def svc(tmp_path: Path) -> Services:
    settings = load_settings({"CODEFLOW_HOME": str(tmp_path / "home"), "CODEFLOW_CPU_WORKERS": "0"})
    return in_memory_services(settings, tmp_path / "home")


def scheduler_for(
    svc: Services, target: Target, *, embed_batch: int = 4, write_batch: int = 8
) -> Scheduler:
    reporter = Reporter(svc.bus, {"flow_run_id": "run-1", "flow_name": "vectorize_repository"})
    return Scheduler(
        InlineSteps(svc, target),
        reporter,
        keys=svc.embeddings.keys,
        embed_batch=embed_batch,
        write_batch=write_batch,
    )


def index(svc: Services, repo: Path, **options: int) -> Scheduler:
    fp = fingerprint(str(repo))
    target = (namespace_for(fp.repo_id, "main"), fp.repo_id, "main")
    scheduler = scheduler_for(svc, target, **options)
    scheduler.submit_loads(fp.root, sorted(fp.files))
    scheduler.run(frozenset(), frozenset())
    return scheduler


def test_every_chunk_is_embedded_once_and_written(svc: Services, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    scheduler = index(svc, repo)
    namespace = namespace_for(fingerprint(str(repo)).repo_id, "main")
    chunks = scheduler.loaded.chunks
    assert {c.path for c in chunks} == set(FILES)
    assert scheduler.embedded == len(chunks) and scheduler.hits == 0
    assert svc.store.ids(namespace) == {c.id for c in chunks}
    assert sorted(svc.embeddings.lookup(svc.embeddings.keys([c.text for c in chunks]))) == list(
        range(len(chunks))
    )


def test_a_second_run_takes_every_vector_from_the_embedding_cache(
    svc: Services, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    first = index(svc, repo)
    again = index(svc, repo)
    assert again.hits == len(first.loaded.chunks) and again.embedded == 0


def test_unchanged_chunks_need_nothing(svc: Services, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    fp = fingerprint(str(repo))
    target = (namespace_for(fp.repo_id, "main"), fp.repo_id, "main")
    first = index(svc, repo)
    committed = frozenset(c.id for c in first.loaded.chunks)
    scheduler = scheduler_for(svc, target)
    scheduler.submit_loads(fp.root, sorted(fp.files))
    scheduler.run(committed, committed)
    assert scheduler.unchanged == len(committed) and scheduler.embedded == 0 == scheduler.hits


def test_progress_ends_at_the_totals(svc: Services, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    scheduler = index(svc, repo, write_batch=5)
    assert isinstance(svc.bus, MemoryBus)
    last: dict[str, tuple[int, int]] = {}
    for _, event in svc.bus.events:
        if event["kind"] == "progress":
            assert event["done"] <= event["total"]
            last[event["unit"]] = (event["done"], event["total"])
    chunks = len(scheduler.loaded.chunks)
    assert last == {"files": (len(FILES), len(FILES)), "chunks": (chunks, chunks)}


def test_a_failing_write_fails_the_run(svc: Services, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)

    svc.make_store = lambda: FullDisk(svc.embedder.dimensions)
    with pytest.raises(OSError, match="disk full"):
        index(svc, repo)
