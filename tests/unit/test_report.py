"""``codeflow report``'s tables and formats, from known inputs (no services)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tasks.index.manifests import IndexManifest
from tasks.reports.frames import DETAILS, SUMMARIES, ReportInputs, build_report
from tasks.reports.history import Event
from tasks.reports.render import render_csv, render_html, render_json, render_table, write_parquet

T0 = 1_796_600_000.0  # 2026-12-06
REPO, OTHER = "0123456789abcdef", "fedcba9876543210"


def state(
    run: str, name: str, ts: float, flow: str = "vectorize_repository", **extra: object
) -> Event:
    return {"kind": "flow_run.state", "flow_run_id": run, "flow_name": flow, "state": name,
            "ts": ts, **extra}  # fmt: skip


def history() -> list[Event]:
    """Three index runs (one failed, one on another repository), two sandbox runs."""
    return [
        state("r1", "Running", T0, repo_id=REPO),
        state("r1", "Completed", T0 + 10),
        {"kind": "index.summary", "ts": T0 + 10, "flow_run_id": "r1", "repo_id": REPO,
         "files_changed": 100, "chunks_embedded": 400, "cache_hits": 600, "duration_s": 10.0,
         "embedding_tokens": 5000, "estimated_cost_usd": 0.0001},
        state("r2", "Running", T0 + 3600, repo_id=REPO),
        state("r2", "Failed", T0 + 3630),
        state("r3", "Running", T0 + 86400, repo_id=OTHER),
        state("r3", "Completed", T0 + 86402),
        {"kind": "index.summary", "ts": T0 + 86402, "flow_run_id": "r3", "repo_id": OTHER,
         "files_changed": 4, "chunks_embedded": 0, "cache_hits": 20, "duration_s": 2.0},
        state("s1", "Running", T0 + 5, flow="run_sandboxed"),
        state("s1", "Completed", T0 + 5.5, flow="run_sandboxed"),
        {"kind": "sandbox.result", "ts": T0 + 5.5, "status": "ok", "duration_s": 0.5,
         "cached": False},
        {"kind": "sandbox.result", "ts": T0 + 9, "status": "ok", "duration_s": 0.4,
         "cached": True},
        {"kind": "sandbox.result", "ts": T0 + 20, "status": "timeout", "duration_s": 5.0,
         "cached": False},
    ]  # fmt: skip


def manifests() -> list[IndexManifest]:
    chunks = {"a.py": ["1", "2"], "b.py": ["3"], "web/app.ts": ["4", "5", "6"]}
    skipped = {"x.min.js": "minified", "big.sql": "oversized", "y.min.js": "minified"}
    mine = IndexManifest(REPO, "main", "/r", "c1", "e", chunks=chunks, skipped=skipped)
    return [mine, IndexManifest(OTHER, "dev", "/o", "c2", "e", chunks={"main.go": ["7"]})]


def inputs(**changes: object) -> ReportInputs:
    stats = {"search": {"hits": 9.0, "misses": 1.0, "hit_rate": 0.9}}
    base = ReportInputs(
        since=T0 - 1, until=T0 + 2 * 86400, events=history(), manifests=manifests(),
        cache_stats=stats,
    )  # fmt: skip
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def test_runs_per_flow_with_failure_rate_and_durations() -> None:
    runs = build_report(inputs()).tables["runs"].set_index("flow")
    assert runs.loc["vectorize_repository", "runs"] == 3
    assert runs.loc["vectorize_repository", "failed"] == 1
    assert runs.loc["vectorize_repository", "failure_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert runs.loc["vectorize_repository", "p50_s"] == 10.0  # durations 10, 30, 2
    assert runs.loc["run_sandboxed", "p95_s"] == 0.5


def test_prefects_runs_are_preferred_and_give_task_statistics() -> None:
    prefect = [{"flow_run_id": "r1", "flow": "vectorize_repository", "deployment": "v/main",
                "state": "Completed", "start": T0, "end": T0 + 9, "duration_s": 9.0}]  # fmt: skip
    tasks = [
        {"flow_run_id": "r1", "task": "embed-batch", "state": "Completed", "duration_s": 2.0},
        {"flow_run_id": "r1", "task": "embed-batch", "state": "Failed", "duration_s": 4.0},
        {"flow_run_id": "elsewhere", "task": "embed-batch", "state": "Failed", "duration_s": 1},
    ]
    report = build_report(inputs(prefect_runs=prefect, prefect_tasks=tasks))
    runs = report.tables["runs"]
    assert runs.to_dict("records") == [{"flow": "vectorize_repository", "deployment": "v/main",
        "runs": 1, "failed": 0, "failure_rate": 0.0, "p50_s": 9.0, "p95_s": 9.0}]  # fmt: skip
    (embed,) = report.tables["tasks"].to_dict("records")
    assert (embed["runs"], embed["failed"], embed["p50_s"]) == (2, 1, 3.0)


def test_throughput_hit_rates_spend_and_sandbox() -> None:
    tables = build_report(inputs()).tables
    first, second = tables["throughput"].to_dict("records")
    assert (first["day"], first["files_per_s"], first["chunks_per_s"]) == (
        "2026-12-06",
        10.0,
        100.0,
    )
    assert (first["embedding_hit_rate"], first["embedding_tokens"]) == (0.6, 5000)
    assert second["embedding_hit_rate"] == 1.0
    sandbox = tables["sandbox"].set_index("status")
    assert sandbox.loc["ok", "runs"] == 2 and sandbox.loc["ok", "cached"] == 1
    assert sandbox.loc["ok", "p50_s"] == 0.5  # the cached answer's time is not a run's
    assert tables["caches"].to_dict("records") == [
        {"namespace": "search", "hits": 9, "misses": 1, "hit_rate": 0.9}
    ]


def test_index_statistics_per_language_and_skip_reason() -> None:
    tables = build_report(inputs()).tables
    langs = tables["repositories"].set_index(["repo_id", "language"])
    assert langs.loc[(REPO, "python"), "files"] == 2 and langs.loc[(REPO, "python"), "chunks"] == 3
    assert langs.loc[(REPO, "typescript"), "chunks"] == 3
    assert langs.loc[(OTHER, "go"), "files"] == 1
    skipped = tables["skipped"].set_index("reason")["files"].to_dict()
    assert skipped == {"minified": 2, "oversized": 1}


def test_one_repository_only() -> None:
    tables = build_report(inputs(repo_id=OTHER)).tables
    assert tables["run_history"]["flow_run_id"].tolist() == ["r3"]
    assert tables["index_runs"]["repo_id"].tolist() == [OTHER]
    assert set(tables["repositories"]["repo_id"]) == {OTHER} and tables["skipped"].empty


def test_every_format_holds_every_table(tmp_path: Path) -> None:
    report = build_report(inputs())
    text = render_table(report)
    assert all(f"== {name} ==" in text for name in SUMMARIES)
    csv = pd.read_csv(io.StringIO(render_csv(report)))
    assert set(csv["section"]) == set(SUMMARIES + DETAILS) - {"tasks"}  # none without Prefect
    assert csv.loc[csv["section"] == "runs", "runs"].tolist() == [1, 3]
    body = json.loads(render_json(report))
    assert set(body["tables"]) == set(SUMMARIES + DETAILS) and body["notes"] == []
    write_parquet(report, tmp_path / "r.parquet")
    back = pd.read_parquet(tmp_path / "r.parquet")
    assert len(back) == len(csv) and back.loc[back["section"] == "skipped", "files"].sum() == 3
    page = render_html(report)
    assert page.count("<svg") == 4 and "<script" not in page
    assert re.findall(r'(?:src|href)="(?!#)', page) == []  # nothing to fetch: self-contained


def test_an_empty_history_is_an_empty_report_with_a_note(tmp_path: Path) -> None:
    empty = build_report(ReportInputs(since=T0, until=T0 + 60))
    assert empty.empty
    assert render_table(empty).splitlines()[-1].startswith("no runs, index statistics")
    assert json.loads(render_json(empty))["notes"][0].startswith("no runs")
    assert render_csv(empty).strip() == "section"
    write_parquet(empty, tmp_path / "e.parquet")
    page = render_html(empty)
    assert "<svg" not in page and "no runs, index statistics" in page


def test_since_takes_a_duration_or_a_date() -> None:
    from config.errors import ConfigError
    from flows.cli.report_commands import FORMATS as OFFERED
    from flows.cli.report_commands import parse_since
    from tasks.reports.render import FORMATS

    assert OFFERED == FORMATS  # the command line lists them without importing pandas
    assert parse_since("12h", T0) == T0 - 12 * 3600
    assert parse_since("2w", T0) == T0 - 14 * 86400
    assert parse_since("2026-12-01", T0) == 1_796_083_200.0  # midnight UTC
    assert parse_since("2026-12-01T01:00+01:00", T0) == 1_796_083_200.0
    for wrong in ("yesterday", "7 days", "2027-01-01"):
        with pytest.raises(ConfigError, match="--since"):
            parse_since(wrong, T0)
