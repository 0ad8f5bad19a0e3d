"""GitRepository: the adapter that owns git (GitPython and the ``git`` command line).

It answers two questions for the vectorization pipeline, both without following a link:

* *What is in the work tree now?* :meth:`GitRepository.fingerprint` returns a manifest of
  every indexable path and the blob SHA of its **working-tree** content. Clean files take
  their SHA from the index (``git ls-files -s``, no hashing); only what ``git status``
  reports as changed or untracked is hashed, by one ``git hash-object`` process per 1,000
  paths, so the SHA is exactly git's (clean filters included) and a no-op run costs two
  to four git processes whatever the repository's size (~40 ms for 10,000 files).
* *Give me these files' bytes, safely.* :meth:`GitRepository.read_files`
  (:mod:`tasks.repo.safe_files`) opens every path component relative to a directory descriptor
  with ``O_NOFOLLOW``: a symlink anywhere on the path, ``..``, an absolute path or a FIFO
  is refused, and a file's size is checked on the open descriptor before a byte is read.

Symlinks are never followed and never indexed, wherever they point (inside the repository
the target is indexed under its own path anyway). Submodules and nested repositories are
skipped. Every skip is reported with a reason, one of :data:`SKIP_REASONS`.

>>> repo = GitRepository.open("/path/to/work/tree")            # doctest: +SKIP
>>> fp = repo.fingerprint()                                     # doctest: +SKIP
>>> contents, skipped = repo.read_files(sorted(fp.files), max_bytes=1 << 20)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import git
from git.refs.symbolic import SymbolicReference

from config.errors import RepositoryError
from tasks.repo.safe_files import (
    SKIP_INVALID,
    SKIP_NOT_REGULAR,
    SKIP_OVERSIZED,
    SKIP_SYMLINK,
    SKIP_UNREADABLE,
    SKIP_VANISHED,
    PathSkipped,
    lstat_kind,
    read_files,
    split_rel,
)

SKIP_SUBMODULE = "submodule"
SKIP_IGNORED = "ignored-by-codeflowignore"
SKIP_NON_UTF8 = "non-utf8-name"
SKIP_REASONS = frozenset(
    {SKIP_SUBMODULE, SKIP_SYMLINK, SKIP_IGNORED, SKIP_NOT_REGULAR, SKIP_NON_UTF8}
    | {SKIP_OVERSIZED, SKIP_UNREADABLE, SKIP_VANISHED, SKIP_INVALID}
)

_MODE_SUBMODULE = "160000"
_MODE_SYMLINK = "120000"
_HASH_BATCH = 1000
_COMMIT_ID = re.compile(r"[0-9a-fA-F]{4,64}")


@dataclass(frozen=True)
class Fingerprint:
    """What the work tree holds now.

    ``repo_id`` is the first 16 hex digits of SHA-256 over the resolved absolute path of the
    work tree: stable across runs and branches, cheap, and needing no network. A clone
    moved elsewhere is a new repository (a full scan); a different history re-cloned at the
    same path is the same one, which is safe because changes are found by blob SHA.

    ``files`` maps every indexable path to the blob SHA of its working-tree content (dirty
    and untracked-but-not-ignored files included; files deleted from the work tree
    excluded). SHAs are git's own: with clean filters (``core.autocrlf``, LFS) they hash
    what git would store, which is what makes an edit-then-revert come back unchanged.

    ``dirty`` lists every path whose working-tree state differs from HEAD: modified,
    staged, untracked, or deleted (a deleted path is in ``dirty``, not in ``files``).
    ``skipped`` maps paths left out to a reason in :data:`SKIP_REASONS`.
    """

    repo_id: str
    root: str
    head: str | None
    branch: str | None
    files: dict[str, str]
    dirty: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class _Scan:
    """Working state of one fingerprint: what git said, before the file system is asked."""

    index: dict[str, tuple[str, str]]  # path -> (mode, blob SHA) as staged
    changed: set[str]  # tracked paths git status reports (vs HEAD or the index)
    untracked: list[str]  # not ignored by .gitignore; nested repositories end with "/"
    skipped: dict[str, str]


class GitRepository:
    """One git work tree. Build it with :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, repo: git.Repo, root: Path) -> None:
        self._repo = repo
        self._root = root

    @classmethod
    def open(cls, path: str | Path) -> GitRepository:
        """Open the work tree containing ``path``.

        A sub-folder of a repository is accepted and resolves to the repository's top
        level: the fingerprint always covers the whole work tree. Raises
        :class:`RepositoryError` (one line: what is wrong, what to do) for a missing path, a
        file, a folder outside any repository, a bare repository, or one with no commits.
        """
        where = Path(path).expanduser()
        if not where.exists():
            raise RepositoryError(
                f"{where}: no such directory; pass the path of a git work tree", path=str(where)
            )
        if not where.is_dir():
            raise RepositoryError(
                f"{where}: not a directory; pass the repository's folder", path=str(where)
            )
        try:
            repo = git.Repo(where, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            msg = f"{where}: not a git repository; run `git init` there or pass a repository"
            raise RepositoryError(msg, path=str(where)) from exc
        if repo.bare or repo.working_tree_dir is None:
            repo.close()
            raise RepositoryError(
                f"{where}: bare repository; index a clone with a work tree", path=str(where)
            )
        opened = cls(repo, Path(repo.working_tree_dir).resolve())
        try:
            opened._head_commit()
        except RepositoryError:
            opened.close()
            raise
        return opened

    @property
    def root(self) -> Path:
        return self._root

    @property
    def repo_id(self) -> str:
        """See :class:`Fingerprint`; cheap (no git call)."""
        return hashlib.sha256(os.fsencode(self._root)).hexdigest()[:16]

    def branch_label(self) -> str:
        """The checked-out branch, or ``detached-<commit>`` on a detached HEAD."""
        return self._branch() or f"detached-{self._head_commit()[:12]}"

    def close(self) -> None:
        """Stop any git helper process GitPython keeps for this repository."""
        self._repo.close()

    def __enter__(self) -> GitRepository:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- fingerprint -------------------------------------------------------------------

    def fingerprint(self, ignore_file: str = ".codeflowignore") -> Fingerprint:
        """The manifest of the work tree now; see :class:`Fingerprint`.

        ``ignore_file`` (repo-relative, gitignore syntax) drops matching paths, tracked or
        not; ``.gitignore`` is honoured by git itself for untracked files.
        """
        head, branch = self._head_commit(), self._branch()  # before the tree is listed
        skipped: dict[str, str] = {}
        scan = _Scan(self._list_index(skipped), *self._list_status(skipped), skipped=skipped)
        self._apply_ignore_file(scan, ignore_file)
        files, to_check = self._classify(scan)
        hashed, missing = self._hash_work_tree(to_check, scan.skipped)
        files.update(hashed)
        return Fingerprint(
            repo_id=self.repo_id,
            root=str(self._root),
            head=head,
            branch=branch,
            files=files,
            dirty=sorted([*hashed, *missing]),
            skipped=scan.skipped,
        )

    def _list_index(self, skipped: dict[str, str]) -> dict[str, tuple[str, str]]:
        """Every staged entry: ``mode sha stage<TAB>path`` records from ``ls-files -s -z``."""
        index: dict[str, tuple[str, str]] = {}
        for record in _split_z(self._git("ls-files", "-s", "-z")):
            meta, _, raw_path = record.partition(b"\t")
            mode, sha, _stage = meta.decode("ascii").split(" ")
            path = _decode_path(raw_path, skipped)
            if path is not None:
                index[path] = (mode, sha)
        return index

    def _list_status(self, skipped: dict[str, str]) -> tuple[set[str], list[str]]:
        """Tracked paths with any change, and untracked paths not ignored by git.

        Submodules are not inspected (``--ignore-submodules=all``: they are skipped anyway,
        and recursing into each one would cost a git process per submodule).
        """
        out = self._git(
            "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames",
            "--ignore-submodules=all",
        )  # fmt: skip
        changed: set[str] = set()
        untracked: list[str] = []
        for record in _split_z(out):
            path = _decode_path(record[3:], skipped)
            if path is None:
                continue
            if record[:2] == b"??":
                untracked.append(path)
            else:
                changed.add(path)
        return changed, untracked

    def _apply_ignore_file(self, scan: _Scan, ignore_file: str) -> None:
        """Drop paths matched by the ignore file, using git's own pattern matching."""
        patterns = self._ignore_file_path(ignore_file)
        if patterns is None:
            return
        exclude = f"--exclude-from={patterns}"
        out = self._git("ls-files", "-z", "-c", "-i", exclude)
        ignored = set(_decode_all(out, scan.skipped))
        if scan.untracked:
            kept = self._git("ls-files", "-z", "-o", "--exclude-standard", exclude)
            ignored.update(set(scan.untracked) - set(_decode_all(kept, scan.skipped)))
        for path in ignored:
            scan.skipped[path.rstrip("/")] = SKIP_IGNORED
            scan.index.pop(path, None)
        scan.untracked = [p for p in scan.untracked if p not in ignored]
        scan.changed -= ignored

    def _ignore_file_path(self, ignore_file: str) -> str | None:
        """The ignore file's absolute path, if it is a regular file inside the root."""
        try:
            parts = split_rel(ignore_file)
        except PathSkipped as exc:
            raise RepositoryError(f"{ignore_file!r}: ignore file must be repo-relative") from exc
        candidate = self._root.joinpath(*parts)
        try:
            if stat.S_ISREG(candidate.lstat().st_mode) and candidate.resolve() == candidate:
                return str(candidate)
        except OSError:
            pass
        return None

    def _classify(self, scan: _Scan) -> tuple[dict[str, str], list[str]]:
        """Files known clean from the index, and the paths the file system must settle."""
        files: dict[str, str] = {}
        to_check: dict[str, None] = {}
        for path, (mode, sha) in scan.index.items():
            if mode == _MODE_SUBMODULE:
                scan.skipped[path] = SKIP_SUBMODULE
            elif path in scan.changed:
                to_check[path] = None
            elif mode == _MODE_SYMLINK:
                scan.skipped[path] = SKIP_SYMLINK
            else:
                files[path] = sha
        for path in scan.untracked:
            if path.endswith("/"):
                scan.skipped[path.rstrip("/")] = SKIP_SUBMODULE  # a nested repository
            else:
                to_check[path] = None
        # Staged deletions and renames: the path left the index but git still reports it.
        to_check.update((p, None) for p in sorted(scan.changed) if p not in scan.index)
        return files, list(to_check)

    def _hash_work_tree(
        self, paths: list[str], skipped: dict[str, str]
    ) -> tuple[dict[str, str], list[str]]:
        """Blob SHAs of the regular files among ``paths``; also the paths that are gone."""
        regular: list[str] = []
        missing: list[str] = []
        for path in paths:
            if path in skipped:
                continue
            kind = lstat_kind(self._root, path)
            if kind == "missing":
                missing.append(path)
            elif kind != "regular":
                skipped[path] = kind
            else:
                regular.append(path)
        hashed: dict[str, str] = {}
        for start in range(0, len(regular), _HASH_BATCH):
            hashed.update(self._hash_batch(regular[start : start + _HASH_BATCH]))
        missing.extend(p for p in regular if p not in hashed)
        return hashed, missing

    def _hash_batch(self, paths: list[str]) -> dict[str, str]:
        """One ``git hash-object`` for many paths; one per path if a file vanished meanwhile."""
        try:
            out = self._git("hash-object", "--", *paths)
        except RepositoryError:
            if len(paths) == 1:
                return {}
            return {k: v for p in paths for k, v in self._hash_batch([p]).items()}
        return dict(zip(paths, out.decode("ascii").split(), strict=True))

    def _head_commit(self) -> str:
        try:
            return str(SymbolicReference.dereference_recursive(self._repo, "HEAD"))
        except ValueError as exc:
            msg = f"{self._root}: repository has no commits yet; make a first commit, then retry"
            raise RepositoryError(msg, repository=str(self._root)) from exc

    def _branch(self) -> str | None:
        head = self._repo.head
        return None if head.is_detached else str(head.reference.name)

    # --- history -----------------------------------------------------------------------

    def history_connects(self, old_commit: str, new_commit: str) -> bool:
        """True when ``old_commit`` is an ancestor of (or equal to) ``new_commit``.

        False for anything git cannot vouch for: an unknown or rewritten commit (force-push,
        amend, shallow clone), an ambiguous or malformed id. Never raises.
        """
        if not (_COMMIT_ID.fullmatch(old_commit) and _COMMIT_ID.fullmatch(new_commit)):
            return False
        try:
            self._git("merge-base", "--is-ancestor", old_commit, new_commit)
        except RepositoryError:
            return False
        return True

    # --- safe reading --------------------------------------------------------------------

    def read_file(self, rel_path: str, max_bytes: int | None = None) -> bytes:
        """The bytes of one regular file inside the root; :class:`RepositoryError` otherwise."""
        contents, skipped = self.read_files([rel_path], max_bytes=max_bytes)
        if rel_path in skipped:
            raise RepositoryError(
                f"{rel_path!r}: cannot read ({skipped[rel_path]})",
                repository=str(self._root),
                path=rel_path,
            )
        return contents[rel_path]

    def read_files(
        self, rel_paths: Sequence[str], max_bytes: int | None
    ) -> tuple[dict[str, bytes], dict[str, str]]:
        """Read many files; returns contents and skipped ``path -> reason``. Never raises
        for one bad file (see :func:`tasks.repo.safe_files.read_files`)."""
        return read_files(self._root, rel_paths, max_bytes)

    # --- plumbing ------------------------------------------------------------------------

    def _git(self, command: str, *args: str) -> bytes:
        """Run ``git COMMAND ARGS`` in the root; stdout as bytes; errors as RepositoryError."""
        runner = getattr(self._repo.git, command.replace("-", "_"))
        try:
            out: bytes = runner(*args, stdout_as_string=False)
        except git.GitCommandError as exc:
            detail = _first_stderr_line(exc)
            if "dubious ownership" in detail:
                detail += (
                    f"; if you trust it: git config --global --add safe.directory {self._root}"
                )
            raise RepositoryError(
                f"{self._root}: git {command} failed: {detail}", repository=str(self._root)
            ) from exc
        return out


def _split_z(out: bytes) -> Iterator[bytes]:
    return (record for record in out.split(b"\0") if record)


def _decode_path(raw: bytes, skipped: dict[str, str]) -> str | None:
    """Paths are UTF-8 text everywhere downstream (JSON manifests, search results): a name
    that is not is skipped, reported under a backslash-escaped spelling."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        skipped[raw.decode("utf-8", "backslashreplace").rstrip("/")] = SKIP_NON_UTF8
        return None


def _decode_all(out: bytes, skipped: dict[str, str]) -> list[str]:
    decoded = (_decode_path(record, skipped) for record in _split_z(out))
    return [path for path in decoded if path is not None]


def _first_stderr_line(exc: git.GitCommandError) -> str:
    text = str(exc.stderr or "").strip()
    match = re.search(r"stderr: '(.*)'", text, re.DOTALL)
    lines = [ln.strip() for ln in (match.group(1) if match else text).splitlines() if ln.strip()]
    return lines[0] if lines else f"exit status {exc.status}"


__all__ = ["SKIP_REASONS", "Fingerprint", "GitRepository"]
