"""Fixtures shared by the sandbox integration tests (imported explicitly by those modules).

The image is built once per session with ``build_image()`` (idempotent: skipped when the
content-tagged image exists). Without a Docker engine, or without debootstrap to build the
image, every test using these fixtures is skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException

from config.errors import SandboxError
from tasks.sandbox.docker_runtime import LABEL, DockerRuntime
from tasks.sandbox.image import DEFAULT_DOCKER_URL, SANDBOX_UID, build_image


def _client() -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=DEFAULT_DOCKER_URL, max_pool_size=64)
        client.ping()
    except DockerException as exc:
        pytest.skip(f"Docker engine unreachable ({exc}); start Docker to run the sandbox tests")
    return client


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return _client()


@pytest.fixture(scope="session")
def sandbox_image(docker_client: docker.DockerClient) -> str:
    try:
        return build_image(client=docker_client)
    except SandboxError as exc:
        pytest.skip(f"sandbox image unavailable: {exc}")


@pytest.fixture(scope="session")
def runtime(docker_client: docker.DockerClient, sandbox_image: str) -> DockerRuntime:
    sandbox = DockerRuntime(docker_client, image=sandbox_image)
    sandbox.check()
    return sandbox


def labelled_containers(client: docker.DockerClient) -> list[str]:
    found = client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
    return [c["Id"] for c in found]


def sandbox_user_processes() -> list[int]:
    """Host PIDs running as the sandbox uid: any of them is a process that escaped removal."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == SANDBOX_UID:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                continue
    return pids


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
    """After the test: no sandbox container left, no sandbox process alive on the host."""
    yield
    assert labelled_containers(docker_client) == []
    assert sandbox_user_processes() == []


def host_unharmed(client: docker.DockerClient, container_id: str, *paths: Path) -> None:
    """The run's container is gone, none of its processes survive, no canary path exists."""
    assert container_id
    assert container_id not in labelled_containers(client)
    assert processes_in_container(container_id) == []
    for path in paths:
        assert not os.path.lexists(path), f"sandbox wrote {path} on the host"
