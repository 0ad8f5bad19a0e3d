"""``cache.invalidated`` events: which repository they name and which rooms hear of them."""

from __future__ import annotations

from pathlib import Path

from config import load_settings
from tasks.events.memory_bus import MemoryBus
from tasks.events.model import invalidation_event, rooms_for
from tasks.index.manifests import IndexManifest, namespace_for, search_tag
from tasks.pipeline import index_steps
from tasks.services import in_memory_services

REPO = "0123456789abcdef"
OTHER = "fedcba9876543210"


def test_a_search_tag_names_its_repository() -> None:
    event = invalidation_event("search", "tag", [search_tag(namespace_for(REPO, "main"))], 4)
    assert (event["repo_id"], event["count"], event["targets"]) == (
        REPO,
        4,
        [f"search:{REPO}-main"],
    )
    assert rooms_for(event) == ["cache", f"repo:{REPO}"]


def test_what_is_not_one_repositorys_names_none() -> None:
    two = [search_tag(namespace_for(r, "main")) for r in (REPO, OTHER)]
    for targets in (two, ["search"], ["emb:*"], [f"search:{REPO}"]):
        event = invalidation_event("search", "tag", targets, 1)
        assert "repo_id" not in event, targets
        assert rooms_for(event) == ["cache"]


def test_an_event_rule_is_judged_by_what_it_invalidated() -> None:
    tag = search_tag(namespace_for(OTHER, "dev"))
    event = invalidation_event("search", "event", ["repo.pushed"], 2, invalidated=[tag])
    assert event["targets"] == ["repo.pushed"] and event["repo_id"] == OTHER


def test_the_commit_step_announces_the_invalidation(tmp_path: Path) -> None:
    settings = load_settings({"CODEFLOW_HOME": str(tmp_path), "CODEFLOW_CPU_WORKERS": "0"})
    svc = in_memory_services(settings, tmp_path)
    namespace = namespace_for(REPO, "main")
    tag = search_tag(namespace)
    svc.search_cache.set("q1", ["answer"], tags=[tag])
    svc.search_cache.set("q2", ["other"], tags=[search_tag(namespace_for(OTHER, "main"))])
    manifest = IndexManifest(REPO, "main", str(tmp_path), "c0ffee", "hashing:64")
    index_steps.commit(svc, manifest, namespace, "run-7")
    assert svc.search_cache.get("q1") is None and svc.search_cache.get("q2") == ["other"]
    assert isinstance(svc.bus, MemoryBus)
    (_, event), *_ = svc.bus.events
    assert event["kind"] == "cache.invalidated"
    assert {k: event[k] for k in ("namespace", "strategy", "targets", "repo_id", "index")} == {
        "namespace": "search",
        "strategy": "tag",
        "targets": [tag],
        "repo_id": REPO,
        "index": namespace,
    }
    assert rooms_for(event) == ["cache", "run:run-7", f"repo:{REPO}"]
    assert svc.manifests.load(REPO, "main") is not None
