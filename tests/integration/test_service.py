"""The local service for real: started on demand by a command, answering the thin client over
its Unix socket, recording runs in its own Prefect API, surviving kills, serving MCP.

Every command here is a real ``codeflow`` process; the service is a real process with a real
Prefect server, Redis and (for sandbox runs) Docker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.git_support import make_repo
from tests.integration.sandbox_fixtures import docker_client, sandbox_image  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
FILES: dict[str, str | bytes] = {
    "billing/invoice.py": (
        "def total_with_tax(amount: float, rate: float) -> float:\n"
        '    """The invoice total once tax is added."""\n'
        "    return amount * (1 + rate)\n"
    ),
    "billing/refund.py": (
        "from billing.invoice import total_with_tax\n\n\n"
        "def refund(amount: float) -> float:\n"
        "    return -total_with_tax(amount, 0.2)\n"
    ),
    "net/retry.py": (
        "import time\n\n\n"
        "def retry_with_backoff(call, attempts=3):\n"
        "    for n in range(attempts):\n"
        "        try:\n"
        "            return call()\n"
        "        except OSError:\n"
        "            time.sleep(2**n)\n"
    ),
}


class Codeflow:
    """``codeflow`` commands in one environment (``CODEFLOW_HOME``, Redis, tenant)."""

    def __init__(self, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.env, self.cwd = env, cwd

    def run(
        self, *args: str, input: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flows.cli.commands", *args],
            env={**self.env, **env}, cwd=self.cwd, input=input, capture_output=True,
            text=True, timeout=300, check=False,
        )  # fmt: skip

    def json(self, *args: str, **env: str) -> Any:
        done = self.run(*args, "--json", **env)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        return json.loads(done.stdout)

    def hello(self) -> dict[str, Any]:
        done = self.run("service", "status", "--json")
        status: dict[str, Any] = json.loads(done.stdout)
        return status

    def stop(self) -> None:
        self.run("service", "stop")


def service_env(home: Path, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CODEFLOW_HOME": str(home),
        "REDIS_URL": redis_url,
        "CODEFLOW_TENANT": "s" + uuid.uuid4().hex[:10],
        "CODEFLOW_SERVICE": "auto",
        "CODEFLOW_SERVICE_IDLE_S": "900",
        **extra,
    }


@contextlib.contextmanager
def service_in(base: Path, redis_url: str, **extra: str) -> Iterator[Codeflow]:
    """Commands for a home under ``base`` with an indexable repository beside it; the
    service they start is stopped and the tenant's keys removed afterwards."""
    cli = Codeflow(service_env(base / "home", redis_url, **extra))
    cli.env["TEST_REPO"] = str(make_repo(base / "repo", FILES))
    try:
        yield cli
    finally:
        cli.stop()
        _forget_tenant(redis_url, cli.env["CODEFLOW_TENANT"])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Codeflow]:
    """One service for the module's read-only tests."""
    with service_in(tmp_path_factory.mktemp("service"), redis_url) as cli:
        yield cli


@pytest.fixture
def own(tmp_path: Path, redis_url: str) -> Iterator[Codeflow]:
    """A service of this test's own (for tests that kill or stop it)."""
    with service_in(tmp_path, redis_url) as cli:
        yield cli


def _forget_tenant(redis_url: str, tenant: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"cf:{{{tenant}.*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()


def _indexed(cli: Codeflow) -> str:
    repo = cli.env["TEST_REPO"]
    summary = cli.json("index", repo)
    assert summary["files_total"] == len(FILES)
    return repo


def test_commands_through_the_service_answer_as_in_their_own_process(shared: Codeflow) -> None:
    repo = _indexed(shared)
    for args in (
        ("search", "invoice total with tax", "--repo", repo),
        ("related", f"{repo}/billing/refund.py:4"),
        ("status", repo),
    ):
        warm = shared.json(*args)
        cold = shared.json(*args, CODEFLOW_SERVICE="off")
        assert warm == cold, args
    hits = shared.json("search", "retry with backoff", "--repo", repo)
    assert hits[0]["path"] == "net/retry.py"
    assert shared.hello()["served"] >= 5  # index, three pairs' warm halves, one search


def test_the_client_imports_neither_prefect_lancedb_nor_numpy(shared: Codeflow) -> None:
    repo = _indexed(shared)
    probe = (
        "import sys\nfrom flows.cli.commands import main\n"
        f"status = main(['search', 'invoice', '--repo', {repo!r}, '--json'])\n"
        "heavy = [m for m in ('prefect', 'lancedb', 'numpy') if m in sys.modules]\n"
        "print(status, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=shared.env, cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.stderr.strip().splitlines()[-1] == "0 []", done.stderr
    assert json.loads(done.stdout)[0]["path"].startswith("billing/")


def test_runs_started_from_the_command_line_are_recorded_in_the_prefect_ui(
    shared: Codeflow,
) -> None:
    summary = shared.json("index", shared.env["TEST_REPO"], "--full")
    ui = shared.hello()["prefect_ui_url"]
    assert _get(f"{ui}/api/health") == "true"
    body = json.dumps({"flow_runs": {"id": {"any_": [summary["flow_run_id"]]}}}).encode()
    request = urllib.request.Request(
        f"{ui}/api/flow_runs/filter", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        runs = json.loads(reply.read())
    assert [run["state_name"] for run in runs] == ["Completed"]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def test_only_the_owner_can_reach_the_socket(shared: Codeflow) -> None:
    shared.json("service", "start")
    folder = Path(shared.env["CODEFLOW_HOME"]) / "service"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "service.sock").stat().st_mode) == 0o600


def test_a_service_with_other_settings_is_not_used(shared: Codeflow) -> None:
    repo = _indexed(shared)
    done = shared.run("search", "invoice", "--repo", repo, CODEFLOW_SEMANTIC_WEIGHT="3")
    assert done.returncode == 0, done.stderr
    assert "started with other settings" in done.stderr
    assert "billing/invoice.py" in done.stdout


def test_concurrent_first_commands_start_one_service(own: Codeflow) -> None:
    command = [sys.executable, "-m", "flows.cli.commands", "service", "start", "--json"]
    starts = [
        subprocess.Popen(command, env=own.env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    pids = {json.loads(p.communicate(timeout=300)[0])["pid"] for p in starts}
    assert len(pids) == 1


@pytest.mark.usefixtures("sandbox_image")
def test_a_service_killed_mid_request_is_reported_and_replaced(
    own: Codeflow, tmp_path: Path
) -> None:
    own.json("service", "start")
    first = own.hello()
    program = tmp_path / "slow.py"
    program.write_text("import time\ntime.sleep(60)\n")
    waiting = subprocess.Popen(
        [sys.executable, "-m", "flows.cli.commands", "sandbox", "run", str(program), "--json"],
        env=own.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _until(lambda: own.hello().get("active", 0) >= 1)
    os.kill(first["pid"], signal.SIGKILL)
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode != 0 and out == ""
    assert err.strip().splitlines() == [err.strip()]  # one line, no traceback
    assert "stopped during the request" in err
    status = own.json("status", _indexed(own))  # a fresh service answers
    assert status["files_total"] == len(FILES)
    assert own.hello()["pid"] != first["pid"]


def _until(condition: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_an_idle_service_exits_and_stop_and_status_say_so(own: Codeflow) -> None:
    own.env["CODEFLOW_SERVICE_IDLE_S"] = "1"
    pid = own.json("service", "start")["pid"]
    # It exits once its warm-up ends (embedder, store, sandbox pool): a minute on a busy CI.
    _until(lambda: own.run("service", "status").returncode == 3, timeout_s=180)
    _until(lambda: not Path(f"/proc/{pid}").exists(), timeout_s=30)
    assert own.run("service", "stop").stdout.strip() == "codeflow service: not running"
    assert not (Path(own.env["CODEFLOW_HOME"]) / "service" / "service.json").exists()


@pytest.mark.usefixtures("sandbox_image")
def test_sandbox_runs_take_warm_containers(shared: Codeflow) -> None:
    shared.json("service", "start")
    results = [
        shared.run("sandbox", "run", "-", "--json", "--no-cache", input=f"print({n} * 7)")
        for n in range(3)
    ]
    assert [json.loads(r.stdout)["stdout"] for r in results] == ["0\n", "7\n", "14\n"]
    assert shared.hello()["sandbox_pool"]["hits"] >= 1
    bad = shared.run("sandbox", "run", "-", "--json", input="def broken(:\n")
    assert bad.returncode == 3 and json.loads(bad.stdout)["status"] == "rejected"
