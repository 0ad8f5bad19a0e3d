"""Change detection: what to (re)load and what to sweep, from two manifests.

A *manifest* maps every indexable repo-relative path (``/``-separated) to the git blob SHA
of its content. Comparing manifests by blob SHA is exact whatever happened to history:
a force-push, a shallow clone or a branch switch all reduce to "these paths now hold
these contents", so no commit graph is ever needed to decide what changed.

>>> old = {"a.py": "1" * 40, "b.py": "2" * 40}
>>> new = {"a.py": "3" * 40, "c.py": "2" * 40}
>>> changes = diff_manifests(old, new)
>>> changes.modified, changes.renamed
(['a.py'], [('b.py', 'c.py')])
>>> changes.to_load, changes.to_remove
(['a.py', 'c.py'], ['a.py', 'b.py'])

This module is pure: it imports no git, no I/O.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Manifest = Mapping[str, str]


@dataclass(frozen=True)
class Changes:
    """The difference between two manifests; every list is sorted.

    ``renamed`` holds ``(old, new)`` pairs of paths whose content is byte-identical: a
    deleted path and an added path with the same blob SHA.
    """

    added: list[str]
    modified: list[str]
    deleted: list[str]
    renamed: list[tuple[str, str]]
    full_scan: bool
    unchanged: int

    @property
    def to_load(self) -> list[str]:
        """Paths whose current content must be read and chunked."""
        return sorted([*self.added, *self.modified, *(new for _, new in self.renamed)])

    @property
    def to_remove(self) -> list[str]:
        """Paths whose previously stored chunks may be stale (sweep after writing)."""
        return sorted([*self.modified, *self.deleted, *(old for old, _ in self.renamed)])

    @property
    def has_changes(self) -> bool:
        """False when the new manifest equals the old one (the no-op re-index path)."""
        return bool(self.added or self.modified or self.deleted or self.renamed)


def diff_manifests(
    old: Manifest | None, new: Manifest, *, force_full_scan: bool = False
) -> Changes:
    """Compare two manifests by blob SHA.

    ``old=None`` (first run) is a full scan: every path is added. ``force_full_scan`` with a
    previous manifest makes every current path load (``modified`` if it existed before,
    ``added`` otherwise) and every previous path removable, with no renames: the caller
    re-indexes everything and still sweeps what vanished.
    """
    if old is None:
        return Changes(sorted(new), [], [], [], full_scan=True, unchanged=0)
    if force_full_scan:
        return Changes(
            added=sorted(new.keys() - old.keys()),
            modified=sorted(new.keys() & old.keys()),
            deleted=sorted(old.keys() - new.keys()),
            renamed=[],
            full_scan=True,
            unchanged=0,
        )
    common = new.keys() & old.keys()
    modified = sorted(p for p in common if old[p] != new[p])
    gone = {p: old[p] for p in old.keys() - common}
    fresh = {p: new[p] for p in new.keys() - common}
    renamed = pair_renames(gone, fresh)
    paired_old = {o for o, _ in renamed}
    paired_new = {n for _, n in renamed}
    return Changes(
        added=sorted(fresh.keys() - paired_new),
        modified=modified,
        deleted=sorted(gone.keys() - paired_old),
        renamed=renamed,
        full_scan=False,
        unchanged=len(common) - len(modified),
    )


def pair_renames(deleted: Mapping[str, str], added: Mapping[str, str]) -> list[tuple[str, str]]:
    """Pair deleted and added paths holding the same blob, deterministically.

    When several paths share one blob (empty ``__init__.py`` files, copied licences), pairs
    with the same file name are made first, then the rest in sorted order, so a moved
    ``pkg/__init__.py`` pairs with the new ``lib/pkg/__init__.py`` rather than with an
    unrelated file that happens to be empty too.
    """
    by_sha_new = _group_by_sha(added.items())
    pairs: list[tuple[str, str]] = []
    for sha, olds in sorted(_group_by_sha(deleted.items()).items()):
        news = by_sha_new.get(sha)
        if news:
            pairs.extend(_pair_group(olds, news))
    return sorted(pairs)


def _group_by_sha(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for path, sha in items:
        groups[sha].append(path)
    return {sha: sorted(paths) for sha, paths in groups.items()}


def _pair_group(olds: list[str], news: list[str]) -> list[tuple[str, str]]:
    """Same-name pairs first, then the remainder zipped in sorted order (both inputs sorted)."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in reversed(news):
        by_name[posixpath.basename(path)].append(path)
    pairs: list[tuple[str, str]] = []
    unpaired: list[str] = []
    for old in olds:
        candidates = by_name.get(posixpath.basename(old))
        if candidates:
            pairs.append((old, candidates.pop()))
        else:
            unpaired.append(old)
    taken = {new for _, new in pairs}
    pairs.extend(zip(unpaired, (n for n in news if n not in taken), strict=False))
    return pairs


def apply_changes(old: Manifest | None, changes: Changes, new: Manifest) -> dict[str, str]:
    """Rebuild ``new`` from ``old`` and ``changes`` (reading contents from ``new``).

    This is what an index does with a :class:`Changes`; it exists so the property
    "old + changes == new" can be checked, and so callers can update a stored manifest.
    """
    result = dict(old or {})
    for path in changes.to_remove:
        result.pop(path, None)
    for path in changes.to_load:
        result[path] = new[path]
    return result


def blob_sha(content: bytes) -> str:
    """The SHA-1 git gives ``content`` as a blob (``git hash-object`` without filters).

    >>> blob_sha(b"")
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    header = b"blob %d\0" % len(content)
    return hashlib.sha1(header + content, usedforsecurity=False).hexdigest()
