"""Who may run what over the network: the grant of the request's token (set by
:class:`server.asgi.AsgiHandler`) checked against the operation before it runs, with the
checks of :mod:`server.access` (the HTTP API's own)."""

from __future__ import annotations

from typing import Any

from config import Settings
from config.errors import AccessDenied, TokenError
from flows.service.operations import resolve_repo
from server.access import (
    SANDBOX,
    granted_root,
    grants_any_repository,
    readable_repository,
    require_grant,
)
from server.asgi import current_grant

NETWORK_CWD = "/"  # a network caller has no working directory: paths are absolute or names


def authorize_operation(settings: Settings, op: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` ready to run (its repository resolved to a work tree), or an error when the
    token does not grant it: ``sandbox`` for runs, ``repo:<id>`` for the repository tools
    (unknown, non-repository and ungranted paths answer alike)."""
    from tasks.services import services_for

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
    if op == "index":  # nothing indexed yet is fine: the grant is what counts
        root = granted_root(grant, path)
    else:
        root = readable_repository(services_for(settings), grant, path)
    return {**body, key: root, "cwd": NETWORK_CWD}
