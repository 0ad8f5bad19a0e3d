"""Manifests and pending IDs as objects in the shared bucket, beside the LanceDB tables.

Layout under ``<prefix>/_manifests/<store>/<repo_id>/``: ``<branch>.json`` (the committed
manifest, replaced by one write) and ``<branch>~pending~<time>-<random>.ids`` (one object per
write-ahead note: S3 has no append; :meth:`S3ManifestStore.save` removes them after the
manifest is written; ``~`` never occurs in a folder-safe branch name, so no branch's notes
look like another's). :meth:`S3ManifestStore.committed` costs one HEAD request while the
manifest is unchanged, as the local store's costs one ``stat``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Protocol

import orjson

from tasks.index.manifests import IndexManifest, parse_manifest, safe_name

_MANIFEST = ".json"
_PENDING = "~pending~"


class Objects(Protocol):
    """The object calls this store makes (:class:`tasks.objects.s3_objects.S3Objects`)."""

    def read(self, key: str) -> bytes | None: ...

    def version(self, key: str) -> tuple[int, int] | None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def keys(self, prefix: str) -> list[str]: ...

    def delete(self, keys: list[str]) -> None: ...


class S3ManifestStore:
    """:class:`~tasks.index.manifests.ManifestStore`'s API over objects under ``base``."""

    def __init__(self, objects: Objects, base: str) -> None:
        self.objects = objects
        self.base = base.strip("/")
        self._commits: dict[str, tuple[tuple[int, int], str | None]] = {}

    def key(self, repo_id: str, branch: str) -> str:
        return f"{self.base}/{safe_name(repo_id)}/{safe_name(branch)}{_MANIFEST}"

    def folder(self, repo_id: str) -> str:
        return f"{self.base}/{safe_name(repo_id)}/"

    def pending_prefix(self, repo_id: str, branch: str) -> str:
        return f"{self.folder(repo_id)}{safe_name(branch)}{_PENDING}"

    def _pending_keys(self, repo_id: str, branch: str) -> list[str]:
        prefix = self.pending_prefix(repo_id, branch)
        return [k for k in self.objects.keys(self.folder(repo_id)) if k.startswith(prefix)]

    def load(self, repo_id: str, branch: str) -> IndexManifest | None:
        """The committed manifest, with IDs written since (``pending``) merged in."""
        manifest = parse_manifest(self.objects.read(self.key(repo_id, branch)))
        if manifest is None:
            return None
        manifest.pending = sorted(set(manifest.pending) | self._pending(repo_id, branch))
        return manifest

    def committed(self, repo_id: str, branch: str) -> str | None:
        """The commit of the committed manifest, read once per version of the object."""
        key = self.key(repo_id, branch)
        version = self.objects.version(key)
        if version is None:
            return None
        known = self._commits.get(key)
        if known is None or known[0] != version:
            manifest = parse_manifest(self.objects.read(key))
            known = (version, manifest.commit if manifest is not None else None)
            self._commits[key] = known
        return known[1]

    def branches(self, repo_id: str) -> list[str]:
        folder = self.folder(repo_id)
        names = (k[len(folder) :] for k in self.objects.keys(folder))
        return sorted(n.removesuffix(_MANIFEST) for n in names if _is_manifest(n))

    def all(self) -> Iterator[IndexManifest]:
        """Every readable committed manifest (unreadable ones are passed over)."""
        for key in self.objects.keys(self.base + "/"):
            if _is_manifest(key[len(self.base) + 1 :].partition("/")[2]):
                manifest = parse_manifest(self.objects.read(key))
                if manifest is not None:
                    yield manifest

    def note_pending(self, repo_id: str, branch: str, ids: list[str]) -> None:
        """Write-ahead: the IDs about to be written, as one new object."""
        if not ids:
            return
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.ids"
        data = ("\n".join(ids) + "\n").encode("ascii", errors="ignore")
        self.objects.put(self.pending_prefix(repo_id, branch) + name, data)

    def _pending(self, repo_id: str, branch: str) -> set[str]:
        found: set[str] = set()
        for key in self._pending_keys(repo_id, branch):
            raw = self.objects.read(key) or b""
            found.update(raw.decode("ascii", errors="ignore").split())
        return found

    def save(self, manifest: IndexManifest) -> None:
        """Replace the manifest (one write), then drop the pending notes it settles."""
        repo_id, branch = manifest.repo_id, manifest.branch
        self.objects.put(self.key(repo_id, branch), orjson.dumps(manifest))
        self.objects.delete(self._pending_keys(repo_id, branch))


def _is_manifest(name: str) -> bool:
    """``name`` (relative to a repository's folder) is a manifest, not a pending note."""
    return "/" not in name and _PENDING not in name and name.endswith(_MANIFEST)
