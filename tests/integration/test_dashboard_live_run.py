"""`codeflow serve`'s dashboard in headless Chromium watching a REAL vectorize flow run: the
run's state and progress change on the page while the flow runs."""

from __future__ import annotations

import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import flows.vectorize
import tasks.pipeline.vectorize_tasks
from tasks.redis_io.formats import STREAM
from tests.git_support import make_repo
from tests.integration.browser_fixtures import ARTIFACTS
from tests.integration.server_fixtures import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("prefect_harness")]


def test_dashboard_follows_a_real_flow_run(
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    codeflow_env: dict[str, str],
    browser: Any,
    playwright_api: ModuleType,
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {f"pkg/m{i}.py": f"def f{i}(x):\n    return x + {i}\n" for i in range(30)},
    )
    gate, run_ids = threading.Event(), []

    real_sweep = tasks.pipeline.vectorize_tasks.sweep_stale

    def held_sweep(*args: Any, **kwargs: Any) -> Any:
        """Hold the run after its writes until the page has shown it running."""
        from prefect.runtime import flow_run

        run_ids.append(str(flow_run.get_id()))
        assert gate.wait(timeout=120), "the test never released the run"
        return real_sweep(*args, **kwargs)

    monkeypatch.setattr(flows.vectorize, "sweep_stale", held_sweep)
    server = ServerProcess(tmp_path / "server-home", redis_url, STREAM)
    result: list[dict[str, Any]] = []
    runner = threading.Thread(
        target=lambda: result.append(flows.vectorize.vectorize_repository(str(repo)))
    )
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"http://127.0.0.1:{server.port}/?token={server.token}")
        expect = playwright_api.expect
        expect(page.locator("#connection")).to_have_text("live")
        runner.start()
        _wait(lambda: bool(run_ids))
        row = page.locator(f'#runs tr[data-run-id="{run_ids[0]}"]')
        expect(row).to_contain_text("Running", timeout=60_000)
        row.click()
        expect(page.locator("#run-state")).to_have_text("Running")
        expect(page.locator('[data-task="write-vectors"]')).to_contain_text("Completed")
        expect(page.locator(".progress-count").first).to_contain_text("30 / 30 files")
        page.screenshot(path=str(ARTIFACTS / "dashboard-real-run-running.png"), full_page=True)
        gate.set()
        expect(page.locator("#run-state")).to_have_text("Completed", timeout=60_000)
        expect(row).to_contain_text("Completed")
        page.screenshot(path=str(ARTIFACTS / "dashboard-real-run-completed.png"), full_page=True)
    finally:
        gate.set()
        runner.join(timeout=120)
        server.kill()
    assert result and result[0]["files_total"] == 30


def _wait(condition: Any, timeout_s: float = 120) -> None:
    done = threading.Event()
    waited = 0.0
    while not condition():
        done.wait(0.02)
        waited += 0.02
        if waited > timeout_s:
            raise AssertionError("the flow run never started")
