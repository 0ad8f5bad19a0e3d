"""The command line's side of the local service: connect (starting it on demand) and check
that it answers for these settings (each command's ``remote_*`` handler then calls it)."""

from __future__ import annotations

import sys

from config.environment import home, settings_digest
from flows.service.client import ServiceClient, connect
from flows.service.paths import ServicePaths


def remote_for() -> ServiceClient | None:
    """The service's client for the settings this process's environment describes, starting
    the service when none runs; None (run in this process) when the running service was
    started with other settings."""
    client, hello = connect(ServicePaths.under(home()))
    if hello.get("fingerprint") != settings_digest():
        print(
            "codeflow: note: the running service was started with other settings "
            f"(pid {hello.get('pid')}); running in this process. `codeflow service stop` "
            "lets the next command start one with these.",
            file=sys.stderr,
        )
        return None
    return client
