"""The HTML report's charts: matplotlib figures rendered to SVG text that the page inlines
(no image files, no script, nothing fetched). Each function returns ``None`` when it has
nothing to draw."""

from __future__ import annotations

import datetime
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from tasks.reports.history import FAILED

COLOURS = ["#3b6fe0", "#1f9d63", "#d98b12", "#7c5cd6", "#d64545", "#0e9aa7"]
FAILED_COLOUR = "#d64545"
_STYLE: dict[Any, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller, and styled by the page's font
    "svg.hashsalt": "codeflow",  # the same report gives the same SVG
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_NO_METADATA = dict.fromkeys(("Creator", "Date", "Format", "Type"))
_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)


@contextmanager
def _figure(width: float = 6.4, height: float = 2.8) -> Iterator[Any]:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(width, height), layout="constrained")
        yield figure


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=_NO_METADATA)
    return _PROLOGUE.sub("", buffer.getvalue(), count=1)  # drop the XML prologue


def _times(seconds: pd.Series) -> list[datetime.datetime]:
    return [datetime.datetime.fromtimestamp(float(s), datetime.UTC) for s in seconds]


def _time_axis(axes: Any, when: list[datetime.datetime]) -> None:
    """Dates on the x axis; a single moment gets an hour around it, not matplotlib's years."""
    if len(set(when)) == 1:
        half = datetime.timedelta(minutes=30)
        axes.set_xlim(when[0] - half, when[0] + half)
    axes.figure.autofmt_xdate()


def _draw(plot: Callable[[Any], None]) -> str:
    with _figure() as figure:
        plot(figure.add_subplot())
        return _svg(figure)


def run_durations(history: pd.DataFrame) -> str | None:
    """Each finished flow run: when it started and how long it took, one colour per flow;
    failed runs drawn as red crosses."""
    done = history.dropna(subset=["start", "duration_s"])
    if done.empty:
        return None

    def plot(axes: Any) -> None:
        for i, (flow, runs) in enumerate(done.groupby("flow", sort=True)):
            ok = runs[~runs["state"].isin(FAILED)]
            axes.scatter(_times(ok["start"]), ok["duration_s"], s=14, label=str(flow),
                         color=COLOURS[i % len(COLOURS)])  # fmt: skip
        failed = done[done["state"].isin(FAILED)]
        if not failed.empty:
            axes.scatter(_times(failed["start"]), failed["duration_s"], marker="x", s=24,
                         color=FAILED_COLOUR, label="failed")  # fmt: skip
        axes.set_ylabel("duration (s)")
        axes.legend(loc="upper left", frameon=False)
        _time_axis(axes, _times(done["start"]))

    return _draw(plot)


def throughput(index_runs: pd.DataFrame) -> str | None:
    """Files and chunks per second of each index run over time."""
    runs = index_runs.dropna(subset=["chunks_per_s"]) if "chunks_per_s" in index_runs else None
    if runs is None or runs.empty:
        return None

    def plot(axes: Any) -> None:
        when = _times(runs["ts"])
        axes.plot(when, runs["chunks_per_s"], marker="o", ms=3, color=COLOURS[0], label="chunks/s")
        axes.plot(when, runs["files_per_s"], marker="o", ms=3, color=COLOURS[1], label="files/s")
        axes.set_ylabel("per second")
        axes.legend(loc="upper left", frameon=False)
        _time_axis(axes, when)

    return _draw(plot)


def hit_rates(index_runs: pd.DataFrame, caches: pd.DataFrame) -> str | None:
    """The embedding cache's hit rate in each index run, and each cache namespace's."""
    per_run = (
        index_runs.dropna(subset=["embedding_hit_rate"])
        if "embedding_hit_rate" in index_runs
        else index_runs.iloc[0:0]
    )
    if per_run.empty and caches.empty:
        return None
    with _figure(width=7.6) as figure:
        left, right = figure.subplots(1, 2, width_ratios=[3, 2])
        if not per_run.empty:
            when = _times(per_run["ts"])
            left.plot(when, per_run["embedding_hit_rate"] * 100, marker="o", ms=3,
                      color=COLOURS[2])  # fmt: skip
            _time_axis(left, when)
        left.set_title("embedding cache, per index run")
        left.set_ylim(0, 105)
        left.set_ylabel("hit rate (%)")
        if not caches.empty:
            right.barh(caches["namespace"], caches["hit_rate"] * 100, color=COLOURS[3])
        right.set_title("cache namespaces")
        right.set_xlim(0, 100)
        return _svg(figure)


def sandbox_outcomes(sandbox: pd.DataFrame) -> str | None:
    """Sandboxed runs per outcome."""
    if sandbox.empty:
        return None

    def plot(axes: Any) -> None:
        colours = [COLOURS[1] if s == "ok" else FAILED_COLOUR for s in sandbox["status"]]
        axes.bar(sandbox["status"], sandbox["runs"], color=colours)
        axes.set_ylabel("runs")

    return _draw(plot)
