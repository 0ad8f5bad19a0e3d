"""Signed room grants: JWTs (HS256, PyJWT) with an expiry and a ``rooms`` claim.

A token lists the rooms it opens: exact names (``run:42``), prefix grants ending in ``*``
(``run:*`` opens every run) or ``*`` alone for everything. The server refuses the WebSocket
upgrade for a token that is forged, malformed or expired, and answers ``forbidden`` to a
subscription its grant does not cover.

>>> secret = b"0" * 32
>>> grant = verify_token(secret, issue_token(secret, ["run:*"], ttl_s=60))
>>> grant.allows("run:42"), grant.allows("runs")
(True, False)

The signing secret is ``CODEFLOW_TOKEN_SECRET`` or, when unset, a random one kept in
``<home>/token.secret`` (mode 0600), so tokens survive a server restart and every local
process (`codeflow token`, `codeflow serve`) agrees on it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from config import Settings
from config.errors import TokenError

ALGORITHM = "HS256"
_SECRET_FILE = "token.secret"  # noqa: S105 (a file name)
_MAX_TTL_S = 366 * 86400


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows: rooms (exact, prefix ``x:*`` or ``*``) until ``expires``."""

    rooms: frozenset[str]
    expires: float

    def allows(self, room: str) -> bool:
        if room in self.rooms or "*" in self.rooms:
            return True
        return any(g.endswith("*") and room.startswith(g[:-1]) for g in self.rooms)

    def allows_some(self, prefix: str) -> bool:
        """Whether some room ``prefix<more>`` is allowed: ``*``, ``prefix<x>``, a prefix
        grant inside the family (``repo:ab*``) or above it (``re*``) all say yes.

        >>> Grant(frozenset({"repo:ab*"}), 0).allows_some("repo:")
        True
        >>> Grant(frozenset({"run:*", "repo:"}), 0).allows_some("repo:")
        False
        """
        for granted in self.rooms:
            if granted.endswith("*"):
                stem = granted[:-1]
                if prefix.startswith(stem) or stem.startswith(prefix):
                    return True
            elif granted.startswith(prefix) and len(granted) > len(prefix):
                return True
        return False

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires


def issue_token(secret: bytes, rooms: list[str], ttl_s: int) -> str:
    """A token granting ``rooms`` for ``ttl_s`` seconds."""
    if not rooms or not all(isinstance(r, str) and r for r in rooms):
        raise TokenError("a token needs at least one room (e.g. 'runs', 'run:*' or '*')")
    if not 0 < ttl_s <= _MAX_TTL_S:
        raise TokenError(f"token lifetime must be between 1 s and {_MAX_TTL_S} s, got {ttl_s}")
    now = int(time.time())
    claims = {"rooms": sorted(set(rooms)), "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: bytes, token: str | None) -> Grant:
    """Check signature, expiry and shape; raises :class:`TokenError`."""
    if not token:
        raise TokenError("no token: connect with ?token=... (see `codeflow token`)")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "rooms"]}
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired: issue a new one with `codeflow token`") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    rooms = claims["rooms"]
    if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
        raise TokenError("invalid token: the rooms claim must be a list of strings")
    return Grant(frozenset(rooms), float(claims["exp"]))


def token_secret(settings: Settings) -> bytes:
    """``settings.token_secret``, else the secret persisted under ``settings.home``."""
    if settings.token_secret is not None:
        value = settings.token_secret.get_secret_value().encode()
        if value:
            return value
    return _persisted_secret(settings.home / _SECRET_FILE)


def _persisted_secret(path: Path) -> bytes:
    """Read the secret file, creating it atomically (write a temp file, hard-link it into
    place: the link fails if another process won the race, and then we read theirs)."""
    with contextlib.suppress(FileNotFoundError):
        return _read_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    value = path.read_bytes().strip()
    if len(value) < 32:
        raise TokenError(f"{path} holds no usable secret: delete it and a new one is made")
    return value
