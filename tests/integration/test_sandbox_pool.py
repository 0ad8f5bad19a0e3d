"""The warm pool against the real engine and image: single use, bounded, refilled in the
background, hardened like a fresh container, swept after its owner is killed, tolerant of a
container the engine lost; and the services and the flow running on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest

from config import load_settings
from config.errors import ImageMissing
from tasks.sandbox import seccomp
from tasks.sandbox.docker_runtime import LABEL, OWNER_LABEL, DockerRuntime
from tasks.sandbox.models import ExecutionRequest, Limits
from tasks.sandbox.warm_pool import WarmPool
from tasks.services import services_for
from tests.integration import sandbox_fixtures as fixtures

docker_client = fixtures.docker_client
sandbox_image = fixtures.sandbox_image
runtime = fixtures.runtime
host_guard = fixtures.host_guard

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("host_guard")]
ROOT = Path(__file__).resolve().parents[2]
#: Labels that name one container's run, not its kind.
PER_RUN_LABELS = {"codeflow.run_id", "codeflow.created_at", "codeflow.pooled"}


def pooled_ids(client: docker.DockerClient, owner_pid: int | None = None) -> list[str]:
    """The pooled sandbox containers of this process (or of ``owner_pid``), whether waiting
    or running a program (another process, such as a running service, may have its own)."""
    owner = f"{socket.gethostname()}:{owner_pid or os.getpid()}"
    labels = [f"{LABEL}=1", "codeflow.pooled=1", f"{OWNER_LABEL}={owner}"]
    return [c["Id"] for c in client.api.containers(all=True, filters={"label": labels})]


def test_a_second_run_sees_nothing_of_the_first(runtime: DockerRuntime) -> None:
    plant = (
        "import subprocess\n"
        "open('/tmp/planted', 'w').write('x')\n"
        "open('/tmp/work/planted.txt', 'w').write('x')\n"
        "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        "print('planted')\n"
    )
    look = (
        "import os\n"
        "commands = [open(f'/proc/{p}/cmdline', 'rb').read() for p in os.listdir('/proc')\n"
        "            if p.isdigit()]\n"
        "print(os.path.exists('/tmp/planted'), sorted(os.listdir('/tmp/work')),\n"
        "      any(c.startswith(b'sleep') for c in commands))\n"
    )
    with WarmPool(runtime, size=2) as pool:
        assert pool.wait_ready(timeout=30)
        first = pool.run(ExecutionRequest(plant))
        second = pool.run(ExecutionRequest(look))
        assert pool.hits == 2
    assert (first.status, first.stdout) == ("ok", "planted\n"), first.stderr
    assert (second.status, second.stdout) == ("ok", "False ['main.py'] False\n"), second.stderr
    assert first.container_id != second.container_id


def test_the_pool_stays_bounded_under_concurrent_runs(
    docker_client: docker.DockerClient, runtime: DockerRuntime
) -> None:
    size, workers, total = 2, 6, 24
    idle: list[int] = []
    existing: list[int] = []
    stop = threading.Event()

    with WarmPool(runtime, size=size) as pool:

        def watch() -> None:
            while not stop.wait(0.02):
                idle.append(pool.idle)
                existing.append(len(pooled_ids(docker_client)))

        assert pool.wait_ready(timeout=30)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=workers) as executor:
                requests = [ExecutionRequest(f"print({i})") for i in range(total)]
                results = list(executor.map(pool.run, requests))
        finally:
            stop.set()
            watcher.join()
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(total)]
        assert len({r.container_id for r in results}) == total
        assert pool.hits + pool.misses == total and pool.hits >= size
        assert idle and max(idle) <= size
        assert max(existing) <= size + workers  # waiting ones, plus one per run in progress
        assert pool.wait_ready(timeout=30)
        time.sleep(1)  # a full pool starts nothing more
        assert len(pooled_ids(docker_client)) == size == pool.idle
    assert pooled_ids(docker_client) == []


def test_a_take_is_refilled_in_the_background(
    docker_client: docker.DockerClient, runtime: DockerRuntime
) -> None:
    with WarmPool(runtime, size=2) as pool:
        assert pool.wait_ready(timeout=30)
        before = set(pooled_ids(docker_client))
        result = pool.run(ExecutionRequest("print('x')"))
        assert result.container_id in before and pool.hits == 1
        assert pool.wait_ready(timeout=30)
        after = set(pooled_ids(docker_client))
    assert len(after) == 2 and result.container_id not in after
    assert len(after - before) == 1


def test_pool_containers_are_hardened_like_fresh_ones(
    docker_client: docker.DockerClient, runtime: DockerRuntime
) -> None:
    with WarmPool(runtime, size=1) as pool:
        assert pool.wait_ready(timeout=30)
        [waiting] = pooled_ids(docker_client)
        fresh = runtime.prepare(Limits(), "a-fresh-run")
        try:
            pooled = docker_client.api.inspect_container(waiting)
            single = docker_client.api.inspect_container(fresh.container_id)
        finally:
            runtime.execute(fresh, ExecutionRequest("pass"))
    assert pooled["HostConfig"] == single["HostConfig"]
    host = pooled["HostConfig"]
    assert (host["ReadonlyRootfs"], host["CapDrop"], host["CapAdd"]) == (True, ["ALL"], None)
    assert (host["PidsLimit"], host["Memory"], host["MemorySwap"]) == (64, 2**29, 2**29)
    assert (host["NetworkMode"], host["Runtime"], host["Privileged"]) == ("none", "runc", False)
    assert seccomp.applied(host["SecurityOpt"]) == seccomp.identity()
    assert "no-new-privileges" in host["SecurityOpt"]
    for key in ("User", "Image", "Cmd", "NetworkDisabled", "Hostname"):
        assert pooled["Config"].get(key) == single["Config"].get(key), key
    assert _kind_labels(pooled) == _kind_labels(single)
    assert pooled["Config"]["Labels"]["codeflow.pooled"] == "1"


def _kind_labels(attrs: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = attrs["Config"]["Labels"]
    return {k: v for k, v in labels.items() if k not in PER_RUN_LABELS}


POOL_THEN_WAIT = (
    "import sys, time\n"
    "from tasks.sandbox.docker_runtime import DockerRuntime\n"
    "from tasks.sandbox.warm_pool import WarmPool\n"
    "pool = WarmPool(DockerRuntime(image=sys.argv[1]), size=2)\n"
    "assert pool.wait_ready(timeout=60)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)


def test_a_killed_owners_pool_is_swept_by_another_process(
    docker_client: docker.DockerClient, runtime: DockerRuntime
) -> None:
    command = [sys.executable, "-c", POOL_THEN_WAIT, runtime.image]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as owner:
        try:
            assert owner.stdout is not None and owner.stdout.readline() == "ready\n"
            orphans = set(pooled_ids(docker_client, owner.pid))
        finally:
            owner.kill()  # SIGKILL: no atexit, no close
            owner.wait(timeout=30)
    assert owner.returncode == -9
    assert len(orphans) == 2
    assert set(pooled_ids(docker_client, owner.pid)) == orphans  # still there, owner dead
    assert runtime.sweep() >= 2
    assert pooled_ids(docker_client, owner.pid) == []


def test_a_container_the_engine_lost_does_not_fail_the_run(
    docker_client: docker.DockerClient, runtime: DockerRuntime
) -> None:
    with WarmPool(runtime, size=1) as pool:
        assert pool.wait_ready(timeout=30)
        [doomed] = pooled_ids(docker_client)
        docker_client.api.remove_container(doomed, force=True)  # docker rm -f, behind its back
        started = time.monotonic()
        result = pool.run(ExecutionRequest("print('still here')"))
        assert time.monotonic() - started < 10
        assert (result.status, result.stdout) == ("ok", "still here\n"), result.stderr
        assert result.container_id != doomed
        assert (pool.hits, pool.lost) == (1, 1)
        assert pool.wait_ready(timeout=30)
        again = pool.run(ExecutionRequest("print('pooled')"))
        assert (again.stdout, pool.hits, pool.lost) == ("pooled\n", 2, 1)


def test_another_memory_shape_runs_fresh_and_leaves_the_pool_alone(
    docker_client: docker.DockerClient, runtime: DockerRuntime
) -> None:
    code = "print(open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip())"
    with WarmPool(runtime, size=1) as pool:
        assert pool.wait_ready(timeout=30)
        [waiting] = pooled_ids(docker_client)
        result = pool.run(ExecutionRequest(code, limits=Limits(memory_mb=256)))
        assert (result.status, result.stdout) == ("ok", f"{256 * 2**20}\n"), result.stderr
        assert result.container_id != waiting
        assert (pool.hits, pool.misses) == (0, 0)
        assert pooled_ids(docker_client) == [waiting]
        timeout = pool.run(ExecutionRequest("print(1)", limits=Limits(timeout_s=5)))
        assert (timeout.container_id, pool.hits) == (waiting, 1)  # the timeout is no shape


@pytest.fixture
def pool_env(codeflow_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("CODEFLOW_SANDBOX_POOL_SIZE", "2")
    return codeflow_env


@pytest.mark.usefixtures("pool_env", "sandbox_image")
def test_services_warm_a_pool_and_close_it(docker_client: docker.DockerClient) -> None:
    svc = services_for(load_settings())
    try:
        assert svc.warm_sandbox()
        pool = svc.sandbox
        assert isinstance(pool, WarmPool) and svc.sandbox is pool
        assert pool.limits.container_shape() == Limits().container_shape()
        assert pool.wait_ready(timeout=30)
        assert len(pooled_ids(docker_client)) == 2
    finally:
        svc.close()
    assert pooled_ids(docker_client) == []
    svc.close()  # idempotent


@pytest.mark.usefixtures("pool_env")
def test_without_the_image_the_service_starts_and_the_first_run_says_why(
    monkeypatch: pytest.MonkeyPatch, docker_client: docker.DockerClient
) -> None:
    monkeypatch.setenv("CODEFLOW_SANDBOX_IMAGE", "codeflow-sandbox:never-built")
    svc = services_for(load_settings())
    assert svc.warm_sandbox() is False
    with pytest.raises(ImageMissing, match="codeflow sandbox build-image"):
        svc.sandbox  # noqa: B018
    svc.close()
    assert pooled_ids(docker_client) == []


@pytest.mark.usefixtures("pool_env", "sandbox_image", "prefect_harness")
def test_the_sandbox_flow_takes_its_container_from_the_pool(
    docker_client: docker.DockerClient,
) -> None:
    from flows.sandbox_run import run_sandboxed

    svc = services_for(load_settings())
    try:
        assert svc.warm_sandbox()
        pool = svc.sandbox
        assert isinstance(pool, WarmPool) and pool.wait_ready(timeout=30)
        waiting = set(pooled_ids(docker_client))
        result = run_sandboxed("print(1)", use_cache=False)
        assert (result["status"], result["stdout"], result["cached"]) == ("ok", "1\n", False)
        assert result["container_id"] in waiting
        assert (pool.hits, pool.misses) == (1, 0)
    finally:
        svc.close()
