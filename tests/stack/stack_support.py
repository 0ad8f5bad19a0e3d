"""Driving the compose stack from the host: its Prefect API, its HTTP API, its WebSocket and
its containers (``scripts/stack-test`` starts the stack and names it in the environment)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets.sync.client

from server.auth import issue_token

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Stack:
    """The running stack ``scripts/stack-test`` started (its settings come from there)."""

    project: str
    prefect_api: str
    serve_url: str
    s3_endpoint: str
    store_uri: str
    secret: str
    git_root: Path

    @classmethod
    def from_environment(cls) -> Stack:
        env = os.environ
        return cls(
            project=env["COMPOSE_PROJECT_NAME"],
            prefect_api=f"http://127.0.0.1:{env['CODEFLOW_PREFECT_PORT']}/api",
            serve_url=f"http://127.0.0.1:{env['CODEFLOW_SERVE_PORT']}",
            s3_endpoint=f"http://127.0.0.1:{env['CODEFLOW_S3_PORT']}",
            store_uri=f"s3://{env.get('CODEFLOW_BUCKET', 'codeflow')}/index",
            secret=env["CODEFLOW_TOKEN_SECRET"],
            git_root=Path(env["CODEFLOW_GIT_ROOT"]),
        )

    def compose(self, *args: str) -> str:
        argv = ["docker-compose", "-p", self.project, "--profile", "try", *args]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def token(self, *rooms: str) -> str:
        return issue_token(self.secret.encode(), list(rooms), 3600)

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        """Start a run of deployment ``name`` as the UI's Run button does; its ID."""
        deployment = self._get(f"/deployments/name/{name}")
        body = {"parameters": parameters}
        created = self._post(f"/deployments/{deployment['id']}/create_flow_run", body)
        return str(created["id"])

    def pause(self, name: str) -> None:
        """Pause deployment ``name``'s schedule and wait until none of its runs is active,
        so that it takes no worker from the runs a test starts."""
        deployment = self._get(f"/deployments/name/{name}")
        self._post(f"/deployments/{deployment['id']}/pause_deployment", {})
        active = {"type": {"any_": ["PENDING", "RUNNING"]}}
        body = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}, "state": active}}
        for _ in range(600):
            if not self._post("/flow_runs/filter", body):
                return
            time.sleep(1)
        raise AssertionError(f"runs of {name} are still active after 10 minutes")

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self._get(f"/flow_runs/{run_id}")

    def wait(self, run_id: str, timeout_s: float = 600) -> dict[str, Any]:
        """The run once it reached a final state (fails the test after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state"]["type"] in FINAL:
                return run
            time.sleep(1)
        raise AssertionError(f"flow run {run_id} did not finish in {timeout_s} s")

    def subflow_of(self, run_id: str, timeout_s: float = 300) -> str:
        """The last ``vectorize_repository`` run a ``vectorize_source`` run started (its
        events carry that run's ID), once one exists."""
        body = {
            "flow_runs": {"parent_flow_run_id": {"any_": [run_id]}},
            "sort": "EXPECTED_START_TIME_DESC",
        }
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            children = self._post("/flow_runs/filter", body)
            if children:
                return str(children[0]["id"])
            time.sleep(0.5)
        raise AssertionError(f"flow run {run_id} started no subflow in {timeout_s} s")

    def wait_running(self, run_id: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while self.flow_run(run_id)["state"]["type"] != "RUNNING":
            assert time.monotonic() < deadline, f"flow run {run_id} never started"
            time.sleep(0.5)

    def workers_of(self, run_id: str) -> set[str]:
        """The worker services whose logs say they took ``run_id``."""
        services = ("worker-1", "worker-2")
        return {s for s in services if run_id in self.compose("logs", "--no-color", s)}

    def search(self, repo: str, query: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.serve_url}/api/search",
            params={"repo": repo, "q": query, "limit": "10"},
            headers={"Authorization": f"Bearer {self.token('repo:*')}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def _get(self, path: str) -> dict[str, Any]:
        response = httpx.get(self.prefect_api + path, timeout=30)
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(self.prefect_api + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None


@dataclass
class EventListener:
    """A WebSocket client of the stack's ``serve``, keeping every event it is sent."""

    url: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._socket = websockets.sync.client.connect(self.url)
        self._lock = threading.Lock()
        threading.Thread(target=self._receive, daemon=True).start()

    def subscribe(self, room: str) -> None:
        self._socket.send(orjson.dumps({"type": "subscribe", "room": room, "since": "0"}))

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("flow_run_id") == run_id]

    def wait_for(self, run_id: str, kind: str, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [e for e in self.of_run(run_id) if e.get("kind") == kind]
            if found:
                return found[-1]
            time.sleep(0.2)
        raise AssertionError(f"no {kind} event of run {run_id} reached the WebSocket client")

    def close(self) -> None:
        self._socket.close()

    def _receive(self) -> None:
        for message in self._socket:
            frame = orjson.loads(message)
            if frame.get("type") == "event":
                with self._lock:
                    self.events.append(frame["event"])
