"""Index manifests: what is committed in the vector store for one repository + branch.

A manifest is written last, after vectors were upserted and stale ones swept (step 7), so a
crash anywhere before leaves the previous manifest in place and a re-run redoes the work.
IDs written by an interrupted run are recorded first in ``pending`` (a write-ahead note), so
the next run can sweep vectors that no committed manifest knows about.

Manifests are JSON files under ``CODEFLOW_HOME/manifests/<store>/<repo_id>/<branch>.json``,
replaced atomically (write to a temporary file, fsync, rename): :class:`ManifestStore`. With
a shared object store (``CODEFLOW_STORE_URI=s3://...``) they are objects beside the tables
instead: :class:`~tasks.index.s3_manifests.S3ManifestStore`, the same API
(:class:`ManifestStorage`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

_SEARCH_TAG = re.compile(r"search:([0-9a-f]{16})-.+")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_REPO_ID = re.compile(r"[0-9a-f]{16}")


@dataclass
class IndexManifest:
    repo_id: str
    branch: str
    root: str
    commit: str | None = None
    embedder: str = ""
    chunker: str = ""  # chunking.chunker_id of the chunks it lists
    files: dict[str, str] = field(default_factory=dict)  # path -> blob SHA
    chunks: dict[str, list[str]] = field(default_factory=dict)  # path -> chunk IDs
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    pending: list[str] = field(default_factory=list)  # IDs written by an uncommitted run
    updated_at: float = 0.0

    @property
    def chunks_total(self) -> int:
        return sum(len(ids) for ids in self.chunks.values())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexManifest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def namespace_for(repo_id: str, branch: str) -> str:
    """The vector-store namespace of one repository + branch."""
    return f"{repo_id}-{_SAFE.sub('_', branch)}"[:120]


def search_tag(namespace: str) -> str:
    """The cache tag of every cached search answer over the index ``namespace``."""
    return f"search:{namespace}"


def repo_of_tag(tag: str) -> str | None:
    """The repository ID a :func:`search_tag` names (``None`` for any other tag).

    >>> repo_of_tag(search_tag(namespace_for("0123456789abcdef", "main")))
    '0123456789abcdef'
    """
    found = _SEARCH_TAG.fullmatch(tag)
    return found.group(1) if found else None


def is_repository_id(repo: str) -> bool:
    """``repo`` names a repository by its ID (16 hex digits, what ``codeflow status --json``
    prints as ``repo_id``) rather than by a path on this machine (an existing path wins).

    >>> is_repository_id("0123456789abcdef"), is_repository_id("/src/app")
    (True, False)
    """
    return _REPO_ID.fullmatch(repo) is not None and not os.path.exists(repo)


def safe_name(name: str) -> str:
    """``name`` as one folder-safe path part (the namespace uses the same form)."""
    return _SAFE.sub("_", name)


def parse_manifest(raw: bytes | None) -> IndexManifest | None:
    """The manifest in ``raw``; ``None`` if there is none or it cannot be read."""
    if raw is None:
        return None
    try:
        return IndexManifest.from_json(orjson.loads(raw))
    except (orjson.JSONDecodeError, TypeError):
        return None


def _read(path: Path) -> IndexManifest | None:
    """The manifest in ``path``; ``None`` if there is none or it cannot be read."""
    try:
        return parse_manifest(path.read_bytes())
    except OSError:
        return None


class ManifestStorage(Protocol):
    """Where manifests and pending IDs live: a folder, or a shared bucket."""

    def load(self, repo_id: str, branch: str) -> IndexManifest | None: ...

    def committed(self, repo_id: str, branch: str) -> str | None: ...

    def branches(self, repo_id: str) -> list[str]: ...

    def all(self) -> Iterator[IndexManifest]: ...

    def note_pending(self, repo_id: str, branch: str, ids: list[str]) -> None: ...

    def save(self, manifest: IndexManifest) -> None: ...


class ManifestStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._commits: dict[Path, tuple[tuple[int, int, int], str | None]] = {}

    def path(self, repo_id: str, branch: str) -> Path:
        return self.directory / _SAFE.sub("_", repo_id) / f"{_SAFE.sub('_', branch)}.json"

    def pending_path(self, repo_id: str, branch: str) -> Path:
        return self.path(repo_id, branch).with_suffix(".pending")

    def load(self, repo_id: str, branch: str) -> IndexManifest | None:
        """The committed manifest, with IDs written since (``pending``) merged in."""
        manifest = _read(self.path(repo_id, branch))
        if manifest is None:
            return None  # none, or unreadable: the caller does a full scan
        manifest.pending = sorted(set(manifest.pending) | self._pending(repo_id, branch))
        return manifest

    def committed(self, repo_id: str, branch: str) -> str | None:
        """The commit the committed manifest records (None: nothing indexed), read once per
        version of the file: a manifest is replaced, never edited, so its inode, size and
        modification time name a version. A search asks this on every query; parsing a large
        repository's manifest each time took 7 ms of a 25 ms search."""
        path = self.path(repo_id, branch)
        try:
            info = path.stat()
        except OSError:
            return None
        version = (info.st_ino, info.st_size, info.st_mtime_ns)
        known = self._commits.get(path)
        if known is None or known[0] != version:
            manifest = _read(path)
            known = (version, manifest.commit if manifest is not None else None)
            self._commits[path] = known
        return known[1]

    def branches(self, repo_id: str) -> list[str]:
        """The (folder-safe) branch labels with a committed manifest of ``repo_id``."""
        return sorted(p.stem for p in (self.directory / safe_name(repo_id)).glob("*.json"))

    def all(self) -> Iterator[IndexManifest]:
        """Every readable committed manifest (unreadable ones are passed over)."""
        for path in sorted(self.directory.glob("*/*.json")):
            manifest = _read(path)
            if manifest is not None:
                yield manifest

    def note_pending(self, repo_id: str, branch: str, ids: list[str]) -> None:
        """Write-ahead: append IDs about to be written (durable before the write happens)."""
        if not ids:
            return
        target = self.pending_path(repo_id, branch)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="ascii") as handle:
            handle.write("\n".join(ids) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _pending(self, repo_id: str, branch: str) -> set[str]:
        try:
            text = self.pending_path(repo_id, branch).read_text(encoding="ascii", errors="ignore")
        except FileNotFoundError:
            return set()
        return {line for line in text.split() if line}

    def save(self, manifest: IndexManifest) -> None:
        target = self.path(manifest.repo_id, manifest.branch)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".manifest-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(orjson.dumps(manifest))  # orjson reads dataclasses itself
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
            self.pending_path(manifest.repo_id, manifest.branch).unlink(missing_ok=True)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
