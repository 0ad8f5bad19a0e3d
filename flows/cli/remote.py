"""The command line's side of the local service: connect (starting it on demand) and check
that it answers for these settings (each command's ``remote_*`` handler then calls it)."""

from __future__ import annotations

import sys

from config import Settings
from flows.service.client import ServiceClient, connect
from flows.service.paths import ServicePaths, fingerprint


def remote_for(settings: Settings) -> ServiceClient | None:
    """The service's client for these settings, starting the service when none runs; None
    (run in this process) when the running service was started with other settings."""
    paths = ServicePaths.under(settings.home)
    client, hello = connect(paths)
    if hello.get("fingerprint") != fingerprint(settings):
        print(
            "codeflow: note: the running service was started with other settings "
            f"(pid {hello.get('pid')}); running in this process. `codeflow service stop` "
            "lets the next command start one with these.",
            file=sys.stderr,
        )
        return None
    return client
