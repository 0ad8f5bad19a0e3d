"""Prometheus metrics of one app (its own registry, so several apps share a process) and the
cache statistics the dashboard charts.

Cache statistics are read on demand by :func:`tasks.redis_io.aio.read_cache_stats`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from server.run_metrics import Histogram, RunMetrics

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

CacheStats = dict[str, dict[str, float]]


class _DeliveryCollector(Collector):
    """Frames sent and delivery latency, counted with plain integers on the hot path (one
    ``bisect`` per frame instead of a locked prometheus-client call: at 10,000 deliveries
    a second that difference is milliseconds of every broadcast)."""

    def __init__(self) -> None:
        self.sent = {"event": 0, "replay": 0, "control": 0}
        self.latency = Histogram(_LATENCY_BUCKETS)

    def collect(self) -> Iterator[Metric]:
        sent = CounterMetricFamily("codeflow_ws_messages_sent", "Frames sent", labels=["kind"])
        for kind, count in self.sent.items():
            sent.add_metric([kind], count)
        yield sent
        yield HistogramMetricFamily(
            "codeflow_ws_delivery_latency_seconds",
            "Event timestamp to frame written, live events only",
            buckets=self.latency.cumulative(),
            sum_value=self.latency.total,
        )


class _CacheCollector(Collector):
    """Each cache namespace's shared hit and miss counts (kept in Redis by every process
    using the cache) and hit rate, as last read."""

    def __init__(self) -> None:
        self.stats: CacheStats = {}

    def collect(self) -> Iterator[Metric]:
        rate = GaugeMetricFamily(
            "codeflow_cache_hit_rate", "Cache hits / lookups per namespace", labels=["namespace"]
        )
        hits = CounterMetricFamily("codeflow_cache_hits", "Cache hits", labels=["namespace"])
        misses = CounterMetricFamily("codeflow_cache_misses", "Cache misses", labels=["namespace"])
        for namespace, values in sorted(self.stats.items()):
            rate.add_metric([namespace], values.get("hit_rate", 0.0))
            hits.add_metric([namespace], values.get("hits", 0.0))
            misses.add_metric([namespace], values.get("misses", 0.0))
        yield from (rate, hits, misses)


class ServerMetrics:
    """Connections, messages, delivery latency, slow consumers, cache statistics and what
    runs did (:class:`~server.run_metrics.RunMetrics`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "codeflow_ws_connections", "Open WebSocket connections", registry=r
        )
        self._deliveries = _DeliveryCollector()
        r.register(self._deliveries)
        self.slow_consumers = Counter(
            "codeflow_ws_slow_consumers", "Clients disconnected for a full queue", registry=r
        )
        self.coalesced = Counter(
            "codeflow_ws_progress_coalesced", "Progress frames replaced by newer ones", registry=r
        )
        self.events_read = Counter(
            "codeflow_events_read", "Stream entries read by this process", registry=r
        )
        self._cache = _CacheCollector()
        r.register(self._cache)
        self.runs = RunMetrics()
        r.register(self.runs)

    def event_sent(self, ts: float | None) -> None:
        deliveries = self._deliveries
        deliveries.sent["event"] += 1
        if isinstance(ts, int | float):
            deliveries.latency.observe(max(0.0, time.time() - ts))

    def replayed_sent(self) -> None:
        self._deliveries.sent["replay"] += 1

    def control_sent(self) -> None:
        self._deliveries.sent["control"] += 1

    def update_cache(self, stats: CacheStats) -> None:
        self._cache.stats = {**self._cache.stats, **stats}

    def redis_outage(self) -> None:
        """This server could not reach Redis (its ``process`` label is ``serve``)."""
        self.runs.outage("serve")

    def render(self) -> bytes:
        return generate_latest(self.registry)
