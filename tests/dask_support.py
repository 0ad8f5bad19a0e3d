"""A real Dask cluster of separate processes, and a password-protected TCP Redis, for tests
and benchmarks: ``dask scheduler`` and ``dask worker`` from the virtualenv's ``bin``, on free
loopback ports, each worker single-threaded with a local directory of its own."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.redis_support import redis_binary

ROOT = Path(__file__).resolve().parents[1]  # the checkout: workers import its packages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TcpRedis:
    """``redis-server --bind 127.0.0.1 --requirepass ...`` on a free port."""

    directory: Path
    password: str = field(default_factory=lambda: "pw" + secrets.token_hex(12))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> TcpRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--requirepass", self.password, "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.directory)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: redis.Redis.from_url(self.url, socket_timeout=0.5).ping(), "redis-server")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@dataclass
class DaskCluster:
    """A scheduler and ``workers`` worker processes (``dask worker --no-nanny``: a killed
    worker stays dead, as a lost machine does). Logs go to ``directory/<name>.log``."""

    directory: Path
    env: dict[str, str]
    workers: int = 2
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> DaskCluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"]
        self._spawn("scheduler", args)
        for i in range(self.workers):
            self.add_worker(f"w{i}")
        self.wait_for_workers(self.workers)
        return self

    def add_worker(self, name: str) -> None:
        local = self.directory / name
        local.mkdir(exist_ok=True)
        args = ["worker", self.address, "--name", name, "--nworkers", "1", "--nthreads", "1"]
        args += ["--no-nanny", "--no-dashboard", "--host", "127.0.0.1"]
        self._spawn(name, [*args, "--local-directory", str(local)])

    def wait_for_workers(self, count: int, timeout_s: float = 120) -> None:
        import distributed

        untyped: Any = distributed.Client
        with untyped(self.address, timeout=timeout_s) as client:
            client.wait_for_workers(count, timeout=timeout_s)

    def kill(self, name: str) -> None:
        """SIGKILL one worker process."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.directory.glob("*.log"))

    def stop(self) -> None:
        for name in [n for n in self.processes if n != "scheduler"] + ["scheduler"]:
            process = self.processes.pop(name, None)
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def _spawn(self, name: str, args: list[str]) -> None:
        dask = str(Path(sys.executable).parent / "dask")
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.env}
        with open(self.directory / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                [dask, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )


def worker_tasks(address: str) -> dict[str, int]:
    """Tasks each worker executed so far, by worker name."""
    import distributed

    def executed(dask_worker: Any) -> tuple[str, int]:
        return str(dask_worker.name), int(dask_worker.state.executed_count)

    untyped: Any = distributed.Client
    with untyped(address, timeout=30) as client:
        return dict(client.run(executed).values())


def _wait(ready: Any, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except (redis.ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


_TEMPLATES = {
    "py": "def compute_{i}(values):\n    return sum(v * {i} for v in values)\n\n\n"
    "class Holder{i}:\n    label = 'holder {i}'\n",
    "js": "export function render{i}(items) {{\n  return items.map((x) => x + {i});\n}}\n",
    "ts": "export interface Shape{i} {{ area(): number }}\n\n"
    "export function scale{i}(s: Shape{i}): number {{\n  return s.area() * {i};\n}}\n",
    "go": "package pkg{i}\n\nfunc Parse{i}(s string) int {{\n\treturn len(s) + {i}\n}}\n",
    "rs": "pub fn checksum_{i}(data: &[u8]) -> u32 {{\n"
    "    data.iter().map(|b| *b as u32 * {i}).sum()\n}}\n",
    "md": "# Module {i}\n\nHow to configure part {i} of the system, step by step.\n",
}


def polyglot_files(count: int) -> dict[str, str | bytes]:
    """``count`` small files in six languages, each with its own names and numbers."""
    kinds = list(_TEMPLATES)
    files: dict[str, str | bytes] = {}
    for i in range(count):
        kind = kinds[i % len(kinds)]
        files[f"src/{kind}/part_{i}.{kind}"] = _TEMPLATES[kind].format(i=i)
    return files
