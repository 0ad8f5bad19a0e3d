"""Scheduled, Late and Pending flow runs on codeflow's event bus, before any code of theirs runs.

State hooks cannot say that a run is waiting: Prefect 3 has no ``on_scheduled`` or
``on_pending`` hook (hooks run in the flow's own process, which does not exist yet), and its
scheduler inserts a schedule's runs in bulk without emitting state events. So the realtime
server, when a Prefect server is configured, runs a :class:`StateRelay`:

- every ``interval_s`` it asks Prefect's API for runs that are Scheduled (or Late) to start
  within ``horizon_s``, or Pending;
- it follows Prefect's event stream (``/api/events/out``) for the brief Pending state a
  worker sets before a run starts, and for runs created scheduled through the API.

Each (run, state) is published once as a ``flow_run.state`` event, however many servers run
a relay: the first to claim it in Redis (``SET NX``, kept for a day) publishes it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tasks.events.model import Event, make_event
from tasks.redis_io import aio
from tasks.redis_io.formats import relay_key

log = logging.getLogger(__name__)

RELAYED = ("Scheduled", "Late", "Pending")
CLAIM_TTL_S = 86400
_MAX_BACKOFF_S = 60.0


def run_state_event(run: Any, flow_name: str | None, deployment: str | None = None) -> Event | None:
    """Our ``flow_run.state`` event for a Prefect flow run waiting to start (else ``None``)."""
    state = run.state
    if state is None or state.name not in RELAYED:
        return None
    expected = run.expected_start_time or state.state_details.scheduled_time
    return make_event(
        "flow_run.state",
        flow_run_id=str(run.id),
        flow_name=flow_name,
        flow_run_name=run.name,
        state=state.name,
        ts=_epoch(state.timestamp),
        deployment=deployment,
        expected_start=_epoch(expected),
    )


def prefect_event_state(event: Any) -> Event | None:
    """Our ``flow_run.state`` event for Prefect's ``prefect.flow-run.<State>`` event."""
    resource_id = str(event.resource.id)
    state = event.event.removeprefix("prefect.flow-run.")
    if not resource_id.startswith("prefect.flow-run.") or state not in RELAYED:
        return None
    related = {r.role: r.name for r in event.related}
    return make_event(
        "flow_run.state",
        flow_run_id=resource_id.removeprefix("prefect.flow-run."),
        flow_name=related.get("flow"),
        flow_run_name=event.resource.name,
        state=state,
        ts=_epoch(event.occurred),
        deployment=related.get("deployment"),
    )


def _epoch(moment: datetime.datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


@dataclass
class StateRelay:
    """Publishes waiting flow runs to ``stream`` through the async Redis ``client``."""

    client: aio.Client
    stream: str
    maxlen: int = 100_000
    interval_s: float = 2.0
    horizon_s: float = 3600.0
    _flow_names: dict[str, str] = field(default_factory=dict)

    async def run(self) -> None:
        """Poll and follow until cancelled; outages of Prefect or Redis are retried."""
        await asyncio.gather(
            self._forever(self.poll_once, "polling Prefect's API"),
            self._forever(self.follow_events, "following Prefect's events"),
        )

    async def announce(self, events: Iterable[Event]) -> int:
        """Publish each event whose (run, state) no relay published yet; returns how many."""
        published = 0
        for event in events:
            claim = relay_key(event["flow_run_id"], event["state"])
            published += await aio.publish_once(
                self.client, claim, self.stream, event, maxlen=self.maxlen, ttl_s=CLAIM_TTL_S
            )
        return published

    async def poll_once(self) -> int:
        """Announce the runs Prefect's API lists as waiting; returns how many were new."""
        from prefect.client.orchestration import get_client

        async with get_client() as prefect:
            runs = await prefect.read_flow_runs(flow_run_filter=self._waiting(), limit=200)
            names = await self._names_of(prefect, {str(r.flow_id) for r in runs})
        events = (run_state_event(r, names.get(str(r.flow_id))) for r in runs)
        published = await self.announce(e for e in events if e is not None)
        await asyncio.sleep(self.interval_s)
        return published

    async def follow_events(self) -> None:
        """Announce Prefect's waiting-state events as they arrive."""
        from prefect.events.clients import PrefectEventSubscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        names = [f"prefect.flow-run.{state}" for state in RELAYED]
        wanted = EventFilter(event=EventNameFilter(name=names))
        async with PrefectEventSubscriber(filter=wanted, reconnect_on_clean_close=True) as events:
            async for event in events:
                found = prefect_event_state(event)
                if found is not None:
                    await self.announce([found])

    def _waiting(self) -> Any:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterExpectedStartTime,
            FlowRunFilterState,
            FlowRunFilterStateName,
        )

        until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self.horizon_s)
        return FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=list(RELAYED))),
            expected_start_time=FlowRunFilterExpectedStartTime.model_validate({"before_": until}),
        )

    async def _names_of(self, prefect: Any, flow_ids: set[str]) -> dict[str, str]:
        from prefect.client.schemas.filters import FlowFilter, FlowFilterId

        unknown = [uuid.UUID(i) for i in flow_ids if i not in self._flow_names]
        if unknown:
            flows = await prefect.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=unknown)))
            self._flow_names.update((str(f.id), f.name) for f in flows)
        return self._flow_names

    async def _forever(self, step: Any, what: str) -> None:
        backoff = 1.0
        while True:
            try:
                await step()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Prefect or Redis away: say so once per wait, retry
                log.warning("state relay: %s failed (%s); retrying in %.0f s", what, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
