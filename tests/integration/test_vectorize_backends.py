"""The vectorize flow end to end on the production backends, selected by settings alone:
CODEFLOW_EMBEDDER=openai CODEFLOW_STORE=pinecone, the official clients talking to the local
OpenAI and Pinecone protocol servers, with faults injected. Real git, Redis and Prefect."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config import load_settings
from config.errors import ConfigError, VectorStoreError
from tasks.backends import check_backends
from tasks.services import services_for
from tests.fakes.http_fake import Fault
from tests.fakes.openai_server import OpenAIFake
from tests.fakes.pinecone_server import PineconeFake
from tests.git_support import make_repo
from tests.integration.test_vectorize import (
    QUERIES,
    SOURCES,
    Indexer,
    _drop_tenant,
    _evolve,
    _manifest_ids,
    _shape,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")

OPENAI_KEY = "sk-test-vectorize-backends"
PINECONE_KEY = "pc-test-vectorize-backends"


@dataclass
class Backends:
    openai: OpenAIFake
    pinecone: PineconeFake
    indexer: Indexer


@pytest.fixture
def make_backends(
    tmp_path: Path,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[object]:
    """Factory: each call starts its own pair of fakes and a CODEFLOW_HOME pointing at them."""
    started: list[Backends] = []

    def make(name: str = "home", **env: str) -> Backends:
        openai_fake = OpenAIFake(OPENAI_KEY).start()
        pinecone_fake = PineconeFake(PINECONE_KEY, dimension=256).start()
        settings = {
            "CODEFLOW_HOME": str(tmp_path / name),
            "REDIS_URL": redis_url,
            "CODEFLOW_TENANT": "t" + uuid.uuid4().hex[:10],
            "CODEFLOW_EMBEDDER": "openai",
            "CODEFLOW_STORE": "pinecone",
            "OPENAI_API_KEY": OPENAI_KEY,
            "PINECONE_API_KEY": PINECONE_KEY,
            "CODEFLOW_OPENAI_BASE_URL": openai_fake.base_url,
            "CODEFLOW_OPENAI_DIMENSIONS": "256",
            "CODEFLOW_OPENAI_TIMEOUT_S": "2",
            "CODEFLOW_PINECONE_INDEX": "codeflow",
            "CODEFLOW_PINECONE_CONTROLLER_HOST": pinecone_fake.url,
            **env,
        }
        backends = Backends(openai_fake, pinecone_fake, Indexer(settings, capsys, monkeypatch))
        started.append(backends)
        return backends

    yield make
    for backends in started:
        backends.openai.stop()
        backends.pinecone.stop()
        _drop_tenant(redis_url, backends.indexer.env["CODEFLOW_TENANT"])


def test_incremental_index_equals_fresh_index(tmp_path: Path, make_backends: object) -> None:
    ours = make_backends("home")  # type: ignore[operator]
    repo = make_repo(tmp_path / "repo", SOURCES)
    first = ours.indexer.index(repo)
    assert first["full_scan"] and first["files_total"] == 5 and first["chunks_embedded"] > 0
    _evolve(repo)
    second = ours.indexer.index(repo)
    assert not second["full_scan"] and second["cache_hits"] > 0
    assert (second["files_deleted"], second["files_renamed"]) == (2, 1)

    fresh = make_backends("fresh-home")  # type: ignore[operator]
    fresh.indexer.index(repo)
    mine, theirs = ours.indexer.status(repo), fresh.indexer.status(repo)
    for field in ("commit", "files_total", "chunks_total", "files"):
        assert mine[field] == theirs[field], field
    assert ours.indexer.store_ids(repo) == fresh.indexer.store_ids(repo)
    namespace = mine["namespace"]
    assert ours.pinecone.all_ids(namespace) == _manifest_ids(ours.indexer, repo)
    for query in QUERIES:
        assert _shape(ours.indexer.search(repo, query)) == _shape(
            fresh.indexer.search(repo, query)
        ), query
    hits = ours.indexer.search(repo, "load user from json")
    assert hits[0]["path"] == "app/storage.py" and "json.load" in hits[0]["text"]


def test_faults_lose_no_chunk_and_duplicate_no_vector(
    tmp_path: Path, make_backends: object
) -> None:
    backends = make_backends(  # type: ignore[operator]
        "home", CODEFLOW_OPENAI_MAX_RETRIES="4", CODEFLOW_OPENAI_CHECK="false"
    )
    backends.openai.inject(
        Fault("status", status=429, retry_after=0.3),
        Fault("status", status=500),
        Fault("drop"),
        Fault("slow", delay_s=3.0),  # longer than CODEFLOW_OPENAI_TIMEOUT_S=2
    )
    backends.pinecone.inject(Fault("status", status=503), Fault("drop"))
    repo = make_repo(tmp_path / "repo", SOURCES)
    summary = backends.indexer.index(repo)

    outcomes = [e.outcome for e in backends.openai.requests_to("/v1/embeddings")]
    assert outcomes[:4] == ["fault:status", "fault:status", "fault:drop", "fault:slow"]
    assert outcomes.count("ok") >= 1
    namespace = backends.indexer.status(repo)["namespace"]
    manifest_ids = _manifest_ids(backends.indexer, repo)
    stored = backends.pinecone.all_ids(namespace)
    assert stored == manifest_ids and len(stored) == summary["chunks_total"]  # none lost
    assert len(stored) == len(set(stored))  # none duplicated
    assert backends.indexer.store_ids(repo) == manifest_ids  # the catalog agrees


def test_configuration_errors_come_first_in_one_line(tmp_path: Path, make_backends: object) -> None:
    """What ``codeflow index`` checks before it starts a flow: one line naming the fix, no
    embedding and no write made, no key echoed."""
    cases: list[tuple[dict[str, str], type[Exception], str]] = [
        ({"OPENAI_API_KEY": ""}, ConfigError, "OPENAI_API_KEY is not set"),
        ({"PINECONE_API_KEY": ""}, ConfigError, "PINECONE_API_KEY is not set"),
        ({"OPENAI_API_KEY": "sk-test-wrong"}, ConfigError, "OPENAI_API_KEY was rejected"),
        ({"PINECONE_API_KEY": "pc-test-wrong"}, ConfigError, "PINECONE_API_KEY was rejected"),
        ({"CODEFLOW_OPENAI_DIMENSIONS": "128"}, VectorStoreError, "holds 256-dim vectors"),
        ({"CODEFLOW_OPENAI_MODEL": "text-embedding-9"}, ConfigError, "text-embedding-9"),
        ({"CODEFLOW_PINECONE_INDEX": "missing-index"}, ConfigError, "missing-index"),
    ]
    for env, error, message in cases:
        backends = make_backends(f"home-{uuid.uuid4().hex[:6]}", **env)  # type: ignore[operator]
        with pytest.raises(error) as raised:
            check_backends(services_for(load_settings(backends.indexer.env)))
        text = str(raised.value)
        assert message in text and "\n" not in text, text
        assert OPENAI_KEY not in text and PINECONE_KEY not in text and "wrong" not in text
        assert backends.pinecone.requests_to("/vectors/upsert") == []
        assert all(e.outcome != "ok" for e in backends.openai.requests_to("/v1/embeddings")[1:])


def test_backends_chosen_by_command_line_flags(tmp_path: Path, make_backends: object) -> None:
    """`--embedder openai --store pinecone` with CODEFLOW_EMBEDDER/STORE at their defaults; the
    local-backend manifest and the Pinecone one are kept apart."""
    backends = make_backends(CODEFLOW_EMBEDDER="local", CODEFLOW_STORE="lancedb")  # type: ignore[operator]
    indexer = backends.indexer
    repo = make_repo(tmp_path / "repo", SOURCES)
    try:
        local = indexer.index(repo)
        flags = ("--embedder", "openai", "--store", "pinecone")
        remote = indexer.index(repo, *flags)
        assert remote["full_scan"], "a new store starts from a full scan, not the local manifest"
        assert remote["chunks_total"] == local["chunks_total"]
        assert remote["embedding_requests"] >= 1 and remote["embedding_tokens"] > 0
        code, _, err = indexer.cli("status", str(repo), "--json", "--store", "pinecone")
        assert code == 0, err
        stored = sum(
            len(backends.pinecone.all_ids(ns)) for ns in list(backends.pinecone.namespaces)
        )
        assert stored == remote["chunks_total"]
        code, _, err = indexer.cli("search", "greeting", "--repo", str(repo), "--json", *flags)
        assert code == 0, err
    finally:
        _drop_tenant(indexer.env["REDIS_URL"], indexer.env["CODEFLOW_TENANT"])
