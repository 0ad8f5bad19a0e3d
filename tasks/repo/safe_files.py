"""Reading files inside a work tree without ever following a link.

:func:`read_files` opens every path component relative to a directory descriptor with
``O_NOFOLLOW``: a symlink anywhere on the path, ``..``, an absolute path or a FIFO is
refused, and a file's size is checked on the open descriptor before a byte is read. Files
sharing a folder share one walk down to it. A file that cannot be read is reported with a
reason (``SKIP_*``), never raised. Used by :class:`tasks.repo.git_repository.GitRepository`.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from config.errors import RepositoryError

SKIP_SYMLINK = "symlink"
SKIP_NOT_REGULAR = "not-a-regular-file"
SKIP_OVERSIZED = "oversized"
SKIP_UNREADABLE = "unreadable"
SKIP_VANISHED = "vanished"
SKIP_INVALID = "invalid-path"

_READ_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class PathSkipped(Exception):
    """One path cannot be read; ``reason`` is one of the ``SKIP_*`` reasons."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_files(
    root: Path, rel_paths: Sequence[str], max_bytes: int | None
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The contents of ``rel_paths`` under ``root``, and skipped ``path -> reason``.

    ``max_bytes`` is checked with ``fstat`` on the opened descriptor before reading
    (``None``: no limit), so a 50 MB file costs one ``open`` and no read. Raises
    :class:`RepositoryError` only when ``root`` itself is gone.
    """
    contents: dict[str, bytes] = {}
    skipped: dict[str, str] = {}
    valid: list[tuple[list[str], str]] = []
    for rel in rel_paths:
        try:
            valid.append((split_rel(rel), rel))
        except PathSkipped as exc:
            skipped[rel] = exc.reason
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise RepositoryError(f"{root}: work tree is gone ({exc.strerror})") from exc
    try:
        for parents, group in itertools.groupby(sorted(valid), key=lambda v: v[0][:-1]):
            read, failed = _read_group(root_fd, parents, list(group), max_bytes)
            contents.update(read)
            skipped.update(failed)
    finally:
        os.close(root_fd)
    return contents, skipped


def split_rel(rel: str) -> list[str]:
    """``a/b/c.py`` -> ``["a", "b", "c.py"]``; refuses absolute, ``..``, ``.git`` and NULs."""
    parts = rel.split("/")
    if not rel or "\0" in rel or any(p in ("", ".", "..", ".git") for p in parts):
        raise PathSkipped(SKIP_INVALID)
    return parts


def lstat_kind(root: Path, rel: str) -> str:
    """``regular``, ``missing``, or the skip reason for anything else (never follows).

    A folder on the way that became a symlink counts as a symlink: ``lstat`` alone would
    follow it, and ``git hash-object`` would hash whatever it points at.
    """
    path = root / rel
    try:
        if "/" in rel and path.parent.resolve() != path.parent:
            return SKIP_SYMLINK
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return SKIP_UNREADABLE
    if stat.S_ISLNK(mode):
        return SKIP_SYMLINK
    return "regular" if stat.S_ISREG(mode) else SKIP_NOT_REGULAR


def _open_dirs(root_fd: int, parts: Sequence[str]) -> int:
    """Descend ``parts`` from ``root_fd`` one ``openat(O_NOFOLLOW)`` at a time."""
    fd = root_fd
    try:
        for name in parts:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise PathSkipped(_open_error_reason(exc, fd, name)) from exc
            if fd != root_fd:
                os.close(fd)
            fd = child
    except PathSkipped:
        if fd != root_fd:
            os.close(fd)
        raise
    return fd


def _read_group(
    root_fd: int, parents: list[str], group: list[tuple[list[str], str]], max_bytes: int | None
) -> tuple[dict[str, bytes], dict[str, str]]:
    """Read files sharing one folder, walking down to that folder once."""
    contents: dict[str, bytes] = {}
    skipped: dict[str, str] = {}
    try:
        dir_fd = _open_dirs(root_fd, parents)
    except PathSkipped as exc:
        return contents, {rel: exc.reason for _, rel in group}
    try:
        for parts, rel in group:
            try:
                contents[rel] = _read_regular(dir_fd, parts[-1], max_bytes)
            except PathSkipped as exc:
                skipped[rel] = exc.reason
    finally:
        if dir_fd != root_fd:
            os.close(dir_fd)
    return contents, skipped


def _read_regular(dir_fd: int, name: str, max_bytes: int | None) -> bytes:
    """Open without following, check type and size on the descriptor, then read."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise PathSkipped(_open_error_reason(exc, dir_fd, name)) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PathSkipped(SKIP_NOT_REGULAR)
        if max_bytes is not None and info.st_size > max_bytes:
            raise PathSkipped(SKIP_OVERSIZED)
        data = _read_up_to(fd, None if max_bytes is None else max_bytes + 1)
    except OSError as exc:
        raise PathSkipped(SKIP_UNREADABLE) from exc
    finally:
        os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:
        raise PathSkipped(SKIP_OVERSIZED)  # it grew after fstat
    return data


def _read_up_to(fd: int, limit: int | None) -> bytes:
    """Read to EOF, stopping after ``limit`` bytes if given (the file may be growing)."""
    chunks: list[bytes] = []
    size = 0
    while limit is None or size < limit:
        chunk = os.read(fd, _READ_CHUNK if limit is None else min(limit - size, _READ_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _open_error_reason(exc: OSError, dir_fd: int, name: str) -> str:
    """Map an ``openat`` failure to a skip reason (a symlink shows as ELOOP or ENOTDIR)."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except OSError:
            return SKIP_VANISHED
        return SKIP_SYMLINK if stat.S_ISLNK(mode) else SKIP_NOT_REGULAR
    if exc.errno in (errno.ENOENT, errno.ESTALE):
        return SKIP_VANISHED
    return SKIP_UNREADABLE
