"""The compose stack end to end: two workers without a shared disk, S3 vectors, Redis, the
Prefect server, `serve`. ``scripts/stack-test`` builds the images, starts the stack, serves
the repositories these tests index (``CODEFLOW_GIT_ROOT``) and runs this module; elsewhere
it is skipped.

Each repository is also indexed on this machine alone (``codeflow index``, a local store):
the stack's index must hold exactly the same chunks.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from config import load_settings
from tasks.backends import build_store
from tasks.index.manifests import namespace_for
from tasks.redis_io.embedded import EmbeddedRedis
from tests.stack.stack_support import EventListener, Stack

pytestmark = pytest.mark.skipif(
    os.environ.get("CODEFLOW_STACK_TEST") != "1",
    reason="runs against the compose stack that scripts/stack-test starts",
)

VECTORIZE = "vectorize_source/vectorize"
SANDBOX = "run_sandboxed/sandbox"
#: The repositories scripts/stack-test serves, and a question each answers.
QUESTIONS = {
    "codeflow": ("per-token rate limiter answering 429", "server/ratelimit.py"),
    "click": ("parse command line options into parameters", "parser.py"),
}


@pytest.fixture(scope="module")
def stack() -> Stack:
    """The stack, its scheduled sync paused (it would take a worker from the tests' runs)."""
    started = Stack.from_environment()
    started.pause("sync_repositories/sync")
    return started


@pytest.fixture(scope="module")
def listener(stack: Stack) -> Iterator[EventListener]:
    ws = stack.serve_url.replace("http://", "ws://")
    client = EventListener(f"{ws}/ws?token={stack.token('*')}")
    client.subscribe("runs")
    yield client
    client.close()


@pytest.fixture(scope="module")
def indexed(stack: Stack, listener: EventListener) -> dict[str, dict[str, Any]]:
    """Both repositories registered, then indexed at once through the Prefect API."""
    for name in QUESTIONS:
        stack.compose("exec", "-T", "serve", "codeflow", "repo", "add", _url(name))
    runs = {name: stack.run_deployment(VECTORIZE, {"source": _url(name)}) for name in QUESTIONS}
    done = {name: stack.wait(run_id) for name, run_id in runs.items()}
    for run in done.values():
        run["subflow"] = stack.subflow_of(run["id"])
        listener.subscribe(f"run:{run['subflow']}")  # replayed from the stream's start
    return done


def test_two_workers_index_two_repositories_at_once(
    stack: Stack, indexed: dict[str, dict[str, Any]]
) -> None:
    assert {run["state"]["type"] for run in indexed.values()} == {"COMPLETED"}
    first, second = (stack.workers_of(run["id"]) for run in indexed.values())
    assert len(first) == len(second) == 1 and first != second, (first, second)


def test_the_runs_events_reach_a_websocket_client(
    listener: EventListener, indexed: dict[str, dict[str, Any]]
) -> None:
    for run in indexed.values():
        summary = listener.wait_for(run["subflow"], "index.summary")
        assert summary["chunks_total"] > 0 and summary["trace_id"] == run["id"]
        for run_id in (run["id"], run["subflow"]):  # the deployment's run and its subflow
            events = listener.of_run(run_id)
            states = [e["state"] for e in events if e["kind"] == "flow_run.state"]
            assert "Running" in states and "Completed" in states, (run_id, states)


def test_each_repository_is_searched_from_the_host(
    stack: Stack, listener: EventListener, indexed: dict[str, dict[str, Any]]
) -> None:
    for name, (question, expected) in QUESTIONS.items():
        summary = listener.wait_for(indexed[name]["subflow"], "index.summary")
        paths = [hit["path"] for hit in stack.search(summary["repo_id"], question)]
        assert any(path.endswith(expected) for path in paths), (name, paths)


def test_the_stack_indexes_what_one_machine_indexes(
    stack: Stack,
    listener: EventListener,
    indexed: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    for name, run in indexed.items():
        summary = listener.wait_for(run["subflow"], "index.summary")
        assert _stack_ids(stack, summary, tmp_path) == _one_machine_ids(stack, name, tmp_path)


def test_a_program_runs_through_the_sandbox_deployment(
    stack: Stack, listener: EventListener
) -> None:
    """Events never carry a program's output: its exit status shows that it ran."""
    code = "import sys\nsys.exit(sum(range(10)) - 42)"
    run_id = stack.run_deployment(SANDBOX, {"code": code, "use_cache": False})
    listener.subscribe(f"run:{run_id}")
    assert stack.wait(run_id)["state"]["type"] == "COMPLETED"
    result = listener.wait_for(run_id, "sandbox.result")
    assert result["exit_code"] == 3, result


def test_a_run_whose_worker_is_killed_is_finished_by_the_other(
    stack: Stack, listener: EventListener, indexed: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    run_id = stack.run_deployment(VECTORIZE, {"source": _url("tornado")})
    stack.wait_running(run_id)
    first = stack.subflow_of(run_id)
    listener.subscribe(f"run:{first}")
    listener.wait_for(first, "progress", timeout_s=120)  # mid-run: files are being indexed
    (lost,) = stack.workers_of(run_id)
    (other,) = {"worker-1", "worker-2"} - {lost}
    stack.compose("kill", lost)
    try:
        run = stack.wait(run_id, timeout_s=900)
    finally:
        stack.compose("start", lost)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert other in stack.workers_of(run_id)
    last = stack.subflow_of(run_id)  # the attempt on the other worker
    listener.subscribe(f"run:{last}")
    summary = listener.wait_for(last, "index.summary")
    assert _stack_ids(stack, summary, tmp_path) == _one_machine_ids(stack, "tornado", tmp_path)


def _url(name: str) -> str:
    return f"git://git/{name}.git"


def _stack_ids(stack: Stack, summary: dict[str, Any], home: Path) -> tuple[int, set[str]]:
    """(row count, chunk IDs) of the repository's index in the stack's object store."""
    settings = load_settings(
        environ={
            "CODEFLOW_HOME": str(home / "reader"),
            "CODEFLOW_STORE_URI": stack.store_uri,
            "CODEFLOW_S3_ENDPOINT": stack.s3_endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "codeflow"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "codeflow-secret"),
            "AWS_REGION": "us-east-1",
        }
    )
    store = build_store(settings)
    namespace = namespace_for(summary["repo_id"], summary["branch"])
    return store.count(namespace), store.ids(namespace)


def _one_machine_ids(stack: Stack, name: str, tmp_path: Path) -> tuple[int, set[str]]:
    """(row count, chunk IDs) of the same repository indexed here, in one process."""
    checkout = tmp_path / "checkouts" / name
    subprocess.run(["git", "clone", "-q", str(stack.git_root / f"{name}.git"), str(checkout)],
                   check=True)  # fmt: skip
    home = tmp_path / f"home-{name}"
    env = {**os.environ, "CODEFLOW_HOME": str(home), "CODEFLOW_SERVICE": "off"}
    for variable in ("REDIS_URL", "PREFECT_API_URL", "CODEFLOW_STORE_URI"):
        env.pop(variable, None)
    argv = [".venv/bin/codeflow", "index", str(checkout), "--json"]
    try:
        out = subprocess.run(argv, check=True, capture_output=True, env=env).stdout
    finally:
        EmbeddedRedis(home / "redis").shutdown()  # the index started it; it would outlive us
    summary = orjson.loads(out.splitlines()[-1])
    store = build_store(load_settings(environ={"CODEFLOW_HOME": str(home)}))
    namespace = namespace_for(summary["repo_id"], summary["branch"])
    return store.count(namespace), store.ids(namespace)
