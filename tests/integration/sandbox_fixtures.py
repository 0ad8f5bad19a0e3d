"""Fixtures shared by the sandbox integration tests (imported explicitly by those modules).

The image is built once per session with ``build_image()`` (idempotent: skipped when the
content-tagged image exists). Without a Docker engine, or without debootstrap to build the
image, every test using these fixtures is skipped with the reason, unless
``CODEFLOW_REQUIRE_DOCKER=1`` (CI sets it), which makes that a failure. Tests run under
gVisor are skipped where ``runsc`` is not registered with the engine, unless
``CODEFLOW_REQUIRE_GVISOR=1`` (CI sets it too).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException

from config.errors import SandboxError
from tasks.sandbox.docker_runtime import LABEL, OWNER_LABEL, DockerRuntime
from tasks.sandbox.image import DEFAULT_DOCKER_URL, SANDBOX_UID, build_image


def _missing(what: str, requirement: str) -> None:
    """Skip for ``what`` missing, or fail where the environment variable requires it."""
    if os.environ.get(requirement) == "1":
        pytest.fail(f"{what} ({requirement}=1)")
    pytest.skip(what)


def _client() -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=DEFAULT_DOCKER_URL, max_pool_size=64)
        client.ping()
    except DockerException as exc:
        _missing(f"Docker engine unreachable ({exc})", "CODEFLOW_REQUIRE_DOCKER")
    return client


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return _client()


@pytest.fixture(scope="session")
def sandbox_image(docker_client: docker.DockerClient) -> str:
    try:
        return build_image(client=docker_client)
    except SandboxError as exc:
        _missing(f"sandbox image unavailable: {exc}", "CODEFLOW_REQUIRE_DOCKER")
        raise


def runtime_for(name: str, client: docker.DockerClient, image: str) -> DockerRuntime:
    """A checked runtime; gVisor's is skipped (or fails, if required) when not registered."""
    sandbox = DockerRuntime(client, image=image, runtime=name)
    try:
        sandbox.check()
    except SandboxError as exc:
        if name != "runsc":
            raise
        _missing(f"gVisor unavailable: {exc}", "CODEFLOW_REQUIRE_GVISOR")
    return sandbox


@pytest.fixture(scope="session")
def runtime(docker_client: docker.DockerClient, sandbox_image: str) -> DockerRuntime:
    return runtime_for("runc", docker_client, sandbox_image)


def _owned_by_another_live_process(labels: dict[str, str]) -> bool:
    """A container of another codeflow process alive on this host (a running service's warm
    pool): not the tests' to judge. Leftovers of the tests' own subprocesses, which are dead
    by the time anything is checked, still count."""
    host, _, pid = labels.get(OWNER_LABEL, "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    return Path(f"/proc/{pid}").exists()


def _foreign_containers(client: docker.DockerClient) -> list[str]:
    found = client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
    return [c["Id"] for c in found if _owned_by_another_live_process(c.get("Labels") or {})]


def labelled_containers(client: docker.DockerClient) -> list[str]:
    """Sandbox containers of this test session (and of its dead subprocesses)."""
    found = client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
    return [c["Id"] for c in found if not _owned_by_another_live_process(c.get("Labels") or {})]


def sandbox_user_processes(client: docker.DockerClient | None = None) -> list[int]:
    """Host PIDs running as the sandbox uid: any of them is a process that escaped removal.
    With ``client``, those inside containers of another live codeflow process are left out."""
    foreign = _foreign_containers(client) if client is not None else []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == SANDBOX_UID and not _inside(entry, foreign):
                    pids.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return pids


def _inside(process: Path, containers: list[str]) -> bool:
    if not containers:
        return False
    cgroups = (process / "cgroup").read_text()
    return any(container_id in cgroups for container_id in containers)


def processes_in_container(container_id: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if container_id in (entry / "cgroup").read_text():
                    pids.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return pids


@pytest.fixture
def host_guard(docker_client: docker.DockerClient) -> Iterator[None]:
    """After the test: no sandbox container left, no sandbox process alive on the host
    (besides those of another live codeflow process, such as a service's warm pool)."""
    yield
    assert labelled_containers(docker_client) == []
    assert sandbox_user_processes(docker_client) == []


def host_unharmed(client: docker.DockerClient, container_id: str, *paths: Path) -> None:
    """The run's container is gone, none of its processes survive, no canary path exists."""
    assert container_id
    assert container_id not in labelled_containers(client)
    assert processes_in_container(container_id) == []
    for path in paths:
        assert not os.path.lexists(path), f"sandbox wrote {path} on the host"
