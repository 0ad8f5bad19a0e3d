"""Orchestration end to end: a real `prefect server start` (SQLite), real process workers,
deployments from prefect.yaml (`prefect deploy --all`), runs created through the API exactly as
the UI's Run button does (POST /deployments/{id}/create_flow_run), a real schedule, the real
realtime server (`codeflow serve`) and a real WebSocket client.

One Prefect server, worker and realtime server are shared by the module (the server alone takes
10-20 s to start here). Every wait polls an API or a stream with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
import redis
import tornado.websocket

from config import load_settings
from tasks.events.bus import EventBus
from tasks.index.manifests import ManifestStore, namespace_for
from tasks.pipeline.prefect_states import StateRelay
from tasks.repo.registry import Registry
from tests.git_support import git, make_repo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOL = "codeflow-process"
POLL_S = StateRelay.interval_s  # how often codeflow serve asks Prefect what is scheduled
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.25) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (the process worker starts runs in new sessions)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    kids = [int(k) for k in handle.read().split()]
                found.extend(kids)
                stack.extend(kids)
    return found


@dataclass
class Stack:
    """The processes of one deployment of codeflow, and how to talk to them."""

    base: Path
    env: dict[str, str]
    api_url: str
    redis_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ws_port: int = 0

    @property
    def home(self) -> Path:
        return Path(self.env["CODEFLOW_HOME"])

    def start(self, name: str, args: list[str], **extra: Any) -> subprocess.Popen[bytes]:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=extra.pop("stdout", log),
            stderr=log,
            start_new_session=True,
            **extra,
        )
        log.close()
        self.processes.append(process)
        return process

    def run(self, *args: str) -> str:
        done = subprocess.run(
            args, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done.stdout

    def start_worker(self, queue: str) -> subprocess.Popen[bytes]:
        return self.start(
            f"worker-{queue}",
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--work-queue", queue],
        )

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process, its group and any flow-run process it started."""
        for pid in [*descendants(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def bus(self) -> EventBus:
        return EventBus(redis.Redis.from_url(self.redis_url))

    def trigger(self, deployment: str, queue: str | None = None, **parameters: Any) -> str:
        """What the UI's Run button does: POST /deployments/{id}/create_flow_run."""
        with self.client() as client:
            found = client.read_deployment_by_name(deployment)
            run = client.create_flow_run_from_deployment(
                found.id, parameters=parameters, work_queue_name=queue
            )
        return str(run.id)

    def final_state(self, run_id: str, timeout: float = 240) -> Any:
        with self.client() as client:

            def probe() -> Any:
                state = client.read_flow_run(uuid.UUID(run_id)).state
                return state if state is not None and state.is_final() else None

            return wait_for(f"flow run {run_id} to finish", probe, timeout, every=0.5)

    def events(self, since: str, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [e for _, e in self.bus().read(since, count=100_000) if match(e)]

    def wait_event(
        self, since: str, match: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        found = wait_for("an event", lambda: self.events(since, match), timeout)
        return found[0]


def _environment(base: Path, api_url: str, redis_url: str) -> dict[str, str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "CODEFLOW_")) and k != "REDIS_URL"
    }
    return {
        **inherited,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(base / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        "PREFECT_LOGGING_SETTINGS_PATH": str(ROOT / "config" / "logging.yml"),
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks,flows",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "CODEFLOW_HOME": str(base / "home"),
        "CODEFLOW_TENANT": "o" + uuid.uuid4().hex[:10],
        "CODEFLOW_TOKEN_SECRET": "orchestration-test-secret-0123456789abcdef",
        "REDIS_URL": redis_url,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("orchestration")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    made = Stack(base, _environment(base, api_url, redis_url), api_url, redis_url)
    try:
        server = made.start(
            "prefect-server",
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        )
        wait_for("the Prefect server", lambda: _healthy(api_url, server), timeout=180)
        made.run(str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process")
        made.run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
        made.start_worker("default")
        made.ws_port = _start_realtime_server(made)
        yield made
    finally:
        for process in reversed(made.processes):
            made.stop(process)
        _drop_tenant(redis_url, made.env["CODEFLOW_TENANT"])


def _healthy(api_url: str, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        raise AssertionError(f"prefect server exited with {server.returncode}")
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _start_realtime_server(stack: Stack) -> int:
    """`codeflow serve --port 0`; the port is read from the dashboard URL it prints."""
    process = stack.start(
        "realtime",
        [sys.executable, "-m", "flows.cli.commands", "serve", "--port", "0", "--host", "127.0.0.1"],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=60), "the realtime server printed no URL"
    line = process.stdout.readline().decode()
    assert "codeflow realtime server: http://" in line, line
    return int(line.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _drop_tenant(redis_url: str, tenant: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"cf:{{{tenant}.*", count=1000))
    if keys:
        client.unlink(*keys)


def _sources(count: int, seed: str) -> dict[str, str | bytes]:
    return {
        f"pkg/mod_{i}.py": f"def handler_{seed}_{i}(request):\n"
        f"    '''Handle request number {i} for {seed}.'''\n"
        f"    return {{'id': {i}, 'seed': '{seed}', 'value': request * {i}}}\n\n\n"
        f"class Model{i}:\n    name = '{seed}-{i}'\n"
        for i in range(count)
    }


# --- the UI's Run button, the realtime server and structured logs ------------------------


async def _replay_room(port: int, token: str, room: str, since: str) -> list[dict[str, Any]]:
    """Every event of ``room`` after ``since`` (replay), until the run's summary."""
    url = f"ws://127.0.0.1:{port}/ws?token={token}"
    conn = await asyncio.wait_for(tornado.websocket.websocket_connect(url), 10)
    try:
        request = {"type": "subscribe", "room": room, "since": since}
        await conn.write_message(orjson.dumps(request).decode())
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while not any(e.get("kind") == "index.summary" for e in events):
                raw = await conn.read_message()
                assert raw is not None
                message = orjson.loads(raw)
                if message.get("type") == "event":
                    events.append(message["event"])
        return events
    finally:
        conn.close()


def _token(stack: Stack, *rooms: str) -> str:
    from server.auth import issue_token, token_secret

    return issue_token(token_secret(load_settings(stack.env)), list(rooms), 600)


def test_run_button_completes_and_streams_state_and_progress(stack: Stack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", _sources(40, "ui"))
    since = stack.bus().last_id()
    token = _token(stack, "runs", "run:*")
    run_id, live = asyncio.run(_run_while_watching(stack, token, source=str(repo)))

    assert stack.final_state(run_id).type.value == "COMPLETED"
    states = [m["event"]["state"] for m in live if m.get("type") == "event"
              and m["event"].get("flow_run_id") == run_id]  # fmt: skip
    assert states[-1] == "Completed" and "Running" in states, states
    assert "Pending" in states, states  # relayed by codeflow serve: no flow hook can see it
    progress = stack.wait_event(
        since, lambda e: e.get("kind") == "progress" and e.get("trace_id") == run_id
    )
    child = progress["flow_run_id"]  # the vectorize_repository subflow
    replayed = asyncio.run(_replay_room(stack.ws_port, token, f"run:{child}", since))
    done = {(e["unit"], e["done"] == e["total"]) for e in replayed if e["kind"] == "progress"}
    assert {("files", True), ("chunks", True)} <= done, done
    summary = next(e for e in replayed if e["kind"] == "index.summary")
    assert summary["files_total"] == 40 and summary["chunks_total"] >= 40
    _assert_json_logs(stack.base / "worker-default.log", run_id)


async def _run_while_watching(
    stack: Stack, token: str, **parameters: Any
) -> tuple[str, list[dict[str, Any]]]:
    """Subscribe to room ``runs``, click Run, follow the room until that run completes."""
    url = f"ws://127.0.0.1:{stack.ws_port}/ws?token={token}"
    conn = await asyncio.wait_for(tornado.websocket.websocket_connect(url), 10)
    try:
        await conn.write_message(orjson.dumps({"type": "subscribe", "room": "runs"}).decode())
        reply = await asyncio.wait_for(conn.read_message(), 10)
        assert reply is not None and orjson.loads(reply)["type"] == "subscribed", reply
        run_id = await asyncio.to_thread(stack.trigger, "vectorize_source/vectorize", **parameters)
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(240):
            while True:
                raw = await conn.read_message()
                assert raw is not None, "the server closed the connection"
                message = orjson.loads(raw)
                received.append(message)
                event = message.get("event", {})
                if event.get("flow_run_id") == run_id and event.get("state") == "Completed":
                    return run_id, received
    finally:
        conn.close()


def _assert_json_logs(log: Path, run_id: str) -> None:
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
    records = [orjson.loads(ln) for ln in lines]  # every structured line parses
    about_run = [r for r in records if r.get("flow_run_id") == run_id]
    assert about_run, f"no JSON log line about {run_id} in {log}"
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in about_run)


# --- parameter validation -----------------------------------------------------------------


def test_wrong_parameters_fail_with_the_reason_in_the_state(stack: Stack, tmp_path: Path) -> None:
    from prefect.exceptions import PrefectHTTPStatusError

    missing = tmp_path / "no-such-repo"
    run_id = stack.trigger("vectorize_source/vectorize", source=str(missing))
    state = stack.final_state(run_id)
    assert state.type.value == "FAILED"
    assert "ParameterError: source:" in state.message and str(missing) in state.message

    with pytest.raises(PrefectHTTPStatusError) as refused:  # types: refused at creation
        stack.trigger("vectorize_source/vectorize", source=5)
    assert "source" in refused.value.response.text

    run_id = stack.trigger("sync_repositories/sync", names=["not-registered"])
    state = stack.final_state(run_id)
    assert state.type.value == "FAILED" and "names: not-registered not registered" in state.message


# --- schedules ------------------------------------------------------------------------------


def test_a_short_interval_schedule_fires_at_least_twice(stack: Stack, tmp_path: Path) -> None:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.schedules import IntervalSchedule

    since = stack.bus().last_id()
    upstream = make_repo(tmp_path / "upstream", _sources(5, "sched"))
    git(upstream, "branch", "-M", "main")
    from tasks.repo.source_params import parse_source

    entry = Registry(stack.home).add(
        parse_source(upstream.as_uri()), name="sched-" + uuid.uuid4().hex[:6]
    )
    with stack.client() as client:
        deployment = client.read_deployment_by_name("sync_repositories/sync")
        (schedule,) = client.create_deployment_schedules(
            deployment.id, [(IntervalSchedule(interval=timedelta(seconds=5)), True)]
        )
        try:
            only_ours = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            completed = FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
            )

            def two_scheduled_runs() -> list[Any]:
                runs = client.read_flow_runs(deployment_filter=only_ours, flow_run_filter=completed)
                scheduled = [r for r in runs if r.auto_scheduled]
                return scheduled if len(scheduled) >= 2 else []

            runs = wait_for("two scheduled sync runs", two_scheduled_runs, timeout=300, every=1)
        finally:
            client.delete_deployment_schedule(deployment.id, schedule.id)
            Registry(stack.home).remove(entry.name)
    starts = sorted(r.expected_start_time for r in runs)
    assert (starts[1] - starts[0]).total_seconds() >= 5
    ahead = [r for r in runs if (r.expected_start_time - r.created).total_seconds() >= 2 * POLL_S]
    assert ahead, "no run was scheduled ahead of its start"
    for run in runs:  # each appeared on the bus waiting, before it ran
        states = [e["state"] for e in stack.events(since, _states_of(str(run.id)))]
        first_wait = min(states.index(s) for s in ("Scheduled", "Pending") if s in states)
        assert first_wait < states.index("Running"), states
        if run in ahead:  # the relay polls Prefect's API every POLL_S: it saw it Scheduled
            assert states.index("Scheduled") < states.index("Running"), states
    clone = stack.home / "repos" / entry.name
    manifest = ManifestStore(stack.home / "manifests" / "lancedb")
    from tasks.repo.git_repository import GitRepository

    with GitRepository.open(clone) as opened:
        indexed = manifest.load(opened.repo_id, "main")
    assert indexed is not None and len(indexed.chunks) == 5


def _states_of(run_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("kind") == "flow_run.state" and e.get("flow_run_id") == run_id


# --- SIGTERM mid-run, then a re-run ---------------------------------------------------------


def test_sigterm_mid_run_crashes_the_run_and_a_rerun_leaves_no_duplicates(
    stack: Stack, tmp_path: Path
) -> None:
    queue = "sigterm-" + uuid.uuid4().hex[:6]
    with stack.client() as client:
        client.create_work_queue(name=queue, work_pool_name=POOL)
    repo = make_repo(tmp_path / "big", _sources(600, "term"))
    worker = stack.start_worker(queue)
    since = stack.bus().last_id()
    run_id = stack.trigger("vectorize_source/vectorize", queue=queue, source=str(repo))
    stack.wait_event(
        since,
        lambda e: e.get("kind") == "progress" and e.get("trace_id") == run_id,
        timeout=240,
    )
    # The flow run executes in its own process (own session) under the worker. Stopping the
    # worker's service (systemd, docker with an init, Kubernetes) signals that process too:
    # Prefect's engine turns SIGTERM into a Crashed state. The worker follows once the crash
    # is recorded (signalled together, Prefect 3.9's worker may reap the run before it
    # reports, leaving it Running; see the report).
    flow_runs = descendants(worker.pid)
    assert flow_runs, "the worker started a flow-run process"
    for pid in flow_runs:
        os.kill(pid, signal.SIGTERM)
    state = stack.final_state(run_id, timeout=120)
    assert state.type.value == "CRASHED", (state.type, state.message)
    assert "termination signal" in (state.message or "")
    stack.wait_event(
        since, lambda e: e.get("flow_run_id") == run_id and e.get("state") == "Crashed"
    )
    os.kill(worker.pid, signal.SIGTERM)
    stack.stop(worker)

    stack.start_worker(queue)
    rerun = stack.trigger("vectorize_source/vectorize", queue=queue, source=str(repo))
    assert stack.final_state(rerun).type.value == "COMPLETED"
    _assert_store_matches_manifest(stack, repo)


def _assert_store_matches_manifest(stack: Stack, repo: Path) -> None:
    from tasks.repo.git_repository import GitRepository
    from tasks.services import services_for

    with GitRepository.open(repo) as opened:
        repo_id, label = opened.repo_id, opened.branch_label()
    rt = services_for(load_settings(stack.env))
    manifest = rt.manifests.load(repo_id, label)
    assert manifest is not None and len(manifest.chunks) == 600
    expected = sorted(i for ids in manifest.chunks.values() for i in ids)
    namespace = namespace_for(repo_id, label)
    assert sorted(rt.store.ids(namespace)) == expected
    assert rt.store.count(namespace) == len(expected), "duplicate rows in the store"
