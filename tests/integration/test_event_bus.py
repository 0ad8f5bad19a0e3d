"""The event bus against a real Redis stream."""

from __future__ import annotations

import pytest
import redis

from tasks.events.bus import EventBus
from tasks.events.model import make_event, rooms_for
from tests.redis_support import RedisProcess


def test_publish_then_read_after_an_id(redis_client: redis.Redis, stream_name: str) -> None:
    bus = EventBus(redis_client, stream=stream_name)
    ids = [
        bus.publish(make_event("progress", flow_run_id="r1", done=i, total=5, unit="files"))
        for i in range(5)
    ]
    assert all(ids)
    assert [e["done"] for _, e in bus.read()] == [0, 1, 2, 3, 4]
    assert [e["done"] for _, e in bus.read(after=str(ids[2]))] == [3, 4]
    assert bus.last_id() == ids[-1]
    assert redis_client.ttl(stream_name) > 0


def test_stream_is_capped(redis_client: redis.Redis, stream_name: str) -> None:
    bus = EventBus(redis_client, stream=stream_name, maxlen=100)
    for i in range(1000):
        bus.publish({"kind": "progress", "done": i})
    assert redis_client.xlen(stream_name) < 300
    assert bus.read(after="0-0", count=10_000)[-1][1]["done"] == 999


def test_event_shape_and_rooms() -> None:
    state = make_event(
        "flow_run.state", flow_run_id="abc", flow_name="vectorize", state="Running", repo_id="r9"
    )
    assert {"kind", "ts", "flow_run_id", "flow_name", "state"} <= state.keys()
    assert rooms_for(state) == ["runs", "run:abc", "repo:r9"]
    assert rooms_for(make_event("task_run.state", flow_run_id="abc", state="Retrying")) == [
        "run:abc"
    ]
    with pytest.raises(ValueError, match="unknown event kind"):
        make_event("nonsense")
    with pytest.raises(ValueError, match="unknown state"):
        make_event("flow_run.state", state="Exploded")
    for name in ("api_key", "OPENAI_API_KEY", "token", "auth_token", "password"):
        with pytest.raises(ValueError, match="secret"):
            make_event("progress", **{name: "sk-123"})
    assert make_event("index.summary", embedding_tokens=12)["embedding_tokens"] == 12


def test_publish_during_outage_drops_and_counts(private_redis: RedisProcess) -> None:
    client = redis.Redis.from_url(private_redis.url, socket_timeout=0.2)
    bus = EventBus(client, stream="s")
    assert bus.publish({"kind": "progress"}) is not None
    private_redis.kill()
    assert bus.publish({"kind": "progress"}) is None
    assert bus.counters["dropped"] == 1
    private_redis.start()
    assert bus.publish({"kind": "progress"}) is not None
