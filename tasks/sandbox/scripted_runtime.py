"""ScriptedRuntime: the sandbox runtime's in-memory twin, for unit tests of the sandbox flow.

It runs nothing. Each request is answered by a function of the request (by default: exit 0
with the code's length on stdout), and every request is recorded, so tests can check what
reached the runtime, how often, and how the flow treats each kind of outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.sandbox.models import ExecutionRequest, ExecutionResult


def _echo(request: ExecutionRequest) -> ExecutionResult:
    return ExecutionResult("ok", 0, f"{len(request.code)}\n", "", 0.01)


class ScriptedRuntime:
    """Answers ``run`` with ``answer(request)``; ``image_id`` stands for the image."""

    def __init__(
        self,
        answer: Callable[[ExecutionRequest], ExecutionResult] = _echo,
        *,
        image_id: str = "sha256:scripted",
    ) -> None:
        self.answer = answer
        self.image_id = image_id
        self.requests: list[ExecutionRequest] = []
        self.closed = 0

    def check(self) -> str:
        return self.image_id

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        self.requests.append(request)
        return self.answer(request)

    def close(self) -> None:
        self.closed += 1
