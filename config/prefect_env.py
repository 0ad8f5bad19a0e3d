"""Prefect's own configuration, derived from codeflow's Settings at an edge.

Prefect reads its settings from the environment when it is imported, so the CLI (or a test
harness) calls :func:`apply_prefect_environment` before importing prefect. Values the user
already set win: pointing ``PREFECT_API_URL`` at a real server keeps working.
:func:`uses_ephemeral_api` tells, from that environment and the active Prefect profile,
whether flows will run on Prefect's temporary API server.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from config.settings import Settings

STARTUP_TIMEOUT_S = 120  # Prefect's temporary API server; its own default (20 s) is too short
_OFF = {"0", "false", "no", "off"}


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
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(STARTUP_TIMEOUT_S),
    }


def apply_prefect_environment(
    settings: Settings, environ: MutableMapping[str, str] | None = None
) -> MutableMapping[str, str]:
    """Fill in codeflow's Prefect settings (``os.environ`` by default); returns the mapping."""
    target = os.environ if environ is None else environ
    for name, value in prefect_environment(settings).items():
        target.setdefault(name, value)
    Path(target["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    return target


def uses_ephemeral_api(environ: Mapping[str, str]) -> bool:
    """No API URL in the environment or the active profile, and ephemeral mode not off."""
    if environ.get("PREFECT_API_URL"):
        return False
    for name in ("PREFECT_SERVER_EPHEMERAL_ENABLED", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"):
        if environ.get(name, "").strip().lower() in _OFF:
            return False
    home = Path(environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    path = Path(environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return True  # no profile file: Prefect's defaults (ephemeral)
    active = environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    chosen = profiles.get("profiles", {}).get(active, {})
    if chosen.get("PREFECT_API_URL"):
        return False
    return str(chosen.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")).lower() not in _OFF


def prefect_api_url() -> str | None:
    """The Prefect API this process's environment names (None: none named)."""
    return os.environ.get("PREFECT_API_URL") or None


def has_prefect_server() -> bool:
    """This process is configured for a Prefect server (its environment or active profile)."""
    return not uses_ephemeral_api(os.environ)


def startup_timeout_s(environ: Mapping[str, str]) -> float:
    """How long to wait for Prefect's temporary API server to answer."""
    try:
        return float(environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", ""))
    except ValueError:
        return float(STARTUP_TIMEOUT_S)
