"""Pure planning for the vectorize flow: what to sweep and what the next manifest says."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tasks.index.changes import Changes
from tasks.index.manifests import IndexManifest
from tasks.records import Chunk


@dataclass
class LoadResult:
    """Chunks of the files that were (re)loaded, and why others were skipped."""

    chunks: list[Chunk] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def merge(self, other: LoadResult) -> None:
        self.chunks.extend(other.chunks)
        self.skipped.update(other.skipped)

    def ids_by_path(self, paths: Iterable[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {p: [] for p in paths if p not in self.skipped}
        for chunk in self.chunks:
            out.setdefault(chunk.path, []).append(chunk.id)
        return out


def batched(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def stale_ids(
    previous: IndexManifest | None,
    changes: Changes,
    current_ids: set[str],
    stored_ids: Iterable[str] = (),
) -> list[str]:
    """Vector IDs to delete once the new ones are written.

    Old chunks of changed and deleted files, IDs an interrupted run wrote (``pending``), and,
    on a full scan, anything else the store holds: minus what is current.
    """
    candidates: set[str] = set(stored_ids)
    if previous is not None:
        candidates.update(previous.pending)
        for path in changes.to_remove if not changes.full_scan else previous.chunks:
            candidates.update(previous.chunks.get(path, ()))
    return sorted(candidates - current_ids)


def next_manifest(
    previous: IndexManifest | None,
    base: IndexManifest,
    changes: Changes,
    files: Mapping[str, str],
    loaded: LoadResult,
) -> IndexManifest:
    """The manifest after this run: untouched entries carried over, reloaded ones replaced."""
    keep_chunks: dict[str, list[str]] = {}
    keep_skipped: dict[str, str] = {}
    if previous is not None and not changes.full_scan:
        removed = set(changes.to_remove)
        keep_chunks = {
            p: ids for p, ids in previous.chunks.items() if p not in removed and p in files
        }
        keep_skipped = {
            p: r for p, r in previous.skipped.items() if p not in removed and p in files
        }
    keep_chunks.update(loaded.ids_by_path(changes.to_load))
    keep_skipped.update(loaded.skipped)
    base.files = dict(files)
    base.chunks = {p: keep_chunks[p] for p in sorted(keep_chunks) if p not in keep_skipped}
    base.skipped = keep_skipped
    base.pending = []
    base.updated_at = time.time()
    return base
