"""File-system names shared by every layer (standard library only)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_MAX_SOCKET_PATH = 100  # the kernel's limit is 108 bytes, terminator included


def socket_path(directory: Path, name: str) -> Path:
    """``directory/name``, or a short ``/tmp`` name unique to ``directory`` when that path is
    too long for a Unix socket."""
    candidate = directory / name
    if len(str(candidate)) <= _MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    return Path("/tmp") / f"codeflow-{os.getuid()}-{digest}.sock"  # noqa: S108
