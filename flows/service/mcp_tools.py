"""The MCP server for agents (the official ``mcp`` SDK): five tools over the service's
operations, served two ways.

- ``codeflow mcp``: stdio, for an agent that starts it as a subprocess. Each tool call goes
  to the local service over its Unix socket (started on demand), so answers come from warm
  state. Paths are relative to the directory ``codeflow mcp`` was started in.
- ``/mcp`` on the service's HTTP port: streamable HTTP (stateless, JSON replies). Every
  request carries a token (``Authorization: Bearer``); a repository tool needs a grant of
  that repository (``repo:<id>``, a prefix such as ``repo:*``, or ``*``), ``run_python``
  the ``sandbox`` grant. Paths are absolute paths on the service's machine, or registered
  names.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from typing_extensions import TypedDict

from config.errors import CodeflowError

if TYPE_CHECKING:
    from flows.service.client import ServiceClient
    from flows.service.runner import Runner

INSTRUCTIONS = (
    "codeflow keeps git repositories searchable and runs untrusted Python safely. Index a "
    "repository once with index_repository (later calls are incremental and fast), then use "
    "search_code for questions in words or symbol names and related_code to widen the view "
    "around a place you found. run_python executes a program in a disposable, network-less "
    "container and returns its status, stdout and stderr."
)


class Hit(TypedDict):
    """One search result: a chunk of a file."""

    path: str
    start_line: int
    end_line: int
    score: float
    symbol: str | None
    language: str | None
    text: str


class Backend(Protocol):
    """Where the tools' operations run."""

    async def call(self, op: str, body: dict[str, Any]) -> Any: ...


Repo = Annotated[
    str,
    Field(description="The repository: a path to its work tree, or its registered name"),
]
Limit = Annotated[int, Field(ge=1, le=100, description="How many results (default 10)")]


def build_server(backend: Backend) -> MCPServer:
    """The MCP server with codeflow's tools, running them on ``backend``."""
    app = MCPServer("codeflow", instructions=INSTRUCTIONS)

    @app.tool()
    async def search_code(
        query: Annotated[
            str, Field(description="What to find: a question in words, or identifiers")
        ],
        repo: Repo,
        limit: Limit = 10,
    ) -> list[Hit]:
        """Search an indexed repository; the best-matching chunks of code, best first, with
        path, line range (1-based, inclusive), symbol and text."""
        hits: list[Hit] = await backend.call(
            "search", {"query": query, "repo": repo, "limit": limit}
        )
        return hits

    @app.tool()
    async def related_code(
        file: Annotated[str, Field(description="A file of the repository (repo-relative)")],
        line: Annotated[int, Field(ge=1, description="A line of that file (1-based)")],
        repo: Repo,
        limit: Limit = 10,
    ) -> list[Hit]:
        """The code most related to a place in a file: its callers, callees, tests and
        similar code elsewhere in the repository."""
        body = {"place": f"{file}:{line}", "repo": repo, "limit": limit}
        hits: list[Hit] = await backend.call("related", body)
        return hits

    @app.tool()
    async def index_repository(
        repo: Repo,
        full: Annotated[bool, Field(description="Re-read every file (default: changes)")] = False,
    ) -> dict[str, Any]:
        """Index (or bring up to date) a git repository so search_code can answer for it.
        Incremental: only files changed since the last index are read again. Returns the
        commit, file and chunk counts, and the duration."""
        summary: dict[str, Any] = await backend.call("index", {"path": repo, "full": full})
        return summary

    @app.tool()
    async def index_status(repo: Repo) -> dict[str, Any]:
        """What is indexed for a repository: branch, commit, file and chunk counts, when."""
        report: dict[str, Any] = await backend.call("status", {"path": repo})
        report.pop("files", None)  # one entry per file: too much for an agent's context
        return report

    @app.tool()
    async def run_python(
        code: Annotated[str, Field(description="A complete Python 3 program")],
        timeout_s: Annotated[
            float | None, Field(gt=0, le=300, description="Wall-clock limit in seconds")
        ] = None,
    ) -> dict[str, Any]:
        """Run a Python program in a disposable sandbox (no network, read-only system,
        memory, CPU and process limits). Returns status (ok, error, blocked, timeout, oom,
        output_limit), exit_code, stdout, stderr and duration_s."""
        body = {"code_b64": base64.b64encode(code.encode()).decode(), "timeout_s": timeout_s}
        result: dict[str, Any] = await backend.call("sandbox", body)
        return result

    return app


class SocketBackend:
    """``codeflow mcp`` (stdio): operations on the local service, paths relative to ``cwd``."""

    def __init__(self, client: ServiceClient, cwd: str) -> None:
        self.client, self.cwd = client, cwd

    async def call(self, op: str, body: dict[str, Any]) -> Any:
        request = {**body, "cwd": self.cwd} if op != "sandbox" else body
        try:
            result, _ = await anyio.to_thread.run_sync(self.client.call, op, request)
        except CodeflowError as exc:
            raise ToolError(str(exc)) from None
        return result


class RunnerBackend:
    """``/mcp`` (HTTP): operations in this service, for the grant of the request's token."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def call(self, op: str, body: dict[str, Any]) -> Any:
        from flows.service.access import authorize_operation, hidden

        try:
            request = await anyio.to_thread.run_sync(
                authorize_operation, self.runner.settings, op, body
            )
            result, _ = await self.runner.run(op, request, _ignore)
        except CodeflowError as exc:
            raise ToolError(str(hidden(op, body, exc))) from None
        return result


def _ignore(event: dict[str, Any]) -> None:
    return None


@contextlib.asynccontextmanager
async def mcp_app(runner: Runner) -> AsyncIterator[Any]:
    """The streamable HTTP app of the tools (stateless, JSON replies), while its session
    manager runs. A token guards it, not the Host header, so the SDK's DNS-rebinding check
    (which would refuse every host name but the loopback ones) is off."""
    from mcp.server.transport_security import TransportSecuritySettings

    app = build_server(RunnerBackend(runner))
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    asgi = app.streamable_http_app(
        stateless_http=True, json_response=True, transport_security=security
    )
    async with app.session_manager.run():
        yield asgi


def serve_stdio(client: ServiceClient) -> None:
    """``codeflow mcp``: serve the tools on stdin/stdout until the agent closes them."""
    build_server(SocketBackend(client, os.getcwd())).run()
