"""Realtime fan-out benchmark: codeflow's Tornado server vs python-socketio + Redis manager.

    .venv/bin/python -m benchmarks.realtime [--quick]

Each server runs in its own process on loopback, with its own redis-server; clients run in
two other processes (``clients.py``). Per server, in one run:

1. 1,000 clients in room ``runs``: connect time, server memory per connection, then
   10 events/s for 10 s: publish → receive latency p50/p99 over every delivery, events lost;
   then a reconnect storm: every client drops, 50 events are published, all reconnect at once
   (ours with ``since`` = the last ID each saw) while publishing goes on: events lost must be 0.
2. 5,000 clients held by a fresh server: connect time, memory per connection, and one event
   delivered to all of them.

Latency is receive time minus the event's ``ts`` (stamped when it was built, just before
publishing), on one machine's clock. On a 2-core machine the server under test is pinned to
core 0 and Redis, the publisher and the clients to core 1, for both servers alike; the
clients are minimal raw-WebSocket clients (``clients.py``) so that they cost little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import redis
import redis.asyncio as aioredis

from tasks.events.model import Event, make_event
from tasks.redis_io.formats import STREAM, stream_fields

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CLIENT_PROCS = 2
RATE = 10  # events per second in the latency phase


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


SERVER_CPUS = {0}
OTHER_CPUS = {1}


def pin(pid: int, cpus: set[int]) -> None:
    """Give the server under test a core of its own and everything else the other one (as
    in FIELD-NOTES' measurements); both servers get the same treatment."""
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, cpus)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.socket = directory / "r.sock"
        self.url = f"unix://{self.socket}?db=0"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pin(self.process.pid, OTHER_CPUS)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(unix_socket_path=str(self.socket)).ping():
                    return
            except (redis.ConnectionError, OSError):
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


class Target:
    """A server under test: start it, publish to it, stop it."""

    name = ""

    def __init__(self, redis_url: str, home: Path) -> None:
        self.redis_url = redis_url
        self.home = home
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.counter = 0

    def next_event(self, end: bool) -> Event:
        """The next state event of the benchmark's run (``end``: the last one)."""
        self.counter += 1
        return make_event(
            "flow_run.state",
            flow_run_id=f"b{self.counter}",
            flow_name="bench",
            state="Running",
            end=end or None,
        )

    def _spawn(self, args: list[str], env: dict[str, str]) -> str:
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        pin(self.process.pid, SERVER_CPUS)
        assert self.process.stdout is not None
        return self.process.stdout.readline().decode()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    async def start(self) -> None:
        raise NotImplementedError

    async def publish(self, end: bool = False) -> str:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class CodeflowTarget(Target):
    name = "codeflow (Tornado)"

    async def start(self) -> None:
        line = self._spawn(
            [sys.executable, "-m", "server", "--port", str(free_port())],
            {
                "REDIS_URL": self.redis_url,
                "CODEFLOW_HOME": str(self.home),
                "CODEFLOW_LOG_LEVEL": "ERROR",
            },
        )
        url = line.strip().split(" ")[-1]
        self.url = url.replace("http://", "ws://").replace("/?token=", "/ws?token=")
        self.client = aioredis.Redis.from_url(self.redis_url)

    async def publish(self, end: bool = False) -> str:
        event = self.next_event(end)
        entry_id = await self.client.xadd(
            STREAM, stream_fields(event), maxlen=100_000, approximate=True
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def close(self) -> None:
        await self.client.aclose()


class SocketIOTarget(Target):
    name = "python-socketio + Redis"

    async def start(self) -> None:
        import socketio  # type: ignore[import-untyped]

        port = free_port()
        self._spawn(
            [
                sys.executable,
                str(HERE / "socketio_server.py"),
                "--redis-url",
                self.redis_url,
                "--port",
                str(port),
            ],
            {},
        )
        self.url = f"ws://127.0.0.1:{port}"
        self.manager = socketio.AsyncRedisManager(self.redis_url, write_only=True)
        await wait_for_port(port)

    async def publish(self, end: bool = False) -> str:
        event = self.next_event(end)
        event["n"] = self.counter
        await self.manager.emit("event", event, room="runs")
        return str(self.counter)

    async def close(self) -> None:
        pass


async def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError(f"nothing listens on {port}")


class ClientGroup:
    """Client processes sharing ``n`` connections; commands go to all, replies are lists."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self.processes = processes

    @classmethod
    async def start(cls, target: Target, n: int, procs: int = CLIENT_PROCS) -> ClientGroup:
        kind = "codeflow" if isinstance(target, CodeflowTarget) else "socketio"
        sizes = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "clients.py"),
                "--kind",
                kind,
                "--url",
                target.url,
                "-n",
                str(size),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
                limit=2**26,
            )
            for size in sizes
            if size
        ]
        for process in processes:
            pin(process.pid, OTHER_CPUS)
        return cls(processes)

    async def replies(self, timeout: float = 300) -> list[dict[str, Any]]:
        async def one(process: asyncio.subprocess.Process) -> dict[str, Any]:
            assert process.stdout is not None
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError("a client process died")
            reply: dict[str, Any] = json.loads(line)
            return reply

        return await asyncio.wait_for(asyncio.gather(*(one(p) for p in self.processes)), timeout)

    async def command(self, text: str, timeout: float = 300) -> list[dict[str, Any]]:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(text.encode() + b"\n")
            await process.stdin.drain()
        return await self.replies(timeout)

    async def quit(self) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(b"quit\n")
            await process.stdin.drain()
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in self.processes)), 120)


async def publish_for(target: Target, seconds: float, rate: float) -> list[str]:
    ids = []
    start = time.perf_counter()
    for i in range(int(seconds * rate)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        ids.append(await target.publish())
    return ids


async def report(group: ClientGroup, ids: list[str], tmp: Path) -> dict[str, Any]:
    path = tmp / "expected.json"
    path.write_text(json.dumps(ids))
    parts = await group.command(f"report {path}")
    merged: dict[str, Any] = {
        key: sum(p[key] for p in parts) for key in ("lost", "dups", "extra", "received")
    }
    merged["latencies"] = np.concatenate([np.asarray(p["latencies"]) for p in parts])
    return merged


async def end_and_wait(target: Target, group: ClientGroup) -> int:
    await target.publish(end=True)
    return sum(p["ended"] for p in await group.command("wait_end 60"))


async def warm_up(target: Target) -> None:
    group = await ClientGroup.start(target, 20, procs=1)
    await group.replies()
    await end_and_wait(target, group)
    await group.quit()


async def phase_1000(target: Target, n: int, seconds: float, tmp: Path) -> dict[str, Any]:
    await warm_up(target)
    base = target.rss()
    group = await ClientGroup.start(target, n)
    ready = await group.replies()
    rss = target.rss()
    ids = await publish_for(target, seconds, RATE)
    ended = await end_and_wait(target, group)
    live = await report(group, ids, tmp)
    lat = live["latencies"] * 1000
    await group.command("drop")
    missed = [await target.publish() for _ in range(50)]
    storm = asyncio.ensure_future(group.command("reconnect"))
    during = await publish_while(target, storm)
    reconnected = await storm
    await end_and_wait(target, group)
    replay = await report(group, missed + during, tmp)
    await group.quit()
    return {
        "clients": n,
        "connect_s": max(r["connect_s"] for r in ready),
        "connect_failed": sum(r["failed"] for r in ready),
        "kb_per_conn": (rss - base) / n / 1024,
        "deliveries": live["received"],
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "max_ms": float(lat.max()) if len(lat) else float("nan"),
        "lost_live": live["lost"],
        "end_seen_by": ended,
        "storm_reconnect_s": max(r["connect_s"] for r in reconnected),
        "storm_events": len(missed) + len(during),
        "storm_lost": replay["lost"],
        "storm_dups": replay["dups"],
    }


async def publish_while(target: Target, pending: Awaitable[Any]) -> list[str]:
    ids = []
    task = asyncio.ensure_future(pending)
    while not task.done():
        ids.append(await target.publish())
        await asyncio.sleep(1 / RATE)
    return ids


async def phase_hold(target: Target, n: int) -> dict[str, Any]:
    await warm_up(target)
    base = target.rss()
    group = await ClientGroup.start(target, n)
    ready = await group.replies()
    rss = target.rss()
    reached = await end_and_wait(target, group)
    await group.quit()
    return {
        "clients": n,
        "connect_s": max(r["connect_s"] for r in ready),
        "connect_failed": sum(r["failed"] for r in ready),
        "kb_per_conn": (rss - base) / n / 1024,
        "delivered_to": reached,
    }


async def bench(
    target_cls: type[Target],
    redis_url: str,
    tmp: Path,
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    rows = []
    for phase in ("latency", "hold"):
        target = target_cls(redis_url, tmp / "home")
        await target.start()
        try:
            if phase == "latency":
                log(f"{target.name}: {args.clients} clients, latency + reconnect storm")
                row = await phase_1000(target, args.clients, args.seconds, tmp)
            else:
                log(f"{target.name}: holding {args.hold} clients")
                row = await phase_hold(target, args.hold)
        finally:
            await target.close()
            target.stop()
        rows.append({"server": target.name, "phase": phase, **row})
    return rows


async def main(args: argparse.Namespace) -> None:
    raise_nofile()
    pin(os.getpid(), OTHER_CPUS)
    with tempfile.TemporaryDirectory(prefix="rt-bench-") as name:
        tmp = Path(name)
        rows: list[dict[str, Any]] = []
        for target_cls in (CodeflowTarget, SocketIOTarget):
            redis_server = RedisServer(tmp)
            try:
                rows += await bench(
                    target_cls,
                    redis_server.url,
                    tmp,
                    args,
                    lambda m: print(m, file=sys.stderr, flush=True),
                )
            finally:
                redis_server.stop()
        print_tables(rows)


def print_tables(rows: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    latency = frame[frame.phase == "latency"].drop(
        columns=["phase", "delivered_to"], errors="ignore"
    )
    hold = frame[frame.phase == "hold"][
        ["server", "clients", "connect_s", "connect_failed", "kb_per_conn", "delivered_to"]
    ]
    print(f"\n1) {RATE} events/s to one room, then a reconnect storm with replay")
    print(latency.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print("\n2) clients held by one process")
    print(hold.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print("\ngoals: 5,000 held at <= 20 KB each; p99 <= 50 ms at 1,000 clients; storm_lost 0")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--hold", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="200 clients, 1,000 held, 3 s")
    options = parser.parse_args()
    if options.quick:
        options.clients, options.hold, options.seconds = 200, 1000, 3.0
    asyncio.run(main(options))
