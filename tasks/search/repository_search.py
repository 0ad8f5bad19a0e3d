"""Search an indexed repository by its path, or by its repository ID: what ``codeflow
search`` and the server's ``GET /api/search`` share, so both answer with the same hits.

A path names a work tree on this machine (its checked-out branch); a repository ID (16 hex
digits) is resolved through the manifests alone, so a server on another machine, without a
checkout, searches what any worker indexed into the shared store
(:func:`locate`).

Searching never starts a flow: it reads the repository's manifest and the vector store, and
repeated queries come from the Redis search cache, which ``codeflow index`` invalidates when
it commits (so a warm search loads neither the embedder nor the vector store).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from config.errors import ConfigError, RepositoryError
from tasks.index.manifests import IndexManifest, is_repository_id, namespace_for, search_tag
from tasks.repo.git_repository import GitRepository
from tasks.search.ranking import RANKING_VERSION

if TYPE_CHECKING:
    from tasks.records import SearchHit
    from tasks.services import Services

# tasks.search.hybrid checks the same bounds (its MAX_LIMIT); checked here too, before the cache
# lookup, without importing tasks.search.hybrid (numpy): a warm search loads neither.
MAX_LIMIT = 1000


def indexed_manifest(
    svc: Services, path: str, branch: str | None = None
) -> tuple[IndexManifest, str]:
    """The committed manifest of ``path``'s branch (:func:`locate`), and its namespace."""
    repo_id, label = locate(svc, path, branch)
    manifest = svc.manifests.load(repo_id, label)
    if manifest is None or manifest.commit is None:
        raise _not_indexed(path, label)
    return manifest, namespace_for(repo_id, label)


def indexed_namespace(svc: Services, path: str, branch: str | None = None) -> str:
    """The index namespace of ``path``'s branch (:func:`locate`), if it has been indexed
    (what a search needs, without reading the whole manifest)."""
    repo_id, label = locate(svc, path, branch)
    if svc.manifests.committed(repo_id, label) is None:
        raise _not_indexed(path, label)
    return namespace_for(repo_id, label)


def locate(svc: Services, repo: str, branch: str | None = None) -> tuple[str, str]:
    """The repository ID and branch label ``repo`` names: a work tree on this machine (the
    branch checked out there unless ``branch``), or a repository ID (``branch``, else the
    one branch its manifests hold; several: :class:`ConfigError` asking for one)."""
    if not is_repository_id(repo):
        repo_id, label = _checked_out(repo)
        return repo_id, branch or label
    if branch:
        return repo, branch
    found = svc.manifests.branches(repo)
    if len(found) > 1:
        raise ConfigError(
            f"repository {repo} is indexed on several branches ({', '.join(found)}): "
            "pick one with --branch (branch= over HTTP)"
        )
    if not found:
        raise _not_indexed(repo, "any")
    return repo, found[0]


def _checked_out(path: str) -> tuple[str, str]:
    """The repository ID and branch label of the work tree at ``path``."""
    with GitRepository.open(path) as repo:
        return repo.repo_id, repo.branch_label()


def _not_indexed(path: str, label: str) -> RepositoryError:
    if is_repository_id(path):
        return RepositoryError(f"repository {path} (branch {label}) is not indexed")
    return RepositoryError(
        f"{path} (branch {label}) is not indexed yet; run: codeflow index {path}"
    )


def search_repository(
    svc: Services, path: str, query: str, limit: int = 10, branch: str | None = None
) -> list[dict[str, Any]]:
    """Hits for ``query`` in the repository at ``path`` (or of that repository ID), best
    first, as JSON objects."""
    if not query.strip():
        raise ConfigError("the query is empty")
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigError(f"the limit must be between 1 and {MAX_LIMIT}")
    namespace = indexed_namespace(svc, path, branch)
    settings = svc.settings
    backend = f"{settings.store}\0{svc.embedder_identity[0]}\0{settings.semantic_weight}"
    material = f"{RANKING_VERSION}\0{backend}\0{namespace}\0{limit}\0{query}".encode()
    key = "q:" + hashlib.blake2b(material, digest_size=20).hexdigest()
    cached: list[dict[str, Any]] | None = svc.search_cache.get(key)
    if cached is not None:
        return cached
    # A plain get and set, not get_or_compute: a search costs ~10 ms, less than the Redis
    # lock round trips that would keep two identical first searches from both running.
    hits = _search(svc, query, namespace, limit)
    svc.search_cache.set(key, hits, tags=[search_tag(namespace)])
    return hits


def _search(svc: Services, query: str, namespace: str, limit: int) -> list[dict[str, Any]]:
    from tasks.search.hybrid import hybrid_search

    hits = hybrid_search(
        query,
        store=svc.store,
        embedder=svc.embedder,
        namespace=namespace,
        limit=limit,
        semantic_weight=svc.settings.semantic_weight,
    )
    return [hit_json(h) for h in hits]


def hit_json(hit: SearchHit) -> dict[str, Any]:
    """A hit as ``codeflow search --json`` prints it."""
    return {
        "path": hit.path,
        "start_line": hit.start_line,
        "end_line": hit.end_line,
        "score": round(hit.score, 6),
        "symbol": hit.symbol,
        "language": hit.language,
        "text": hit.text,
    }
