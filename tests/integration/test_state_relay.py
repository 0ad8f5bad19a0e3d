"""The relay of waiting flow runs: Prefect's API (the session's temporary Prefect server) and
Prefect's own objects in, ``flow_run.state`` events on a real Redis stream out, each once."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from prefect.client.schemas.objects import FlowRun
from prefect.events.schemas.events import Event as PrefectEvent
from prefect.states import Completed, Late, Pending, Scheduled

from tasks.events.bus import EventBus
from tasks.pipeline.prefect_states import StateRelay, prefect_event_state, run_state_event
from tests.integration.server_fixtures import unique_stream

LATER = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=20)


@pytest.fixture
def stream(redis_url: str) -> Iterator[str]:
    name = unique_stream()
    yield name
    redis.Redis.from_url(redis_url).unlink(name)


def relayed(redis_url: str, stream: str) -> list[dict[str, Any]]:
    return [e for _, e in EventBus(redis.Redis.from_url(redis_url), stream=stream).read()]


def test_a_waiting_run_becomes_a_state_event() -> None:
    run = FlowRun(id=uuid.uuid4(), name="brisk-otter", flow_id=uuid.uuid4(), state=Scheduled(
        scheduled_time=LATER))  # fmt: skip
    event = run_state_event(run, "sync_repositories", "sync_repositories/sync")
    assert event is not None
    assert (event["flow_run_id"], event["state"], event["flow_name"]) == (
        str(run.id),
        "Scheduled",
        "sync_repositories",
    )
    assert event["expected_start"] == pytest.approx(LATER.timestamp())
    assert event["deployment"] == "sync_repositories/sync"
    late = FlowRun(flow_id=uuid.uuid4(), state=Late(scheduled_time=LATER))
    assert run_state_event(late, None) is not None
    assert run_state_event(FlowRun(flow_id=uuid.uuid4(), state=Completed()), "f") is None


def test_prefects_pending_event_becomes_a_state_event() -> None:
    run_id = uuid.uuid4()
    pending = PrefectEvent.model_validate({
        "event": "prefect.flow-run.Pending",
        "resource": {"prefect.resource.id": f"prefect.flow-run.{run_id}",
                     "prefect.resource.name": "calm-heron"},
        "related": [{"prefect.resource.id": f"prefect.flow.{uuid.uuid4()}",
                     "prefect.resource.role": "flow", "prefect.resource.name": "vectorize_source"}],
    })  # fmt: skip
    event = prefect_event_state(pending)
    assert event is not None
    assert (event["flow_run_id"], event["state"], event["flow_name"]) == (
        str(run_id),
        "Pending",
        "vectorize_source",
    )
    assert event["flow_run_name"] == "calm-heron"
    running = pending.model_copy(update={"event": "prefect.flow-run.Running"})
    assert prefect_event_state(running) is None  # the flow's own hooks publish that


def test_two_relays_publish_each_state_once(redis_url: str, stream: str) -> None:
    run_id = str(uuid.uuid4())
    states = [{"kind": "flow_run.state", "flow_run_id": run_id, "state": s, "ts": 1.0}
              for s in ("Scheduled", "Pending", "Scheduled")]  # fmt: skip

    async def scenario() -> list[int]:
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
        relays = [StateRelay(c, stream) for c in clients]
        counts = await asyncio.gather(*(r.announce(states) for r in relays))
        for client in clients:
            await client.aclose()
        return list(counts)

    assert sum(asyncio.run(scenario())) == 2  # between them, once each
    assert [e["state"] for e in relayed(redis_url, stream)] == ["Scheduled", "Pending"]


@pytest.mark.usefixtures("prefect_harness")
def test_polling_prefect_announces_a_scheduled_run_before_it_starts(
    redis_url: str, stream: str
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    @flow(name="relay-probe")
    def probe() -> None:
        pass

    async def scenario() -> tuple[str, int, int]:
        async with get_client() as prefect:
            run = await prefect.create_flow_run(probe, state=Scheduled(scheduled_time=LATER))
            soon = await prefect.create_flow_run(probe, state=Pending())
            client = aioredis.Redis.from_url(redis_url)
            relay = StateRelay(client, stream, interval_s=0)
            try:
                first, again = await relay.poll_once(), await relay.poll_once()
            finally:
                await client.aclose()
                for made in (run, soon):
                    await prefect.delete_flow_run(made.id)
        return str(run.id), first, again

    run_id, first, again = asyncio.run(scenario())
    assert first >= 2 and again == 0
    mine = [e for e in relayed(redis_url, stream) if e["flow_run_id"] == run_id]
    assert [(e["state"], e["flow_name"]) for e in mine] == [("Scheduled", "relay-probe")]
    assert mine[0]["expected_start"] == pytest.approx(LATER.timestamp())
