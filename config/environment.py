"""What the environment says before any settings are parsed (standard library only): the thin
client of the local service reads its home and its settings' digest from here, without
loading the settings model (pydantic costs ~100 ms of a command that takes ~0.2 s).

:data:`SEED_VARIABLES` must name every unprefixed variable :class:`config.Settings` reads
(a unit test compares them).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

PREFIX = "CODEFLOW_"
SEED_VARIABLES = frozenset({
    "REDIS_URL", "OPENAI_API_KEY", "PINECONE_API_KEY", "CORS_ORIGIN", "WEBSOCKET_PORT",
    "CACHE_TTL_DAYS", "SANDBOX_TIMEOUT_MS", "SANDBOX_RUNTIME",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
})  # fmt: skip
#: Variables a service sets for itself or that only the client reads: not part of the digest.
CLIENT_ONLY = frozenset({
    "CODEFLOW_SERVICE", "CODEFLOW_SERVICE_IDLE_S", "CODEFLOW_SERVICE_PORT",
    "CODEFLOW_SANDBOX_POOL_SIZE",
})  # fmt: skip


#: What the local service sets for itself unless the environment says otherwise.
SERVICE_DEFAULTS = {"CODEFLOW_SANDBOX_POOL_SIZE": "2"}


def home(environ: Mapping[str, str] | None = None) -> Path:
    """``CODEFLOW_HOME`` as :class:`config.Settings` resolves it."""
    source = os.environ if environ is None else environ
    return Path(source.get("CODEFLOW_HOME") or "~/.codeflow").expanduser().absolute()


def uses_service(environ: Mapping[str, str] | None = None) -> bool:
    """``CODEFLOW_SERVICE`` is ``auto`` (its default): commands go to the local service. Any
    other value means this process (a bad one is then reported by the settings)."""
    source = os.environ if environ is None else environ
    return source.get("CODEFLOW_SERVICE", "auto") == "auto"


def apply_service_defaults() -> None:
    """In the service's own process: :data:`SERVICE_DEFAULTS` where the environment is
    silent (the flows it runs read their settings from it)."""
    for name, value in SERVICE_DEFAULTS.items():
        os.environ.setdefault(name, value)


def settings_digest(environ: Mapping[str, str] | None = None) -> str:
    """A digest of every variable codeflow's settings (and Prefect's API URL) are read from,
    values included (secrets too: a changed key is a changed digest)."""
    source = os.environ if environ is None else environ
    relevant = {
        name: value
        for name, value in source.items()
        if (name.startswith(PREFIX) or name in SEED_VARIABLES or name == "PREFECT_API_URL")
        and name not in CLIENT_ONLY
    }
    material = json.dumps(sorted(relevant.items())).encode()
    return hashlib.sha256(material).hexdigest()[:32]
