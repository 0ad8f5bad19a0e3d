"""``codeflow report`` end to end: real index and sandbox runs through the command line, a
Redis of the test's own (the event stream is shared by everything on a server), Prefect's
temporary API over the runs' database, and the HTML report opened in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.git_support import commit_all, make_repo, write
from tests.integration.browser_fixtures import ARTIFACTS
from tests.integration.sandbox_fixtures import docker_client, sandbox_image  # noqa: F401
from tests.integration.server_fixtures import ROOT
from tests.redis_support import RedisProcess

pytestmark = [pytest.mark.slow, pytest.mark.docker]


@pytest.fixture
def env(tmp_path: Path, private_redis: RedisProcess) -> Iterator[dict[str, str]]:
    """A clean environment: the commands run through the local service, as by default; it is
    stopped afterwards."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("CODEFLOW_", "PREFECT_"))}
    env = {**inherited, "CODEFLOW_HOME": str(tmp_path / "home"), "REDIS_URL": private_redis.url}
    yield env
    codeflow(env, "service", "stop")


def codeflow(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli.commands", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.returncode, done.stdout, done.stderr


def test_an_empty_history_is_a_note_not_an_error(env: dict[str, str]) -> None:
    status, out, _ = codeflow(env, "report")
    assert status == 0
    assert out.splitlines()[-1].startswith("no runs, index statistics or cache statistics since")
    status, out, _ = codeflow(env, "report", "--format", "json", "--since", "2026-01-01")
    assert status == 0 and json.loads(out)["notes"][-1].startswith("no runs")


def test_mistakes_are_one_line(env: dict[str, str], tmp_path: Path) -> None:
    for args, words in [
        (["--since", "yesterday"], "use a duration such as 30m"),
        (["--format", "parquet"], "give it --output FILE"),
        (["--repo", str(tmp_path)], "not a repository ID, registered name"),
        (["--output", str(tmp_path / "no" / "r.html")], "does not exist"),
    ]:
        status, _, err = codeflow(env, "report", *args)
        assert status == 1 and words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.usefixtures("sandbox_image")
def test_a_report_of_real_runs(
    env: dict[str, str], tmp_path: Path, browser: Any, playwright_api: ModuleType
) -> None:
    repo = make_repo(tmp_path / "repo", {f"pkg/m{i}.py": f"def f{i}():\n    return {i}\n"
                                         for i in range(20)})  # fmt: skip
    assert codeflow(env, "index", str(repo), "--json")[0] == 0
    write(repo, {"pkg/m0.py": "def f0():\n    return 'changed'\n"})
    commit_all(repo, "change one file")
    assert codeflow(env, "index", str(repo), "--json")[0] == 0
    assert codeflow(env, "sandbox", "run", "-", "--json", stdin="print(6 * 7)\n")[0] == 0

    status, out, _ = codeflow(env, "report", "--format", "json", "--repo", str(repo))
    assert status == 0
    tables = json.loads(out)["tables"]
    (runs,) = tables["runs"]  # the sandbox run worked on no repository
    assert (runs["flow"], runs["runs"], runs["failed"]) == ("vectorize_repository", 2, 0)
    assert {"embed-batch", "write-vectors", "commit-index"} <= {t["task"] for t in tables["tasks"]}
    (day,) = tables["throughput"]
    assert (day["runs"], day["files"]) == (2, 21) and day["chunks_per_s"] > 0
    (python,) = tables["repositories"]
    assert (python["language"], python["files"]) == ("python", 20)

    page = tmp_path / "report.html"
    assert codeflow(env, "report", "--format", "html", "--output", str(page))[0] == 0
    charts = charts_in_chromium(page, browser, playwright_api)
    assert set(charts) == {"Run durations", "Indexing throughput", "Cache hit rates",
                           "Sandbox outcomes"}  # fmt: skip
    assert all(width > 200 and marks > 0 for width, marks in charts.values()), charts


def charts_in_chromium(page: Path, browser: Any, playwright_api: ModuleType) -> dict[str, Any]:
    """Each chart's rendered width and how many marks (paths) it drew; keeps a screenshot."""
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("request", lambda r: errors.append(r.url) if not r.url.startswith("file:") else None)
    tab.goto(page.as_uri())
    playwright_api.expect(tab.locator("figure svg").first).to_be_visible()
    found = tab.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("figure")].map((f) => [
            f.dataset.chart,
            [f.querySelector("svg").getBoundingClientRect().width,
             f.querySelectorAll("svg path").length]]))"""
    )
    tab.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert errors == []  # nothing fetched, nothing broken
    return dict(found)
