"""The dashboard in headless Chromium: a run's state and progress change on the page as its
events are published.

The event source is the ``run_events`` fixture. Today it publishes a realistic scripted
sequence through :class:`tasks.events.bus.EventBus`; it can be swapped for a real flow run
without touching the test (the test only calls ``start``, ``advance`` and ``finish`` and
reads ``run_id``/``flow_name``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from tasks.events.bus import EventBus
from tasks.events.model import make_event
from tasks.redis_io.formats import stats_key
from tests.integration.browser_fixtures import ARTIFACTS
from tests.integration.server_fixtures import ServerProcess, unique_stream

pytestmark = [pytest.mark.browser]


@dataclass
class ScriptedRun:
    """A vectorize run told as events: flow and task states (with a retry and a cache hit),
    file progress, a sandbox result."""

    bus: EventBus
    run_id: str = "3f1c2a9e-run"
    flow_name: str = "vectorize_repository"
    ids: list[str] = field(default_factory=list)

    def _emit(self, kind: str, **fields: object) -> None:
        event = make_event(
            kind, flow_run_id=self.run_id, flow_name=self.flow_name, repo_id="demo", **fields
        )
        entry_id = self.bus.publish(event)
        assert entry_id is not None
        self.ids.append(entry_id)

    def _task(self, name: str, state: str, **fields: object) -> None:
        self._emit("task_run.state", task_run_id=f"{name}-1", task_name=name, state=state, **fields)

    def _progress(self, done: int, total: int = 240, ts: float | None = None) -> None:
        self._emit(
            "progress",
            task_run_id="embed_chunks-1",
            task_name="embed_chunks",
            done=done,
            total=total,
            unit="files",
            ts=ts,
        )

    def start(self) -> None:
        now = time.time()
        self._emit("flow_run.state", state="Pending", ts=now - 9)
        self._emit("flow_run.state", state="Running", ts=now - 8.5)
        self._task("fingerprint", "Running", ts=now - 8.4)
        self._task("fingerprint", "Completed", ts=now - 7.9)
        self._task("detect_changes", "Cached", ts=now - 7.8)
        self._task("load_and_chunk", "Running", ts=now - 7.7)
        self._task("load_and_chunk", "Completed", ts=now - 5.2)
        self._task("embed_chunks", "Running", ts=now - 5.1)

    def advance(self) -> None:
        now = time.time()
        for step, done in enumerate(range(20, 140, 20)):
            self._progress(done, ts=now - 4.5 + 0.75 * step)  # ~27 files/s
            if step == 2:
                self._task("upsert_vectors", "Running", ts=now - 2.5)
                self._task(
                    "upsert_vectors",
                    "Retrying",
                    ts=now - 2.0,
                    message="VectorStoreError: lance commit conflict",
                )
                self._task("upsert_vectors", "Running", ts=now - 1.6)
        self._emit("sandbox.result", status="ok", exit_code=0, duration_s=0.42, cached=False)
        self._emit("sandbox.result", status="timeout", exit_code=137, duration_s=5.0, cached=False)

    def finish(self) -> None:
        self._progress(240)
        self._task("embed_chunks", "Completed")
        self._task("upsert_vectors", "Completed")
        self._task("sweep_stale", "Failed", message="RepositoryError: lost commit")
        self._emit(
            "cache.invalidated",
            namespace="search",
            strategy="tag",
            targets=["search:demo-main"],
            count=1,
        )
        self._emit(
            "index.summary",
            files_total=240,
            files_changed=240,
            chunks_total=1830,
            chunks_embedded=630,
            cache_hits=1200,
            duration_s=8.5,
        )
        self._emit("flow_run.state", state="Completed")


@pytest.fixture
def server(tmp_path: Path, redis_url: str) -> Iterator[tuple[ServerProcess, str]]:
    stream = unique_stream()
    process = ServerProcess(tmp_path / "home", redis_url, stream)
    yield process, stream
    process.kill()
    redis.Redis.from_url(redis_url).unlink(stream)


@pytest.fixture
def run_events(redis_url: str, server: tuple[ServerProcess, str]) -> Iterator[ScriptedRun]:
    client = redis.Redis.from_url(redis_url)
    yield ScriptedRun(EventBus(client, stream=server[1]))
    client.close()


def test_dashboard_shows_a_run_live(
    server: tuple[ServerProcess, str],
    run_events: ScriptedRun,
    redis_client: redis.Redis,
    namespace: str,
    browser: Any,
    playwright_api: ModuleType,
) -> None:
    process, _ = server
    redis_client.hset(stats_key(namespace), mapping={"hits": 912, "misses": 88, "sets": 88})
    url = f"http://127.0.0.1:{process.port}/?token={process.token}"
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    expect = playwright_api.expect
    expect(page.locator("#connection")).to_have_text("live")

    run_events.start()
    row = page.locator(f'#runs tr[data-run-id="{run_events.run_id}"]')
    expect(row).to_contain_text("Running")
    expect(page.locator("#run-state")).to_have_text("Running")
    expect(page.locator('[data-task="detect_changes"]')).to_contain_text("Cached")

    run_events.advance()
    count = page.locator('[data-progress="embed_chunks-1"] .progress-count')
    expect(count).to_have_text("120 / 240 files")
    expect(page.locator('[data-task="upsert_vectors"] .retries')).to_have_text("↻1")
    expect(page.locator("#sandbox tr")).to_have_count(2)
    expect(page.locator(f'#cache-legend [data-namespace="{namespace}"]')).to_contain_text("91.2%")
    page.screenshot(path=str(ARTIFACTS / "dashboard-running.png"), full_page=True)

    run_events.finish()
    expect(page.locator("#run-state")).to_have_text("Completed")
    expect(row).to_contain_text("Completed")
    expect(count).to_have_text("240 / 240 files")
    expect(page.locator('[data-task="sweep_stale"]')).to_contain_text("Failed")
    expect(page.locator("#activity")).to_contain_text("lost commit")
    invalidated = "search: invalidated by tag search:demo-main"
    expect(page.locator("#invalidations li")).to_contain_text(invalidated)
    expect(page.locator("#activity")).to_contain_text(invalidated)
    expect(page.locator("#history-runs")).to_contain_text("1 run · p50 8.")
    expect(page.locator("#history-durations")).to_have_attribute("data-points", "1")
    expect(page.locator("#history-hit-rate")).to_contain_text("last index run 65.6%")
    page.screenshot(path=str(ARTIFACTS / "dashboard-completed.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(ARTIFACTS / "dashboard-dark.png"), full_page=True)
    assert errors == []
