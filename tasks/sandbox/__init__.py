"""The sandbox: run untrusted Python in a hardened, disposable container.

- :class:`SandboxRuntime`: what the sandbox flow runs programs through;
- :mod:`~tasks.sandbox.models` (pure): limits, requests, results, outcome classification;
- :mod:`~tasks.sandbox.policy` (pure): the AST pre-check, a courtesy, not the boundary;
- :mod:`~tasks.sandbox.wire` (pure): what crosses the container boundary;
- :mod:`~tasks.sandbox.docker_runtime`: :class:`DockerRuntime`, the security boundary;
- :mod:`~tasks.sandbox.warm_pool`: pre-started single-use containers;
- :mod:`~tasks.sandbox.image`: the offline base image;
- :mod:`~tasks.sandbox.scripted_runtime`: :class:`ScriptedRuntime`, the in-memory twin.
"""

from __future__ import annotations

from typing import Protocol

from tasks.sandbox.models import ExecutionRequest, ExecutionResult


class SandboxRuntime(Protocol):
    """Runs one program per call in a fresh, isolated environment (a new container, or a
    pre-started one that has never run anything: :class:`~tasks.sandbox.warm_pool.WarmPool`)."""

    def check(self) -> str:
        """The identity of what programs run on (an image ID), raising
        :class:`~config.errors.SandboxError` when programs cannot run at all."""
        ...

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        """Run ``request``; the program failing is data in the result, never an exception."""
        ...

    def close(self) -> None:
        """Release what the runtime keeps between runs (a warm pool's waiting containers);
        idempotent."""
        ...
