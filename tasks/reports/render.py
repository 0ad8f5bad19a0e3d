"""A :class:`~tasks.reports.frames.Report` in each of ``codeflow report``'s formats.

- ``table``: the summary tables as aligned text, notes first;
- ``csv`` and ``parquet``: every table (summaries and details) stacked into one, with a
  ``section`` column naming the table each row belongs to;
- ``json``: ``{"since", "until", "notes", "tables": {name: [row, ...]}}``;
- ``html``: one self-contained page: charts as inline SVG, then the summary tables.
"""

from __future__ import annotations

import datetime
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.reports import charts
from tasks.reports.frames import DETAILS, SUMMARIES, Report

FORMATS = ("table", "csv", "json", "parquet", "html")


def when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def empty_note(report: Report) -> str:
    return f"no runs, index statistics or cache statistics since {when(report.since)}"


def render_table(report: Report) -> str:
    lines = [f"codeflow report: {when(report.since)} to {when(report.until)}", *report.notes]
    if report.empty:
        return "\n".join([*lines, empty_note(report)]) + "\n"
    for name in SUMMARIES:
        frame = report.tables[name]
        lines += ["", f"== {name} =="]
        lines.append(frame.to_string(index=False, na_rep="-") if not frame.empty else "(none)")
    return "\n".join(lines) + "\n"


def stacked(report: Report) -> pd.DataFrame:
    """Every non-empty table, one after the other, with a leading ``section`` column."""
    parts = [
        frame.assign(section=name)[["section", *frame.columns]]
        for name in (*SUMMARIES, *DETAILS)
        if not (frame := report.tables[name]).empty
    ]
    if not parts:
        return pd.DataFrame(columns=["section"])
    return pd.concat(parts, ignore_index=True).convert_dtypes()


def render_csv(report: Report) -> str:
    return stacked(report).to_csv(index=False)


def write_parquet(report: Report, path: Path) -> None:
    stacked(report).to_parquet(path, index=False)


def render_json(report: Report) -> str:
    tables = {
        name: json.loads(report.tables[name].to_json(orient="records"))
        for name in (*SUMMARIES, *DETAILS)
    }
    body: dict[str, Any] = {
        "since": report.since,
        "until": report.until,
        "notes": report.notes + ([empty_note(report)] if report.empty else []),
        "tables": tables,
    }
    return json.dumps(body, indent=1) + "\n"


_CSS = """
:root { color-scheme: light dark; --fg: #1d2433; --muted: #667085; --line: #e4e7ec; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8ee; --muted: #98a2b3; --line: #344054; }
  svg { background: #fff; border-radius: 6px; } }
body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); margin: 2rem auto;
  max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 .2rem; } h2 { font-size: 1.05rem; margin: 2rem 0 .5rem; }
.muted { color: var(--muted); } .note { color: var(--muted); margin: .2rem 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1rem; }
figure { margin: 0; } figure svg { width: 100%; height: auto; }
figcaption { font-weight: 600; margin-bottom: .3rem; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: .25rem .7rem; border-bottom: 1px solid var(--line); }
th:first-child, td:first-child { text-align: left; }
"""


def render_html(report: Report) -> str:
    t = report.tables
    drawn = {
        "Run durations": charts.run_durations(t["run_history"]),
        "Indexing throughput": charts.throughput(t["index_runs"]),
        "Cache hit rates": charts.hit_rates(t["index_runs"], t["caches"]),
        "Sandbox outcomes": charts.sandbox_outcomes(t["sandbox"]),
    }
    figures = [
        f'<figure data-chart="{html.escape(title)}"><figcaption>{html.escape(title)}</figcaption>'
        f"{svg}</figure>"
        for title, svg in drawn.items()
        if svg is not None
    ]
    notes = report.notes + ([empty_note(report)] if report.empty else [])
    sections = [
        f"<h2>{name}</h2>"
        + (t[name].to_html(index=False, na_rep="-", border=0) if not t[name].empty else "")
        + ('<p class="muted">none</p>' if t[name].empty else "")
        for name in SUMMARIES
    ]
    return "".join(
        [
            '<!doctype html><html lang="en"><head><meta charset="utf-8">',
            "<title>codeflow report</title><style>",
            _CSS,
            "</style></head><body><h1>codeflow report</h1>",
            f'<p class="muted">{when(report.since)} to {when(report.until)}</p>',
            *(f'<p class="note">{html.escape(n)}</p>' for n in notes),
            '<div class="charts">',
            *figures,
            "</div>",
            *sections,
            "</body></html>\n",
        ]
    )
