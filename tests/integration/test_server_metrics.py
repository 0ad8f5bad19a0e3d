"""``/metrics`` counts what runs did from the events the server reads, and every panel of
the Grafana dashboard under ``deploy/`` queries metrics the server exports."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import tornado.httpclient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.server_fixtures import (
    ROOT,
    Client,
    Publisher,
    live_server,
    make_settings,
    run,
    seed_cache_stats,
    unique_stream,
)

DASHBOARD = ROOT / "deploy" / "grafana" / "codeflow.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def publish_history(publisher: Publisher) -> None:
    """Two index runs (one failed), an index summary, two sandbox results, an invalidation."""
    t0 = time.time() - 60
    await publisher.state("r1", "Running", ts=t0)
    await publisher.state("r1", "Completed", ts=t0 + 4.0)
    await publisher.state("r2", "Running", ts=t0 + 10)
    await publisher.state("r2", "Failed", ts=t0 + 40.0)
    await publisher.publish(
        "index.summary",
        flow_run_id="r1",
        flow_name="vectorize",
        files_changed=5,
        chunks_embedded=30,
        cache_hits=70,
        embedding_tokens=0,
        redis_errors=2,
    )
    await publisher.publish("sandbox.result", status="ok", duration_s=0.4, cached=False)
    await publisher.publish("sandbox.result", status="timeout", duration_s=5.0, cached=False)
    await publisher.publish(
        "cache.invalidated", namespace="search", strategy="tag", targets=["t"], count=1
    )


def scrape(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_runs_outcomes_and_invalidations(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    stream = unique_stream()
    seed_cache_stats(redis_url, namespace, hits=9, misses=1, sets=1)

    async def scenario() -> Samples:
        publisher = Publisher(redis_url, stream)
        async with live_server(make_settings(tmp_path), redis_url, stream) as server:
            client = await Client.connect(server.ws_url(server.token("cache")))
            await client.subscribe("cache")
            await publish_history(publisher)
            await client.events(1)  # the invalidation came last: everything was read
            reply = await tornado.httpclient.AsyncHTTPClient().fetch(server.url("/metrics"))
        await publisher.close()
        return scrape(reply.body.decode())

    samples = run(scenario())
    assert (
        samples[("codeflow_flow_runs_total", (("flow", "vectorize"), ("state", "Completed")))] == 1
    )
    assert samples[("codeflow_flow_runs_total", (("flow", "vectorize"), ("state", "Failed")))] == 1
    duration = (("flow", "vectorize"),)
    assert samples[("codeflow_flow_run_duration_seconds_count", duration)] == 2
    assert samples[("codeflow_flow_run_duration_seconds_sum", duration)] == 34.0
    le_5 = (("flow", "vectorize"), ("le", "5.0"))
    assert samples[("codeflow_flow_run_duration_seconds_bucket", le_5)] == 1
    assert samples[("codeflow_chunks_embedded_total", ())] == 30
    assert samples[("codeflow_embedding_cache_hits_total", ())] == 70
    assert samples[("codeflow_index_files_total", ())] == 5
    assert samples[("codeflow_sandbox_runs_total", (("cached", "no"), ("status", "timeout")))] == 1
    assert samples[("codeflow_sandbox_run_duration_seconds_count", ())] == 2
    assert samples[("codeflow_redis_outages_total", (("process", "vectorize"),))] == 2
    assert samples[("codeflow_cache_hits_total", (("namespace", namespace),))] == 9
    invalidation = (("namespace", "search"), ("strategy", "tag"))
    assert samples[("codeflow_cache_invalidations_total", invalidation)] == 1
    dashboard_metrics_exist(samples)


def dashboard_metrics_exist(samples: Samples) -> None:
    """Every metric a Grafana panel queries is one the server exported, and so is every
    label a panel groups or filters by."""
    exported: dict[str, set[str]] = {}
    for name, pairs in samples:
        exported.setdefault(name, set()).update(label for label, _ in pairs)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    for expr in exprs:
        names = re.findall(r"\bcodeflow_[a-z_]+", expr)
        assert names, expr
        for name in names:
            assert name in exported, f"{name} (in {expr!r}) is not exported"
        grouped = re.findall(r"by \(([^)]*)\)", expr) + re.findall(r"\{(\w+)=", expr)
        used = {label.strip() for group in grouped for label in group.split(",")} - {"le"}
        assert used <= set[str]().union(*(exported[n] for n in names)), expr
