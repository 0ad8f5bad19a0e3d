"""Who may run what over the network: the grant of the request's token (set by
:class:`server.asgi.AsgiHandler`) checked against the operation before it runs, with the
checks of :mod:`server.access` (the HTTP API's own)."""

from __future__ import annotations

from typing import Any

from config import Settings
from config.errors import (
    AccessDenied,
    CodeflowError,
    RepositoryError,
    RepositoryHidden,
    TokenError,
)
from flows.service.operations import resolve_repo
from server.access import (
    SANDBOX,
    granted_root,
    grants_any_repository,
    require_grant,
)
from server.asgi import current_grant

NETWORK_CWD = "/"  # a network caller has no working directory: paths are absolute or names


def authorize_operation(settings: Settings, op: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` ready to run (its repository resolved to a work tree), or an error when the
    token does not grant it: ``sandbox`` for runs, ``repo:<id>`` for the repository tools
    (unknown, non-repository and ungranted paths answer alike; :data:`READS` of a repository
    never indexed answer so too, see :func:`hidden`)."""
    grant = current_grant.get()
    if grant is None:
        raise TokenError("no token")
    if op == "sandbox":
        require_grant(grant, SANDBOX)
        return body
    if not grants_any_repository(grant):
        raise AccessDenied(
            "this token grants no repository (codeflow token --room repo:<id>)", needed="repo:"
        )
    key = "repo" if "repo" in body else "path"
    path = resolve_repo(settings, str(body[key]), NETWORK_CWD)
    return {**body, key: granted_root(grant, path), "cwd": NETWORK_CWD}


#: Operations that read a repository's index: a token may not tell from them whether an
#: unreadable repository exists.
READS = frozenset({"search", "related", "status"})


def hidden(op: str, body: dict[str, Any], error: CodeflowError) -> CodeflowError:
    """``error`` as a network caller sees it: for :data:`READS`, a repository error (never
    indexed) is the same :class:`RepositoryHidden` as a repository the token may not read."""
    if op in READS and isinstance(error, RepositoryError):
        return RepositoryHidden(str(body.get("repo", body.get("path", ""))))
    return error
