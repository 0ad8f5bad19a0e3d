"""Rows of run history from codeflow's events (plain dicts; no pandas, no I/O).

>>> events = [
...     {"kind": "flow_run.state", "flow_run_id": "r1", "flow_name": "vectorize_repository",
...      "state": "Running", "ts": 100.0, "repo_id": "abc"},
...     {"kind": "flow_run.state", "flow_run_id": "r1", "flow_name": "vectorize_repository",
...      "state": "Completed", "ts": 104.5},
... ]
>>> [(r["flow_run_id"], r["state"], r["duration_s"], r["repo_id"]) for r in run_rows(events)]
[('r1', 'Completed', 4.5, 'abc')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Event = Mapping[str, Any]
Row = dict[str, Any]

TERMINAL = frozenset({"Completed", "Failed", "Crashed", "Cancelled"})
FAILED = frozenset({"Failed", "Crashed"})
#: What an index run's summary contributes to its row, as it is named there.
_SUMMARY_FIELDS = (
    "repo_id", "branch", "files_total", "files_changed", "files_deleted", "chunks_total",
    "chunks_embedded", "cache_hits", "duration_s", "embedding_tokens", "estimated_cost_usd",
)  # fmt: skip


def run_rows(events: Iterable[Event]) -> list[Row]:
    """One row per flow run seen in ``flow_run.state`` events: flow, final (or latest)
    state, start, end and duration (``None`` while it runs), repository if any."""
    runs: dict[str, Row] = {}
    for event in events:
        if event.get("kind") != "flow_run.state" or not event.get("flow_run_id"):
            continue
        row = runs.setdefault(str(event["flow_run_id"]), _new_run(event))
        _apply_state(row, event)
    for row in runs.values():
        done = row["end"] is not None and row["start"] is not None
        row["duration_s"] = round(row["end"] - row["start"], 3) if done else None
    return sorted(runs.values(), key=lambda r: r["start"] or r["ts"])


def _new_run(event: Event) -> Row:
    return {
        "flow_run_id": str(event["flow_run_id"]),
        "flow": event.get("flow_name") or "unknown",
        "state": None,
        "start": None,
        "end": None,
        "ts": 0.0,
        "repo_id": None,
    }


def _apply_state(row: Row, event: Event) -> None:
    ts, state = float(event.get("ts") or 0.0), event.get("state")
    row["repo_id"] = row["repo_id"] or event.get("repo_id")
    if event.get("flow_name"):
        row["flow"] = event["flow_name"]
    if state == "Running" and row["start"] is None:
        row["start"] = ts
    if state in TERMINAL:
        row["end"] = max(row["end"] or ts, ts)
    if ts >= row["ts"]:  # events may arrive out of order: the newest state wins
        row["state"], row["ts"] = state, ts


def index_rows(events: Iterable[Event]) -> list[Row]:
    """One row per ``index.summary``: its counts plus throughput (files/s, chunks/s) and the
    embedding cache's hit rate in that run."""
    rows = []
    for event in events:
        if event.get("kind") != "index.summary":
            continue
        row: Row = {"ts": float(event.get("ts") or 0.0), "flow_run_id": event.get("flow_run_id")}
        row.update((name, event.get(name)) for name in _SUMMARY_FIELDS)
        rows.append(_with_rates(row))
    return rows


def _with_rates(row: Row) -> Row:
    seconds = row.get("duration_s") or 0.0
    changed, embedded, hits = (row.get(k) or 0 for k in ("files_changed", "chunks_embedded",
                                                         "cache_hits"))  # fmt: skip
    row["files_per_s"] = round(changed / seconds, 2) if seconds > 0 else None
    row["chunks_per_s"] = round((embedded + hits) / seconds, 2) if seconds > 0 else None
    looked_up = embedded + hits
    row["embedding_hit_rate"] = round(hits / looked_up, 4) if looked_up else None
    return row


def sandbox_rows(events: Iterable[Event]) -> list[Row]:
    """One row per ``sandbox.result``: status, exit code, duration, whether it was cached."""
    return [
        {
            "ts": float(event.get("ts") or 0.0),
            "flow_run_id": event.get("flow_run_id"),
            "status": event.get("status") or "unknown",
            "exit_code": event.get("exit_code"),
            "duration_s": event.get("duration_s"),
            "cached": bool(event.get("cached")),
        }
        for event in events
        if event.get("kind") == "sandbox.result"
    ]
