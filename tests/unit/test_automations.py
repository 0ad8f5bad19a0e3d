"""The lost-run automation's shape and the bound on a run's starts (no server needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config.errors import RunAbandoned
from flows.automations import MAX_ATTEMPTS, SILENCE_S, lost_run_automation, refuse_repeated_start


def test_a_run_may_start_up_to_the_bound() -> None:
    for count in range(1, MAX_ATTEMPTS + 1):
        refuse_repeated_start(count)


def test_a_run_past_the_bound_fails_with_its_count() -> None:
    with pytest.raises(RunAbandoned, match="already started 3 times") as caught:
        refuse_repeated_start(MAX_ATTEMPTS + 1)
    assert caught.value.attempts == MAX_ATTEMPTS + 1


def test_the_automation_reschedules_runs_whose_heartbeats_stop() -> None:
    automation = lost_run_automation()
    trigger = automation.trigger.model_dump()
    assert trigger["posture"] == "Proactive"
    assert trigger["after"] == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed"} <= trigger["expect"]
    assert trigger["for_each"] == {"prefect.resource.id"}
    assert trigger["within"] == timedelta(seconds=SILENCE_S)
    (action,) = (a.model_dump() for a in automation.actions)
    assert action["type"] == "change-flow-run-state"
    shown = (action["state"].value, action["name"], action["force"])
    assert shown == ("SCHEDULED", "AwaitingRetry", True)
