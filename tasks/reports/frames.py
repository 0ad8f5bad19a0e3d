"""The report's tables, as pandas DataFrames built from what :mod:`~tasks.reports.sources`
read (no I/O here).

Summary tables (what ``codeflow report`` prints by default):

- ``runs``: per flow and deployment: runs, failed, failure rate, p50/p95 duration;
- ``tasks``: per task: runs, failed, p50/p95 duration (from Prefect's API only);
- ``throughput``: index runs per day: files and chunks per second, embedding-cache hit rate,
  tokens and estimated cost (OpenAI);
- ``caches``: hits, misses and hit rate of each cache namespace;
- ``sandbox``: runs, cached and p50 duration per outcome;
- ``repositories``: files and chunks per repository, branch and language;
- ``skipped``: files left out per repository and reason.

Detail tables (every row; in CSV, JSON, Parquet and behind the HTML charts): ``run_history``
(one row per flow run) and ``index_runs`` (one row per index run).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tasks.index.languages import detect_language
from tasks.index.manifests import IndexManifest
from tasks.reports.history import FAILED, Event, Row, index_rows, run_rows, sandbox_rows

_COUNTED = ("files_changed", "chunks_embedded", "cache_hits", "duration_s",
            "embedding_tokens", "estimated_cost_usd")  # fmt: skip
_COUNTED = ("files_changed", "chunks_embedded", "cache_hits", "duration_s",
            "embedding_tokens", "estimated_cost_usd")  # fmt: skip
SUMMARIES = ("runs", "tasks", "throughput", "caches", "sandbox", "repositories", "skipped")
DETAILS = ("run_history", "index_runs")


@dataclass
class ReportInputs:
    """Everything a report is made of, already read."""

    since: float
    until: float
    events: list[Event] = field(default_factory=list)
    #: Flow and task runs from Prefect's API (``None``: the API could not be read).
    prefect_runs: list[Row] | None = None
    prefect_tasks: list[Row] | None = None
    cache_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    manifests: list[IndexManifest] = field(default_factory=list)
    repo_id: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    since: float
    until: float
    tables: dict[str, pd.DataFrame]
    notes: list[str]

    @property
    def empty(self) -> bool:
        return all(frame.empty for frame in self.tables.values())


def build_report(inputs: ReportInputs) -> Report:
    """All tables of the report, restricted to ``inputs.repo_id`` when one is given."""
    history = _history(inputs)
    index_runs = _frame(index_rows(inputs.events), ["ts", "repo_id", "files_changed"])
    if inputs.repo_id is not None and not index_runs.empty:
        index_runs = index_runs[index_runs["repo_id"] == inputs.repo_id]
    manifests = [m for m in inputs.manifests if inputs.repo_id in (None, m.repo_id)]
    tables = {
        "runs": runs_table(history),
        "tasks": tasks_table(inputs.prefect_tasks or [], set(history.get("flow_run_id", []))),
        "throughput": throughput_table(index_runs),
        "caches": caches_table(inputs.cache_stats),
        "sandbox": sandbox_table(_frame(sandbox_rows(inputs.events), ["status", "duration_s"])),
        "repositories": repositories_table(manifests),
        "skipped": skipped_table(manifests),
        "run_history": history,
        "index_runs": index_runs.reset_index(drop=True),
    }
    return Report(inputs.since, inputs.until, tables, list(inputs.notes))


def _frame(rows: Sequence[Row], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def _history(inputs: ReportInputs) -> pd.DataFrame:
    """One row per flow run: Prefect's own records when its API answered, else the runs
    codeflow's events tell of. With a repository, only the runs that worked on it."""
    from_events = run_rows(inputs.events)
    rows = inputs.prefect_runs if inputs.prefect_runs is not None else from_events
    history = _frame(rows, ["flow_run_id", "flow", "state", "start", "duration_s"])
    if inputs.repo_id is not None:
        mine = {r["flow_run_id"] for r in from_events if r["repo_id"] == inputs.repo_id}
        history = history[history["flow_run_id"].isin(mine)]
    if "deployment" not in history:
        history["deployment"] = None
    return history.reset_index(drop=True)


def _quantile(values: pd.Series, q: float) -> float | None:
    values = values.dropna()
    return round(float(values.quantile(q)), 3) if len(values) else None


def _outcomes(frame: pd.DataFrame, keys: list[str], state: str = "state") -> pd.DataFrame:
    """Runs, failed, failure rate and p50/p95 duration per ``keys``."""
    if frame.empty:
        return pd.DataFrame(columns=[*keys, "runs", "failed", "failure_rate", "p50_s", "p95_s"])
    rows = []
    for key, group in frame.groupby(keys, dropna=False, sort=True):
        values = key if isinstance(key, tuple) else (key,)
        failed = int(group[state].isin(FAILED).sum())
        rows.append(
            {
                **dict(zip(keys, values, strict=True)),
                "runs": len(group),
                "failed": failed,
                "failure_rate": round(failed / len(group), 4),
                "p50_s": _quantile(group["duration_s"], 0.5),
                "p95_s": _quantile(group["duration_s"], 0.95),
            }
        )
    return pd.DataFrame(rows)


def runs_table(history: pd.DataFrame) -> pd.DataFrame:
    frame = history.assign(deployment=history["deployment"].fillna("-"))
    return _outcomes(frame, ["flow", "deployment"])


def tasks_table(task_rows: list[Row], flow_runs: set[str]) -> pd.DataFrame:
    frame = _frame([r for r in task_rows if r["flow_run_id"] in flow_runs], ["task", "state"])
    return _outcomes(frame, ["task"])


def throughput_table(index_runs: pd.DataFrame) -> pd.DataFrame:
    """Index runs per day (UTC): files and chunks per second over the day's runs, the
    embedding cache's hit rate, tokens and estimated cost."""
    columns = ["day", "runs", "files", "chunks", "files_per_s", "chunks_per_s",
               "embedding_hit_rate", "embedding_tokens", "estimated_cost_usd"]  # fmt: skip
    if index_runs.empty:
        return pd.DataFrame(columns=columns)
    frame = index_runs.fillna(dict.fromkeys(_COUNTED, 0))
    frame = frame.assign(day=[_day(ts) for ts in frame["ts"]])
    rows = [_day_row(day, group) for day, group in frame.groupby("day", sort=True)]
    return pd.DataFrame(rows, columns=columns)


def _day(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).date().isoformat()


def _day_row(day: Any, group: pd.DataFrame) -> dict[str, Any]:
    seconds = float(group["duration_s"].sum())
    files = int(group["files_changed"].sum())
    chunks = int(group["chunks_embedded"].sum() + group["cache_hits"].sum())
    hits = int(group["cache_hits"].sum())
    return {
        "day": day,
        "runs": len(group),
        "files": files,
        "chunks": chunks,
        "files_per_s": round(files / seconds, 2) if seconds else None,
        "chunks_per_s": round(chunks / seconds, 2) if seconds else None,
        "embedding_hit_rate": round(hits / chunks, 4) if chunks else None,
        "embedding_tokens": int(group["embedding_tokens"].sum()),
        "estimated_cost_usd": round(float(group["estimated_cost_usd"].sum()), 6),
    }


def caches_table(stats: dict[str, dict[str, float]]) -> pd.DataFrame:
    rows = [
        {
            "namespace": name,
            "hits": int(values.get("hits", 0)),
            "misses": int(values.get("misses", 0)),
            "hit_rate": round(float(values.get("hit_rate", 0.0)), 4),
        }
        for name, values in sorted(stats.items())
    ]
    return _frame(rows, ["namespace", "hits", "misses", "hit_rate"])


def sandbox_table(results: pd.DataFrame) -> pd.DataFrame:
    columns = ["status", "runs", "cached", "p50_s"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    rows = [
        {
            "status": status,
            "runs": len(group),
            "cached": int(group["cached"].sum()),
            "p50_s": _quantile(group.loc[~group["cached"], "duration_s"].astype(float), 0.5),
        }
        for status, group in results.groupby("status", sort=True)
    ]
    return pd.DataFrame(rows, columns=columns)


def repositories_table(manifests: Iterable[IndexManifest]) -> pd.DataFrame:
    rows = [
        {
            "repo_id": m.repo_id,
            "branch": m.branch,
            "language": detect_language(path),
            "files": 1,
            "chunks": len(ids),
        }
        for m in manifests
        for path, ids in m.chunks.items()
    ]
    keys = ["repo_id", "branch", "language"]
    if not rows:
        return pd.DataFrame(columns=[*keys, "files", "chunks"])
    return pd.DataFrame(rows).groupby(keys, as_index=False)[["files", "chunks"]].sum()


def skipped_table(manifests: Iterable[IndexManifest]) -> pd.DataFrame:
    rows = [
        {"repo_id": m.repo_id, "branch": m.branch, "reason": reason, "files": 1}
        for m in manifests
        for reason in m.skipped.values()
    ]
    keys = ["repo_id", "branch", "reason"]
    if not rows:
        return pd.DataFrame(columns=[*keys, "files"])
    return pd.DataFrame(rows).groupby(keys, as_index=False)[["files"]].sum()
