"""Where the service keeps its files under ``CODEFLOW_HOME/service`` (standard library only:
the thin client imports this).

``service.sock``   the Unix socket the command line speaks to (mode 0600, directory 0700)
``service.lock``   held (flock) by the running service for its whole life
``start.lock``     serializes clients that find no service and start one
``service.json``   what ``codeflow service status`` shows: pid, URLs, settings fingerprint
``service.log``    the service's own log (and its Prefect API's)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.paths import socket_path


@dataclass(frozen=True)
class ServicePaths:
    directory: Path

    @classmethod
    def under(cls, home: Path) -> ServicePaths:
        return cls(home / "service")

    @property
    def socket(self) -> Path:
        return socket_path(self.directory, "service.sock")

    @property
    def lock(self) -> Path:
        return self.directory / "service.lock"

    @property
    def start_lock(self) -> Path:
        return self.directory / "start.lock"

    @property
    def state(self) -> Path:
        return self.directory / "service.json"

    @property
    def log(self) -> Path:
        return self.directory / "service.log"

    def make(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)

    def read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state.read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def write_state(self, state: dict[str, Any]) -> None:
        temp = self.state.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=2)
        temp.replace(self.state)
