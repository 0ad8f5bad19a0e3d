"""Cache invalidations reach WebSocket clients: a real index commit and ``codeflow cache
invalidate`` publish ``cache.invalidated``, which a real server process relays to the
repository's room and to the ``cache`` room."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.sync.connection import Connection

import flows.vectorize
from tasks.index.manifests import namespace_for, search_tag
from tasks.redis_io.formats import STREAM
from tasks.repo.git_repository import GitRepository
from tests.git_support import make_repo
from tests.integration.server_fixtures import ROOT, ServerProcess

TIMEOUT_S = 30.0


@pytest.fixture
def server(tmp_path: Path, redis_url: str) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "server-home", redis_url, STREAM)
    yield process
    process.kill()


def listen(server: ServerProcess, *rooms: str) -> ClientConnection:
    client = connect(server.ws_url(), open_timeout=TIMEOUT_S)
    for room in rooms:
        client.send(json.dumps({"type": "subscribe", "room": room}))
        assert json.loads(client.recv(TIMEOUT_S)) == {"type": "subscribed", "room": room}
    return client


def invalidations(client: Connection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` cache.invalidated frames (other events of the run are passed over)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        frame = json.loads(client.recv(TIMEOUT_S))
        if frame["type"] == "event" and frame["event"]["kind"] == "cache.invalidated":
            found.append(frame)
    return found


def repo_id_of(path: Path) -> str:
    with GitRepository.open(str(path)) as repo:
        return repo.repo_id


@pytest.mark.usefixtures("prefect_harness")
def test_an_index_commit_reaches_the_repository_room(
    tmp_path: Path, server: ServerProcess, codeflow_env: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": "def greet(name):\n    return name\n"})
    repo_id = repo_id_of(repo)
    with listen(server, f"repo:{repo_id}", "cache") as client:
        summary = flows.vectorize.vectorize_repository(str(repo))
        frames = invalidations(client, 2)
    assert sorted(f["room"] for f in frames) == ["cache", f"repo:{repo_id}"]
    event = frames[0]["event"]
    namespace = namespace_for(repo_id, "main")
    assert event["namespace"] == f"{codeflow_env['CODEFLOW_TENANT']}.search"
    assert (event["strategy"], event["targets"]) == ("tag", [search_tag(namespace)])
    assert (event["repo_id"], event["index"], event["branch"]) == (repo_id, namespace, "main")
    assert event["flow_run_id"] == summary["flow_run_id"]


def test_the_cli_reaches_the_repository_room_and_the_cache_room(
    tmp_path: Path, server: ServerProcess, codeflow_env: dict[str, str]
) -> None:
    repo_id = "0123456789abcdef"
    tag = search_tag(namespace_for(repo_id, "main"))
    namespace = f"{codeflow_env['CODEFLOW_TENANT']}.search"
    with listen(server, f"repo:{repo_id}") as mine, listen(server, "cache") as everything:
        by_tag = _cli(codeflow_env, "--tag", tag, "--namespace", namespace)
        by_pattern = _cli(codeflow_env, "--pattern", "*", "--namespace", namespace)
        (for_repo,) = invalidations(mine, 1)
        both = invalidations(everything, 2)
    assert by_tag == {"namespaces": {namespace: 1}} and "namespaces" in by_pattern
    assert for_repo["event"]["targets"] == [tag] and for_repo["event"]["repo_id"] == repo_id
    assert [f["event"]["strategy"] for f in both] == ["tag", "pattern"]
    assert "repo_id" not in both[1]["event"]  # a pattern names no repository


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli.commands", "cache", "invalidate", *args, "--json"],
        env={**_base_env(), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CODEFLOW_")}
