"""Prefect's own configuration, derived from codeflow's Settings at an edge.

Prefect reads its settings from the environment when it is imported, so the CLI (or a test
harness) calls :func:`apply_prefect_environment` before importing prefect. Values the user
already set win: pointing ``PREFECT_API_URL`` at a real server keeps working.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from config.settings import Settings


def prefect_environment(settings: Settings) -> dict[str, str]:
    """What codeflow wants Prefect to use, given ``settings``."""
    return {
        # Telemetry tries the network (absent here) and logs errors without these.
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Ephemeral mode keeps its SQLite database beside codeflow's other state.
        "PREFECT_HOME": str(settings.home / "prefect"),
        "PREFECT_LOGGING_LEVEL": settings.log_level,
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
        # Our loggers reach the Prefect UI through Prefect's handlers.
        "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks,flows",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        # Two CLI processes starting at once on 2 busy cores can need more than the default.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }


def apply_prefect_environment(
    settings: Settings, environ: MutableMapping[str, str] | None = None
) -> None:
    target = os.environ if environ is None else environ
    for name, value in prefect_environment(settings).items():
        target.setdefault(name, value)
    Path(target["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
