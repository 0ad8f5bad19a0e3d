"""Which repositories and features a token opens: the checks every HTTP endpoint shares.

Grants are the token's rooms (:class:`~server.auth.Grant`), so one claim covers both the
events of a repository and its code:

- ``repo:<repo_id>`` reads one indexed repository (search, related code); ``repo:ab*`` the
  ones whose id starts with ``ab``, ``repo:*`` all of them;
- ``sandbox`` runs code in the sandbox;
- ``*`` opens everything.

>>> grant = Grant(frozenset({"repo:*", "run:7"}), expires=0)
>>> grants_any_repository(grant), grants_any_repository(Grant(frozenset({"runs"}), 0))
(True, False)
>>> require_grant(grant, SANDBOX)
Traceback (most recent call last):
    ...
config.errors.AccessDenied: this token does not grant 'sandbox' (codeflow token --room sandbox)

An endpoint reading a repository calls :func:`readable_repository` on a worker thread (it
opens git and reads the index manifest)::

    root = readable_repository(services_for(settings), grant, repo)   # or RepositoryHidden

Its one error hides why: a missing path, a folder outside any repository, a repository
never indexed and one the token does not grant all raise :class:`RepositoryHidden` with
the same message, so a caller cannot probe the machine's folders with it. (An answer's
timing still differs; the grant is checked before the index, so nothing of an ungranted
repository's index is read.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.errors import AccessDenied, RepositoryError, RepositoryHidden
from server.auth import Grant

if TYPE_CHECKING:
    from tasks.services import Services

REPO_PREFIX = "repo:"
SANDBOX = "sandbox"

__all__ = [
    "REPO_PREFIX",
    "SANDBOX",
    "granted_root",
    "grants_any_repository",
    "readable_repository",
    "repository_room",
    "require_grant",
]


def repository_room(repo_id: str) -> str:
    """The grant (and event room) of one repository: ``repo:<repo_id>``."""
    return f"{REPO_PREFIX}{repo_id}"


def grants_any_repository(grant: Grant) -> bool:
    """Whether ``grant`` could open some repository (checked before any path is looked at:
    a token without one gets 403, whatever it asks for)."""
    return grant.allows_some(REPO_PREFIX)


def require_grant(grant: Grant, room: str) -> None:
    """Raise :class:`AccessDenied` unless ``grant`` allows ``room`` (e.g. :data:`SANDBOX`)."""
    if not grant.allows(room):
        message = f"this token does not grant {room!r} (codeflow token --room {room})"
        raise AccessDenied(message, needed=room)


def readable_repository(svc: Services, grant: Grant, repo: str) -> str:
    """The work-tree root of the indexed repository at ``repo`` (a path on this machine, a
    sub-folder resolving to its repository), if ``grant`` allows ``repo:<repo_id>``.

    Synchronous and blocking (git, the manifest store): call it off the event loop. Raises
    :class:`RepositoryHidden` for every reason the repository cannot be read; other errors
    (the manifest store failing) propagate, but only for a granted repository.
    """
    from tasks.search.repository_search import indexed_namespace

    root = granted_root(grant, repo)
    try:
        indexed_namespace(svc, root)
    except RepositoryError:
        raise RepositoryHidden(repo) from None
    return root


def granted_root(grant: Grant, repo: str) -> str:
    """The root of the work tree at ``repo`` if ``grant`` opens it, indexed or not (what
    indexing needs); nothing of the index is read. Raises :class:`RepositoryHidden`."""
    from tasks.repo.git_repository import GitRepository

    if "\0" in repo:
        raise RepositoryHidden(repo)
    try:
        with GitRepository.open(repo) as opened:
            root, room = str(opened.root), repository_room(opened.repo_id)
    except (RepositoryError, OSError):
        raise RepositoryHidden(repo) from None
    if not grant.allows(room):
        raise RepositoryHidden(repo)
    return root
