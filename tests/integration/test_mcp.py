"""The MCP server with the SDK's own client: ``codeflow mcp`` over stdio, and streamable HTTP
at ``/mcp`` on the service, where every call needs a token granting what it touches."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.integration.sandbox_fixtures import docker_client, sandbox_image  # noqa: F401
from tests.integration.test_service import FILES, Codeflow, service_in

Session = Callable[[ClientSession], Awaitable[Any]]
TOOLS = {"search_code", "related_code", "index_repository", "index_status", "run_python"}


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Codeflow]:
    limits = {"CODEFLOW_RATE_LIMIT_PER_MIN": "60", "CODEFLOW_RATE_LIMIT_BURST": "20"}
    with service_in(tmp_path_factory.mktemp("mcp"), redis_url, **limits) as commands:
        yield commands


def over_stdio(cli: Codeflow, work: Session) -> Any:
    """``work`` on a session with ``codeflow mcp`` started in the repository's folder."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "flows.cli.commands", "mcp"],
        env=cli.env,
        cwd=cli.env["TEST_REPO"],
    )

    async def main() -> Any:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)

    return asyncio.run(main())


def over_http(cli: Codeflow, token: str, work: Session) -> Any:
    url = cli.hello()["mcp_url"]

    async def main() -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await work(session)

    return asyncio.run(main())


def token(cli: Codeflow, *rooms: str) -> str:
    args = [arg for room in rooms for arg in ("--room", room)]
    return cli.run("token", *args).stdout.strip()


def test_stdio_tools_have_schemas_and_answer(cli: Codeflow) -> None:
    async def work(session: ClientSession) -> Any:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        indexed = await session.call_tool("index_repository", {"repo": "."})
        found = await session.call_tool("search_code", {"query": "retry with backoff", "repo": "."})
        status = await session.call_tool("index_status", {"repo": "."})
        related = await session.call_tool(
            "related_code", {"file": "billing/refund.py", "line": 4, "repo": "."}
        )
        missing = await session.call_tool("search_code", {"query": "x", "repo": "/nowhere"})
        return tools, indexed, found, status, related, missing

    tools, indexed, found, status, related, missing = over_stdio(cli, work)
    assert set(tools) == TOOLS
    assert tools["search_code"].input_schema["required"] == ["query", "repo"]
    assert all(len(tool.description or "") > 40 for tool in tools.values())
    assert indexed.structured_content["files_total"] == len(FILES)
    assert found.structured_content["result"][0]["path"] == "net/retry.py"
    assert status.structured_content["files_total"] == len(FILES)
    assert "files" not in status.structured_content
    assert any(h["path"] == "billing/invoice.py" for h in related.structured_content["result"])
    assert missing.is_error and "/nowhere" in missing.content[0].text


@pytest.mark.usefixtures("sandbox_image")
def test_stdio_run_python_returns_status_and_output(cli: Codeflow) -> None:
    async def work(session: ClientSession) -> Any:
        ok = await session.call_tool("run_python", {"code": "print(6 * 7)"})
        failed = await session.call_tool("run_python", {"code": "raise SystemExit(4)"})
        return ok.structured_content, failed.structured_content

    ok, failed = over_stdio(cli, work)
    assert (ok["status"], ok["stdout"]) == ("ok", "42\n")
    assert (failed["status"], failed["exit_code"]) == ("error", 4)


@pytest.mark.usefixtures("sandbox_image")
def test_http_tools_need_a_grant_of_what_they_touch(cli: Codeflow) -> None:
    repo = cli.env["TEST_REPO"]
    assert cli.json("index", repo)["files_total"] == len(FILES)
    repo_id = cli.json("status", repo)["repo_id"]

    async def search(session: ClientSession) -> Any:
        return await session.call_tool("search_code", {"query": "invoice", "repo": repo})

    async def run(session: ClientSession) -> Any:
        return await session.call_tool("run_python", {"code": "print(1)"})

    granted = over_http(cli, token(cli, f"repo:{repo_id}"), search)
    assert not granted.is_error
    assert granted.structured_content["result"][0]["path"].startswith("billing/")
    other = over_http(cli, token(cli, "repo:0000*"), search)
    nowhere = over_http(cli, token(cli, "repo:*"), _search_at("/nowhere"))
    assert other.is_error and nowhere.is_error
    assert other.content[0].text.replace(repo, "X") == nowhere.content[0].text.replace(
        "/nowhere", "X"
    )
    assert over_http(cli, token(cli, "run:1"), search).is_error
    assert over_http(cli, token(cli, f"repo:{repo_id}"), run).is_error
    assert over_http(cli, token(cli, "sandbox"), run).structured_content["stdout"] == "1\n"


def _search_at(repo: str) -> Session:
    async def search(session: ClientSession) -> Any:
        return await session.call_tool("search_code", {"query": "invoice", "repo": repo})

    return search


def test_http_without_a_valid_token_is_refused(cli: Codeflow) -> None:
    url = cli.hello()["mcp_url"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for headers in ({}, {"Authorization": "Bearer forged"}):
        reply = httpx2.post(url, json=body, headers=headers, timeout=10)
        assert reply.status_code == 401
        assert "token" in json.loads(reply.text)["error"]


def test_http_calls_past_the_rate_limit_wait(cli: Codeflow) -> None:
    url, granted = cli.hello()["mcp_url"], token(cli, "repo:*")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {
        "Authorization": f"Bearer {granted}",
        "Accept": "application/json, text/event-stream",
    }
    statuses = [httpx2.post(url, json=body, headers=headers, timeout=10) for _ in range(25)]
    refused = [reply for reply in statuses if reply.status_code == 429]
    assert refused and int(refused[0].headers["Retry-After"]) >= 1
    assert statuses[0].status_code != 429
