"""Real Redis topologies for tests: a 3-master Redis Cluster and a master watched by one
Sentinel, from Debian's ``redis-server`` on free loopback ports in a directory of their own.

>>> with RedisCluster(tmp_path / "cluster") as cluster:      # doctest: +SKIP
...     cluster.url                                           # any node's URL
'redis://127.0.0.1:41234/0'
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from tests.redis_support import redis_binary

HOST = "127.0.0.1"
_START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A loopback port that is free, and whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        if port < 55535 and _is_free(port + 10000):
            return port
    raise RuntimeError("no free pair of loopback ports")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _wait(check: object, what: str, timeout_s: float = _START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout_s:.0f} s")


class _Servers:
    """Processes started from arguments, each killed (and waited for) on :meth:`stop`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, *args: str) -> None:
        log = (self.directory / f"server-{len(self.processes)}.log").open("wb")
        self.processes.append(
            subprocess.Popen([redis_binary(), *args], stdout=log, stderr=subprocess.STDOUT)
        )

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
        self.processes.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _plain_args(port: int, directory: Path) -> list[str]:
    return ["--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir",
            str(directory)]  # fmt: skip


class RedisCluster(_Servers):
    """Three masters (no replicas) with every slot assigned; ``url`` names the first node."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        super().__init__(directory)
        self.ports = [free_port() for _ in range(masters)]

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.ports[0]}/0"

    def start(self) -> RedisCluster:
        for port in self.ports:
            node = self.directory / str(port)
            node.mkdir(exist_ok=True)
            self.spawn(*_plain_args(port, node), "--cluster-enabled", "yes",
                       "--cluster-config-file", str(node / "nodes.conf"))  # fmt: skip
        for port in self.ports:
            _wait(redis.Redis(host=HOST, port=port).ping, f"cluster node {port}")
        nodes = [f"{HOST}:{port}" for port in self.ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0"],
            input=b"yes\n",
            check=True,
            capture_output=True,
            timeout=_START_TIMEOUT_S,
        )
        for port in self.ports:
            _wait(lambda p=port: self.state(p) == "ok", f"cluster node {port}")
        return self

    def state(self, port: int) -> str:
        info = redis.Redis(host=HOST, port=port, socket_timeout=1).cluster("info")
        return str(info.get("cluster_state", ""))

    def client(self) -> redis.cluster.RedisCluster:
        return redis.cluster.RedisCluster(host=HOST, port=self.ports[0])


class SentinelSetup(_Servers):
    """One master and one Sentinel watching it as ``master_name``; ``url`` names the
    Sentinel."""

    def __init__(self, directory: Path, master_name: str = "codeflow") -> None:
        super().__init__(directory)
        self.master_name = master_name
        self.master_port, self.sentinel_port = free_port(), free_port()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.sentinel_port}/0"

    @property
    def master_url(self) -> str:
        return f"redis://{HOST}:{self.master_port}/0"

    def start(self) -> SentinelSetup:
        master_dir = self.directory / "master"
        master_dir.mkdir(exist_ok=True)
        self.spawn(*_plain_args(self.master_port, master_dir))
        _wait(redis.Redis(host=HOST, port=self.master_port).ping, "the master")
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\nbind {HOST}\ndir {self.directory}\n"
            f"sentinel monitor {self.master_name} {HOST} {self.master_port} 1\n"
        )
        self.spawn(str(config), "--sentinel")
        sentinel = redis.Redis(host=HOST, port=self.sentinel_port)
        _wait(lambda: self.master_name in sentinel.sentinel_masters(), "the sentinel")
        return self

    def monitor(self, name: str) -> None:
        """Have the Sentinel watch the same master under one more ``name``."""
        sentinel = redis.Redis(host=HOST, port=self.sentinel_port)
        sentinel.sentinel_monitor(name, HOST, self.master_port, 1)
