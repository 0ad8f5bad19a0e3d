"""``codeflow index`` with no Prefect server configured: the temporary API server codeflow
starts early serves the flow and is gone when the command ends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from tests.git_support import make_repo


def _servers_for(prefect_home: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            command = " ".join(process.info["cmdline"] or [])
            if "uvicorn" in command and process.environ().get("PREFECT_HOME") == prefect_home:
                found.append(process)
        except psutil.Error:
            continue
    return found


def _index(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli.commands", "index", str(repo), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parents[2],
        check=False,
    )


def test_index_without_a_prefect_server(tmp_path: Path, codeflow_env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": "def greet(name):\n    return name\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    first, again = _index(repo, {**env, **codeflow_env}), _index(repo, {**env, **codeflow_env})
    for done in (first, again):
        assert done.returncode == 0, done.stderr[-2000:]
        assert "WARNING" not in done.stderr  # e.g. Prefect's "Still processing items" at exit
    summary, no_op = json.loads(first.stdout), json.loads(again.stdout)
    assert (summary["files_total"], summary["chunks_embedded"]) == (1, 1)
    assert (no_op["files_changed"], no_op["chunks_embedded"]) == (0, 0)
    assert _servers_for(str(Path(codeflow_env["CODEFLOW_HOME"]) / "prefect")) == []


def test_a_prefect_server_that_is_down_is_one_clear_line(
    tmp_path: Path, codeflow_env: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **codeflow_env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    done = _index(repo, env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("codeflow: error: Failed to reach API")
    assert "Traceback" not in done.stderr
