"""The progress line of ``codeflow index``."""

from __future__ import annotations

import io

from flows.cli.progress import ProgressView, render_unit


def test_a_unit_shows_its_rate_and_eta_once_it_has_run_a_while() -> None:
    line = render_unit("chunks", 500, 1000, first=10.0, now=12.0)
    assert line == "chunks 500/1000 [##########..........] 250/s ETA 2s"


def test_events_arriving_together_give_no_absurd_rate() -> None:
    assert render_unit("files", 3200, 5336, first=10.0, now=10.001) == (
        "files 3200/5336 [###########.........]"
    )


def test_the_view_draws_only_its_own_runs_progress() -> None:
    out = io.StringIO()
    view = ProgressView("mine", out=out)
    view.on_event({"kind": "progress", "trace_id": "other", "unit": "files", "done": 1, "total": 2})
    view.on_event({"kind": "progress", "trace_id": "mine", "unit": "files", "done": 2, "total": 4})
    view.stop()
    assert out.getvalue().splitlines()[-1].startswith("files 2/4 [##########")
