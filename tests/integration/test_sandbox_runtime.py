"""DockerRuntime and WarmPool against the real engine and the real image."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import pytest

from config.errors import DockerUnavailable, ImageMissing, LimitsNotApplied, SandboxError
from tasks.sandbox.docker_runtime import LABEL, DockerRuntime
from tasks.sandbox.image import build_image
from tasks.sandbox.models import ExecutionRequest, ExecutionResult, Limits
from tasks.sandbox.warm_pool import WarmPool
from tests.integration import sandbox_fixtures as fixtures
from tests.integration.sandbox_fixtures import labelled_containers

docker_client = fixtures.docker_client
sandbox_image = fixtures.sandbox_image
runtime = fixtures.runtime
host_guard = fixtures.host_guard

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("host_guard")]
ROOT = Path(__file__).resolve().parents[2]


def test_hello_world(runtime: DockerRuntime) -> None:
    result = runtime.run(ExecutionRequest("print('hi')"))
    assert (result.status, result.exit_code, result.stdout, result.stderr) == ("ok", 0, "hi\n", "")
    assert result.image_id == runtime.image_id
    assert 0 < result.duration_s < 30


def test_stdin_and_input_files_arrive_in_the_work_directory(runtime: DockerRuntime) -> None:
    code = (
        "import sys, os\n"
        "print(sys.stdin.read().upper())\n"
        "print(open('data/table.csv').read(), os.getcwd(), sorted(os.listdir('.')))\n"
        "import helper; print(helper.VALUE)\n"
    )
    files = {"data/table.csv": b"a,b", "helper.py": b"VALUE = 42\n"}
    result = runtime.run(ExecutionRequest(code, stdin=b"abc", files=files))
    assert result.status == "ok", result.stderr
    assert result.stdout == "ABC\na,b /tmp/work ['data', 'helper.py', 'main.py']\n42\n"


def test_user_errors_are_data_not_exceptions(runtime: DockerRuntime) -> None:
    result = runtime.run(ExecutionRequest("import sys\nprint('out')\nsys.exit('boom')"))
    assert (result.status, result.exit_code) == ("error", 1)
    assert result.stdout == "out\n" and "boom" in result.stderr
    syntax = runtime.run(ExecutionRequest("def broken(:\n"))
    assert syntax.status == "error" and "SyntaxError" in syntax.stderr


def test_the_container_carries_every_limit_it_was_given(runtime: DockerRuntime) -> None:
    code = (
        "import os\n"
        "root = '/sys/fs/cgroup'\n"
        "print(open(root + '/memory/memory.limit_in_bytes').read().strip())\n"
        "print(open(root + '/memory/memory.memsw.limit_in_bytes').read().strip())\n"
        "print(open(root + '/cpu/cpu.cfs_quota_us').read().strip())\n"
        "print(open(root + '/pids/pids.max').read().strip())\n"
        "print(os.getuid(), os.getgid())\n"
        "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
        "print(status['CapEff'].strip())\n"
        "print(status['NoNewPrivs'].strip())\n"
    )
    limits = Limits(memory_mb=256, cpus=0.25, pids=32)
    result = runtime.run(ExecutionRequest(code, limits=limits))
    assert result.status == "ok", result.stderr
    memory, memsw, quota, pids, ids, caps, nnp = result.stdout.splitlines()
    assert memory == memsw == str(256 * 1024 * 1024)
    assert quota == "25000"
    assert pids == "32"
    assert ids == "10001 10001"
    assert caps == "0000000000000000"
    assert nnp == "1"


def test_a_mismatched_limit_fails_loudly(runtime: DockerRuntime) -> None:
    prepared = runtime.prepare(Limits(memory_mb=512))
    request = ExecutionRequest("print('never verified')", limits=Limits(memory_mb=256))
    with pytest.raises(LimitsNotApplied, match="Memory is 536870912, expected 268435456"):
        runtime.execute(prepared, request)


def test_missing_image_is_reported_not_pulled(docker_client: docker.DockerClient) -> None:
    with pytest.raises(ImageMissing, match="codeflow sandbox build-image"):
        DockerRuntime(docker_client, image="codeflow-sandbox:no-such-tag").check()
    before = {tag for image in docker_client.images.list() for tag in image.tags}
    with pytest.raises(ImageMissing):
        DockerRuntime(docker_client, image="codeflow-sandbox:no-such-tag").run(ExecutionRequest(""))
    assert {tag for image in docker_client.images.list() for tag in image.tags} == before


def test_unreachable_engine_says_to_start_docker(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{tmp_path}/absent.sock", version="1.41")
    with pytest.raises(DockerUnavailable, match="start Docker"):
        DockerRuntime(client).check()
    with pytest.raises(DockerUnavailable, match="start Docker"):
        DockerRuntime(client).run(ExecutionRequest("print(1)"))


def test_build_image_is_idempotent(docker_client: docker.DockerClient, sandbox_image: str) -> None:
    messages: list[str] = []
    started = time.monotonic()
    assert build_image(client=docker_client, progress=messages.append) == sandbox_image
    assert time.monotonic() - started < 5
    assert messages == [f"image {sandbox_image} is up to date"]
    latest = docker_client.images.get("codeflow-sandbox:latest")
    assert latest.id == docker_client.images.get(sandbox_image).id


def test_image_has_no_setuid_files_and_a_non_root_user(runtime: DockerRuntime) -> None:
    code = (
        "import os, stat\n"
        "bad = []\n"
        "for d in ('/usr', '/etc', '/var', '/opt'):\n"
        "    for root, dirs, files in os.walk(d):\n"
        "        for n in dirs + files:\n"
        "            st = os.lstat(os.path.join(root, n))\n"
        "            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o6000:\n"
        "                bad.append(os.path.join(root, n))\n"
        "print(bad, os.getuid())\n"
    )
    result = runtime.run(ExecutionRequest(code))
    assert result.stdout == "[] 10001\n", result.stderr


def test_sweep_removes_a_crashed_owners_container(
    docker_client: docker.DockerClient, runtime: DockerRuntime
) -> None:
    crash = (
        "import os, sys\n"
        "from tasks.sandbox.docker_runtime import DockerRuntime\n"
        "from tasks.sandbox.models import Limits\n"
        "prepared = DockerRuntime(image=sys.argv[1]).prepare(Limits())\n"
        "print(prepared.container_id, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", crash, runtime.image], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == -9
    orphan = done.stdout.strip()
    assert orphan in labelled_containers(docker_client)
    assert runtime.sweep() == 1
    assert labelled_containers(docker_client) == []


def test_sweep_spares_containers_of_live_owners(runtime: DockerRuntime) -> None:
    prepared = runtime.prepare(Limits())
    try:
        assert runtime.sweep() == 0
        assert prepared.container_id in labelled_containers(runtime._client)
    finally:
        runtime.execute(prepared, ExecutionRequest("pass"))


def test_warm_pool_uses_each_container_once(
    docker_client: docker.DockerClient, runtime: DockerRuntime
) -> None:
    seen: set[str] = set()
    with WarmPool(runtime, size=2) as pool:
        for i in range(4):
            assert pool.wait_ready(timeout=30)
            result = pool.run(ExecutionRequest(f"print({i})"))
            assert (result.status, result.stdout) == ("ok", f"{i}\n")
            assert result.container_id not in seen
            seen.add(result.container_id)
        assert pool.hits == 4
        odd = pool.run(ExecutionRequest("print('fresh')", limits=Limits(memory_mb=128)))
        assert odd.stdout == "fresh\n" and odd.container_id not in seen
    assert labelled_containers(docker_client) == []


def test_warm_container_timeout_starts_when_the_code_arrives(runtime: DockerRuntime) -> None:
    with WarmPool(runtime, size=1) as pool:
        assert pool.wait_ready(timeout=30)
        time.sleep(1.5)  # an idle warm container must not spend the run's time budget
        result = pool.run(
            ExecutionRequest(
                "import time; time.sleep(0.5); print('done')", limits=Limits(timeout_s=1.2)
            )
        )
    assert (result.status, result.stdout) == ("ok", "done\n")


def _run_or_fail(runtime: DockerRuntime, request: ExecutionRequest) -> ExecutionResult | str:
    try:
        return runtime.run(request)
    except SandboxError as exc:
        return str(exc)


def test_fifty_concurrent_runs_with_random_kills_leave_nothing(
    docker_client: docker.DockerClient, runtime: DockerRuntime
) -> None:
    requests = [
        ExecutionRequest(f"import time; time.sleep({random.uniform(0, 1):.2f}); print({i})")
        for i in range(50)
    ]
    stop = threading.Event()
    killed: list[str] = []

    def killer() -> None:
        rng = random.Random(4)
        while not stop.wait(0.05):
            running = docker_client.api.containers(filters={"label": f"{LABEL}=1"})
            for summary in running:
                if rng.random() < 0.15:
                    try:
                        docker_client.api.kill(summary["Id"])
                        killed.append(summary["Id"])
                    except docker.errors.APIError:
                        pass

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with ThreadPoolExecutor(max_workers=16) as executor:
            outcomes = list(executor.map(lambda r: _run_or_fail(runtime, r), requests))
    finally:
        stop.set()
        thread.join()
    finished = [o for o in outcomes if isinstance(o, ExecutionResult)]
    assert killed, "the killer never hit a running container"
    assert len(finished) >= 25
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, ExecutionResult) and outcome.status == "ok":
            assert outcome.stdout == f"{i}\n"
    assert runtime.sweep() == 0
    assert labelled_containers(docker_client) == []


@pytest.mark.parametrize("name", ["runc", "runsc"])
def test_results_record_runtime_seccomp_and_what_the_program_used(
    name: str, docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    sandbox = fixtures.runtime_for(name, docker_client, sandbox_image)
    code = (
        "import subprocess, time\n"
        "block = bytearray(120 * 1024 * 1024)\n"
        "open('/tmp/out.bin', 'wb').write(b'x' * (2 * 1024 * 1024))\n"
        "sleepers = [subprocess.Popen(['sleep', '0.5']) for _ in range(3)]\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end:\n"
        "    pass\n"
        "[p.wait() for p in sleepers]\n"
        "print(open('/proc/self/status').read().count('Seccomp:\\t2'))\n"
    )
    result = sandbox.run(ExecutionRequest(code, limits=Limits(timeout_s=20)))
    assert result.status == "ok", result.stderr
    assert result.runtime == name
    assert result.seccomp == {"name": "codeflow-python", "version": 1}
    assert result.stdout.strip() == "1"  # filtered by seccomp, from inside too
    used = result.resources
    assert used is not None
    assert used["peak_memory_bytes"] >= 120 * 1024 * 1024
    assert used["cpu_seconds"] >= 0.25
    assert used["bytes_written"] >= 2 * 1024 * 1024
    if name == "runc":  # gVisor's processes are its kernel's, not host tasks
        assert used["processes"] >= 4


def test_an_unregistered_runtime_is_one_clear_line(
    docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    with pytest.raises(SandboxError, match="runtime 'kata' is not registered"):
        DockerRuntime(docker_client, image=sandbox_image, runtime="kata").check()


class WithoutOurProfile(DockerRuntime):
    """An engine configuration that lost codeflow's seccomp profile (Docker's default)."""

    def _host_config(self, limits: Limits) -> dict[str, Any]:
        config = super()._host_config(limits)
        config["SecurityOpt"] = ["no-new-privileges"]
        return config


class TrustingTheEngine(DockerRuntime):
    """Asks for one pid limit, creates the container with another, and skips the check of
    the engine's record: only the live check is left to notice."""

    def _host_config(self, limits: Limits) -> dict[str, Any]:
        return super()._host_config(replace(limits, pids=limits.pids * 2))

    def _verify(self, attrs: dict[str, Any], limits: Limits) -> None:
        return None


def test_a_container_without_our_seccomp_profile_never_runs(
    docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    sandbox = WithoutOurProfile(docker_client, image=sandbox_image)
    with pytest.raises(LimitsNotApplied, match="seccomp profile"):
        sandbox.run(ExecutionRequest("print('never')"))
    assert fixtures.labelled_containers(docker_client) == []


def test_the_live_cgroup_is_checked_before_the_program_starts(
    docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    sandbox = TrustingTheEngine(docker_client, image=sandbox_image)
    with pytest.raises(LimitsNotApplied, match="live pids limit is 128, expected 64"):
        sandbox.run(ExecutionRequest("print('never')", limits=Limits(pids=64)))
    assert fixtures.labelled_containers(docker_client) == []
