"""Warm paths: every command in its own process (``CODEFLOW_SERVICE=off``) beside the same
commands through the local service (``auto``), in one run, whole process: what a user or an
agent waits for, from ``exec`` to exit.

    .venv/bin/python -m benchmarks.warm --source GIT_DIR [--old REV] [--new REV]

The corpus is a clone of ``--source`` (for the published figures, PrefectHQ/prefect: 5,341
files) checked out at ``--old``; each mode gets a fresh ``CODEFLOW_HOME`` (and so its own
embedded Redis and store), then: a cold index (with ``auto`` this first command also starts
the service), five no-op re-indexes, an index of ``--new`` (HEAD~200 to HEAD of prefect
changes 593 files), twenty distinct searches, ten sandbox runs of a small program (when the
sandbox image is built), and, for the service, thirty ``search_code`` calls over MCP (stdio,
the SDK's own client). The index rows also give the flow's own ``duration_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QUERIES = [
    "retry a task run after a failure", "where are flow run states persisted",
    "how are deployments scheduled", "cancel a running flow", "task caching policy",
    "work pool worker polling", "serialize results to json", "concurrency limits",
    "parse a cron schedule", "emit an event", "the REST API client", "settings profiles",
    "database migrations", "block documents", "automations triggers", "logging handlers",
    "flow run timeout", "git clone step", "variables API", "ui server static files",
]  # fmt: skip
PROGRAM = "import json\nprint(json.dumps({'sum': sum(range(1000))}))\n"


def main() -> int:
    args = _arguments()
    with tempfile.TemporaryDirectory(prefix="codeflow-warm-") as scratch:
        base = Path(scratch)
        repo = _clone(args.source, base / "repo", args.old)
        rows = {mode: Mode(mode, base, repo).measure(args) for mode in ("off", "auto")}
    _print(rows)
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warm")
    parser.add_argument("--source", required=True, help="a git repository (work tree or bare)")
    parser.add_argument("--old", default="HEAD~200", help="revision indexed first")
    parser.add_argument("--new", default="HEAD", help="revision of the update")
    return parser.parse_args()


def _clone(source: str, target: Path, revision: str) -> Path:
    subprocess.run(["git", "clone", "-q", "--no-checkout", source, str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "checkout", "-q", revision], check=True)
    return target


class Mode:
    """One mode's measurements, each command a fresh ``codeflow`` process."""

    def __init__(self, mode: str, base: Path, repo: Path) -> None:
        self.mode, self.repo = mode, repo
        self.env = {
            **os.environ, "CODEFLOW_HOME": str(base / mode), "CODEFLOW_SERVICE": mode,
            "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }  # fmt: skip
        self.env.pop("REDIS_URL", None)  # the embedded Redis of a fresh machine

    def codeflow(self, *args: str) -> tuple[float, str]:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli.commands", *args], env=self.env,
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        if done.returncode not in (0, 3):
            raise SystemExit(f"{self.mode}: codeflow {' '.join(args)}: {done.stderr[-2000:]}")
        return elapsed, done.stdout

    def index(self) -> tuple[float, float]:
        elapsed, out = self.codeflow("index", str(self.repo), "--json")
        return elapsed, float(json.loads(out)["duration_s"])

    def measure(self, args: argparse.Namespace) -> dict[str, Any]:
        try:
            row: dict[str, Any] = {"cold": self.index()}
            row["noop"] = _median_pair([self.index() for _ in range(5)])
            subprocess.run(["git", "-C", str(self.repo), "checkout", "-q", args.new], check=True)
            row["update"] = self.index()
            subprocess.run(["git", "-C", str(self.repo), "checkout", "-q", args.old], check=True)
            self.index()  # back where the other mode starts
            row["search"] = _p50([self.codeflow("search", q, "--repo", str(self.repo))[0]
                                  for q in QUERIES])  # fmt: skip
            row["sandbox"] = self.sandbox()
            row["mcp"] = self.mcp() if self.mode == "auto" else None
        finally:
            if self.mode == "auto":
                self.codeflow("service", "stop")
        return row

    def sandbox(self) -> float | None:
        if shutil.which("docker") is None or not _image_built():
            return None
        program = Path(self.env["CODEFLOW_HOME"]) / "program.py"
        program.write_text(PROGRAM)
        return _p50([self.codeflow("sandbox", "run", str(program), "--no-cache")[0]
                     for _ in range(10)])  # fmt: skip

    def mcp(self) -> float:
        return asyncio.run(_mcp_p50(self.env, str(self.repo)))


async def _mcp_p50(env: dict[str, str], repo: str) -> float:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "flows.cli.commands", "mcp"], env=env, cwd=repo
    )
    times = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        for round_ in range(30):
            query = f"{QUERIES[round_ % len(QUERIES)]} {round_}"
            started = time.perf_counter()
            await session.call_tool("search_code", {"query": query, "repo": ".", "limit": 10})
            times.append(time.perf_counter() - started)
    return _p50(times)


def _image_built() -> bool:
    done = subprocess.run(
        ["docker", "image", "inspect", "codeflow-sandbox:latest"], capture_output=True, check=False
    )
    return done.returncode == 0


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def _median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return _p50([p[0] for p in pairs]), _p50([p[1] for p in pairs])


def _print(rows: dict[str, dict[str, Any]]) -> None:
    off, auto = rows["off"], rows["auto"]
    print("| command, whole process | each in its own process | through the service |")
    print("|---|---|---|")
    for key, label in (("cold", "cold index (service: its start included)"),
                       ("noop", "no-op index, p50"), ("update", "update index")):  # fmt: skip
        print(f"| {label} | {_index(off[key])} | {_index(auto[key])} |")
    print(f"| search, p50 of {len(QUERIES)} | {_s(off['search'])} | {_s(auto['search'])} |")
    print(f"| sandbox run, p50 of 10 | {_s(off['sandbox'])} | {_s(auto['sandbox'])} |")
    print(f"| MCP search_code, p50 of 30 | — | {_ms(auto['mcp'])} |")


def _index(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.2f} s ({pair[1]:.2f} s in the flow)"


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f} s"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f} ms"


if __name__ == "__main__":
    sys.exit(main())
