"""Warm paths: every command in its own process (``CODEFLOW_SERVICE=off``) beside the same
commands through the local service (``auto``), in one run, whole process: what a user or an
agent waits for, from ``exec`` to exit.

    .venv/bin/python -m benchmarks.warm --source GIT_DIR [--old REV] [--new REV]

The corpus is a fresh repository with two commits, the files of ``--old`` and of ``--new`` in
``--source`` (for the published figures, PrefectHQ/prefect: 5,341 files). Each mode gets a
fresh ``CODEFLOW_HOME`` (and so its own embedded Redis and store), then: a cold index (with
``auto`` this first command also starts the service), five no-op re-indexes, an index of
``--new`` (HEAD~200 to HEAD of prefect changes 593 files), twenty distinct searches, for
the service thirty distinct ``search_code`` calls over MCP (stdio, the SDK's own client),
and ten sandbox runs of a small program (when the sandbox image is built; last, because the
warm pool refills in the background after each run). For the service, a second fresh home
also measures ``codeflow service start`` and a cold index with the service up. The index rows also
give the flow's own ``duration_s``.
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
        repo, commits = _corpus(args.source, base / "repo", (args.old, args.new))
        rows = {mode: Mode(mode, base, repo, commits).measure() for mode in ("off", "auto")}
    _print(rows)
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warm")
    parser.add_argument("--source", required=True, help="a git repository (work tree or bare)")
    parser.add_argument("--old", default="HEAD~200", help="revision indexed first")
    parser.add_argument("--new", default="HEAD", help="revision of the update")
    return parser.parse_args()


def _corpus(source: str, target: Path, revisions: tuple[str, str]) -> tuple[Path, list[str]]:
    """A fresh repository with one commit per revision of ``source``, their files as they
    are there (blobs a partial mirror lacks are left out of both): the commits' SHAs."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(target)], check=True)
    commits = []
    for revision in revisions:
        for path in target.iterdir():
            if path.is_dir() and path.name != ".git":
                shutil.rmtree(path)
            elif path.is_file():
                path.unlink()
        _write_tree(source, revision, target)
        subprocess.run(["git", "-C", str(target), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(target), "-c", "user.name=bench", "-c",
                        "user.email=bench@example.com", "commit", "-q", "-m", revision],
                       check=True)  # fmt: skip
        commits.append(_git(str(target), "rev-parse", "HEAD").strip())
    return target, commits


def _write_tree(source: str, revision: str, target: Path) -> None:
    listing = _git(source, "ls-tree", "-r", "-z", revision).split("\0")
    blobs = [line.split("\t", 1) for line in listing if line]
    wanted = [(meta.split()[2], path) for meta, path in blobs if meta.split()[1] == "blob"]
    batch = subprocess.run(
        ["git", "-C", source, "cat-file", "--batch"], check=True, capture_output=True,
        input="".join(f"{sha}\n" for sha, _ in wanted).encode(),
    ).stdout  # fmt: skip
    offset = 0
    for _sha, path in wanted:
        header_end = batch.index(b"\n", offset)
        header = batch[offset:header_end].split()
        offset = header_end + 1
        if header[-1] == b"missing":
            continue
        size = int(header[2])
        file = target / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(batch[offset : offset + size])
        offset += size + 1


def _git(repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", repo, *args], check=True, capture_output=True, text=True
    ).stdout


class Mode:
    """One mode's measurements, each command a fresh ``codeflow`` process."""

    def __init__(
        self, mode: str, base: Path, repo: Path, commits: list[str], home: str = ""
    ) -> None:
        self.mode, self.base, self.repo, self.commits = mode, base, repo, commits
        self.env = {
            **os.environ, "CODEFLOW_HOME": str(base / (home or mode)), "CODEFLOW_SERVICE": mode,
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

    def checkout(self, commit: str) -> None:
        _git(str(self.repo), "checkout", "-q", "-B", "main", commit)

    def measure(self) -> dict[str, Any]:
        old, new = self.commits
        self.checkout(old)
        try:
            row: dict[str, Any] = {"cold": self.index()}
            row["started"] = self.started_then_cold() if self.mode == "auto" else None
            row["noop"] = _median_pair([self.index() for _ in range(5)])
            self.checkout(new)
            row["update"] = self.index()
            row["search"] = _p50([self.codeflow("search", q, "--repo", str(self.repo))[0]
                                  for q in QUERIES])  # fmt: skip
            row["mcp"] = self.mcp() if self.mode == "auto" else None
            row["sandbox"] = self.sandbox()  # last: its pool refills in the background
        finally:
            self.stop()
        return row

    def stop(self) -> None:
        """The service (if any) and the home's embedded Redis, which outlive a command."""
        from tasks.redis_io.embedded import EmbeddedRedis

        if self.mode == "auto":
            self.codeflow("service", "stop")
        EmbeddedRedis(Path(self.env["CODEFLOW_HOME"]) / "redis").shutdown()

    def started_then_cold(self) -> tuple[float, tuple[float, float]]:
        """In a second fresh home: ``codeflow service start`` (it returns once flows can
        run), then a cold index with the service up."""
        other = Mode(self.mode, self.base, self.repo, self.commits, home="auto-started")
        try:
            started = other.codeflow("service", "start")[0]
            return started, other.index()
        finally:
            other.stop()

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
    print(f"| first command on a fresh home: cold index (service: its start included) | "
          f"{_index(off['cold'])} | {_index(auto['cold'])} |")  # fmt: skip
    started, cold = auto["started"]
    print(f"| `codeflow service start` on a fresh home, until flows can run | — | {_s(started)} |")
    print(f"| cold index, service already running | — | {_index(cold)} |")
    for key, label in (("noop", "no-op index, p50 of 5"), ("update", "update index")):
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
