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

An endpoint reading a repository calls :func:`granted_root` on a worker thread (it opens
git), then does its work on that root, and answers any :class:`RepositoryError` of that work
(a repository never indexed) with :class:`RepositoryHidden` too::

    root = granted_root(grant, repo)   # or RepositoryHidden

A repository ID (16 hex digits, no such path here) names a repository without a checkout on
this machine: a server reading a shared store (``CODEFLOW_STORE_URI=s3://...``) answers for
repositories any worker indexed. Its grant is checked on the ID itself, before anything is
read, and :func:`granted_root` returns the ID for the work to resolve through the manifests.

So one error hides why: a missing path, a folder outside any repository, a repository never
indexed and one the token does not grant all answer with the same message, and a caller
cannot probe the machine's folders with it. (An answer's timing still differs; the grant is
checked first, so nothing of an ungranted repository's index is read.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.errors import AccessDenied, RepositoryError, RepositoryHidden
from server.auth import Grant

if TYPE_CHECKING:
    pass

REPO_PREFIX = "repo:"
SANDBOX = "sandbox"

__all__ = [
    "REPO_PREFIX",
    "SANDBOX",
    "granted_root",
    "grants_any_repository",
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


def granted_root(grant: Grant, repo: str) -> str:
    """The root of the work tree at ``repo`` (a path on this machine, a sub-folder resolving
    to its repository) if ``grant`` allows ``repo:<repo_id>``, indexed or not; nothing of the
    index is read. A repository ID comes back as it is, if granted. Synchronous (git): call
    it off the event loop. Raises :class:`RepositoryHidden`."""
    from tasks.index.manifests import is_repository_id
    from tasks.repo.git_repository import GitRepository

    if "\0" in repo:
        raise RepositoryHidden(repo)
    if is_repository_id(repo):
        if not grant.allows(repository_room(repo)):
            raise RepositoryHidden(repo)
        return repo
    try:
        with GitRepository.open(repo) as opened:
            root, room = str(opened.root), repository_room(opened.repo_id)
    except (RepositoryError, OSError):
        raise RepositoryHidden(repo) from None
    if not grant.allows(room):
        raise RepositoryHidden(repo)
    return root
