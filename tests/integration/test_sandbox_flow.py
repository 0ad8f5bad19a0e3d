"""``codeflow sandbox run`` end to end: the CLI, the Prefect flow, Redis caching, events, the
real Docker engine and image."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
import redis

from flows.cli.commands import main
from tasks.events.bus import EventBus
from tests.integration.sandbox_fixtures import docker_client, sandbox_image  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("prefect_harness", "sandbox_image")]


@pytest.fixture
def cli(
    codeflow_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:

    def run(code: str, *args: str) -> tuple[int, dict[str, Any] | None, str]:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(code.encode())))
        capsys.readouterr()
        status = main(["sandbox", "run", "-", "--json", *args])
        out, err = capsys.readouterr()
        return status, json.loads(out) if out.strip() else None, err

    return run


def test_ok_then_cached_then_no_cache(cli: Any, redis_url: str) -> None:
    code = f"print('hi {uuid.uuid4().hex}')\n"
    status, first, _ = cli(code)
    assert status == 0 and first is not None
    assert (first["status"], first["exit_code"], first["cached"]) == ("ok", 0, False)
    assert first["stdout"].startswith("hi ")
    _, second, _ = cli(code)
    assert second is not None and second["cached"] is True and second["stdout"] == first["stdout"]
    _, third, _ = cli(code, "--no-cache")
    assert third is not None and third["cached"] is False
    events = [e for _, e in EventBus(redis.Redis.from_url(redis_url)).read(count=100_000)]
    assert any(e["kind"] == "sandbox.result" and e.get("status") == "ok" for e in events)


def test_blocked_by_the_ast_layer_with_readable_violations(cli: Any) -> None:
    status, result, _ = cli("import socket\nsocket.create_connection(('1.1.1.1', 80))\n")
    assert status == 3 and result is not None
    assert result["status"] == "blocked" and result["violations"][0]["line"] == 1


def test_timeout_is_reported_and_never_cached(cli: Any) -> None:
    code = f"# {uuid.uuid4().hex}\nwhile True:\n    pass\n"
    _, first, _ = cli(code, "--timeout", "1")
    _, second, _ = cli(code, "--timeout", "1")
    assert first is not None and second is not None
    assert first["status"] == second["status"] == "timeout"
    assert second["cached"] is False


def test_code_that_is_not_python_is_a_rejected_result(cli: Any) -> None:
    """A syntax error is about the user's code: one JSON result, status ``rejected``, with
    Python's message and line; nothing ran."""
    status, result, _ = cli("print('ok')\ndef broken(:\n")
    assert status == 3 and result is not None
    assert result["status"] == "rejected" and result["exit_code"] is None
    assert result["violations"][0]["line"] == 2
    assert result["violations"][0]["message"].startswith("invalid Python")
    assert result["stdout"] == "" and result["duration_s"] == 0.0


def test_tool_failures_give_one_line(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEFLOW_SANDBOX_IMAGE", "codeflow-sandbox:never-built")
    status, _, err = cli("print(1)\n")
    assert status == 1 and "codeflow sandbox build-image" in err and err.count("\n") == 1
