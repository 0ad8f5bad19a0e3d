"""The Prefect automation that gives a lost run to another worker.

A worker that dies (its container killed, its machine gone) leaves its flow run ``Running``
for ever: nothing is left to report the end. Workers emit a heartbeat every
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (30 in ``docker-compose.yml``); this automation
watches them, and a run that misses them for :data:`SILENCE_S` is set back to ``Scheduled``
(named ``AwaitingRetry``), so the next free worker runs it again. The vectorize flow is
resumable (pending IDs are written ahead, the manifest is committed last), so the second
attempt ends with the same index as an uninterrupted run.

A run that keeps losing its workers (say, a program that exhausts the machine) is not
rescheduled for ever: codeflow's flows call :func:`refuse_repeated_start` first, and fail
from their :data:`MAX_ATTEMPTS` + 1-th start on.

Run once against a server, after the deployments exist (the compose stack's ``deploy``
service does)::

    python -m flows.automations
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from config.errors import RunAbandoned

if TYPE_CHECKING:
    from prefect.automations import Automation

NAME = "codeflow: reschedule runs whose worker was lost"
SILENCE_S = 90  # three missed heartbeats
MAX_ATTEMPTS = 3
_ENDS = ("Completed", "Failed", "Cancelled", "Crashed")


def refuse_repeated_start(run_count: int) -> None:
    """Raise :class:`RunAbandoned` when a flow run starts for more than the
    :data:`MAX_ATTEMPTS`-th time (``run_count``: Prefect's, 1 on the first start).

    >>> refuse_repeated_start(3)
    >>> refuse_repeated_start(4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    config.errors.RunAbandoned: this run already started 3 times (...
    """
    if run_count > MAX_ATTEMPTS:
        raise RunAbandoned(
            f"this run already started {run_count - 1} times (its workers were lost, or it "
            "was retried); it stops here: start a new run of the deployment",
            attempts=run_count,
        )


def lost_run_automation() -> Automation:
    """The automation, not yet saved."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    trigger = EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{end}" for end in _ENDS)},
        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=SILENCE_S),
    )
    action = ChangeFlowRunState(
        state=StateType.SCHEDULED,
        name="AwaitingRetry",
        force=True,  # from Running, which orchestration would otherwise refuse
        message=f"no heartbeat for {SILENCE_S} s: its worker was lost; run again elsewhere",
    )
    return Automation(name=NAME, trigger=trigger, actions=[action])


async def ensure_lost_run_automation() -> str:
    """Create the automation unless one of that name exists; returns its ID."""
    from prefect.automations import Automation

    try:
        existing = await Automation.aread(name=NAME)
    except ValueError:  # none of that name
        existing = await lost_run_automation().acreate()
    return str(existing.id)


if __name__ == "__main__":
    print(f"automation {NAME!r}: {asyncio.run(ensure_lost_run_automation())}")
