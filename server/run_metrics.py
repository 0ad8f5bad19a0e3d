"""What runs did, as Prometheus metrics, counted from the events this server reads.

Every server process reads the whole event stream, so each one counts every run from the
moment it started (counters start at zero with the process, as Prometheus expects). Several
servers behind a load balancer each count the same runs: query one instance, or ``max`` over
instances, never ``sum``.

>>> metrics = RunMetrics()
>>> metrics.observe({"kind": "sandbox.result", "status": "timeout", "duration_s": 5.0})
>>> metrics.sandbox_runs[("timeout", "no")]
1
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from tasks.reports.history import TERMINAL

#: Flow-run durations in seconds: from a second (a no-op index) to an hour (a cold monorepo).
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SANDBOX_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OPEN_RUNS = 10_000  # start times kept for runs not finished yet (the oldest go first)

Event = Mapping[str, Any]


class Histogram:
    """Bucket counts and a sum, kept with plain numbers (no lock on the event path)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        bounds = [*map(floatToGoString, self.bounds), "+Inf"]
        running, out = 0, list[tuple[str, float]]()
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class RunMetrics(Collector):
    """Flow runs by flow and final state with their durations, chunks embedded, embedding
    cache hits, sandbox outcomes, cache invalidations and Redis outages by process."""

    def __init__(self) -> None:
        self.flow_runs: Counter[tuple[str, ...]] = Counter()
        self.durations: dict[str, Histogram] = {}
        self.sandbox_runs: Counter[tuple[str, ...]] = Counter()
        self.sandbox_seconds = Histogram(SANDBOX_BUCKETS)
        self.index: Counter[str] = Counter()
        self.invalidations: Counter[tuple[str, ...]] = Counter()
        self.redis_outages: Counter[str] = Counter()
        self._started: OrderedDict[str, float] = OrderedDict()
        self._observers: dict[str, Callable[[Event], None]] = {
            "flow_run.state": self._flow_state,
            "index.summary": self._index_summary,
            "sandbox.result": self._sandbox_result,
            "cache.invalidated": self._invalidated,
        }

    def observe(self, event: Event) -> None:
        observer = self._observers.get(event.get("kind", ""))
        if observer is not None:
            observer(event)

    def outage(self, process: str) -> None:
        """This process (``process``: a label such as ``serve``) could not reach Redis."""
        self.redis_outages[process] += 1

    def _flow_state(self, event: Event) -> None:
        run, state, ts = event.get("flow_run_id"), event.get("state"), event.get("ts")
        if not isinstance(run, str) or not isinstance(ts, int | float):
            return
        if state == "Running":
            self._started.setdefault(run, float(ts))
            while len(self._started) > _OPEN_RUNS:
                self._started.popitem(last=False)
        elif state in TERMINAL:
            flow = str(event.get("flow_name") or "unknown")
            self.flow_runs[(flow, str(state))] += 1
            started = self._started.pop(run, None)
            if started is not None:
                self.durations.setdefault(flow, Histogram(DURATION_BUCKETS)).observe(
                    max(0.0, ts - started)
                )

    def _index_summary(self, event: Event) -> None:
        for field in ("files_changed", "chunks_embedded", "cache_hits", "embedding_tokens"):
            value = event.get(field)
            if isinstance(value, int) and value > 0:
                self.index[field] += value
        errors = event.get("redis_errors")
        if isinstance(errors, int) and errors > 0:
            self.redis_outages[str(event.get("flow_name") or "index")] += errors

    def _sandbox_result(self, event: Event) -> None:
        cached = "yes" if event.get("cached") else "no"
        self.sandbox_runs[(str(event.get("status") or "unknown"), cached)] += 1
        duration = event.get("duration_s")
        if isinstance(duration, int | float) and not event.get("cached"):
            self.sandbox_seconds.observe(float(duration))

    def _invalidated(self, event: Event) -> None:
        key = (str(event.get("namespace") or ""), str(event.get("strategy") or ""))
        self.invalidations[key] += 1

    def collect(self) -> Iterator[Metric]:
        yield _labelled(
            "codeflow_flow_runs", "Flow runs that ended, by flow and final state",
            ["flow", "state"], self.flow_runs,
        )  # fmt: skip
        durations = HistogramMetricFamily(
            "codeflow_flow_run_duration_seconds",
            "Flow-run durations, Running to final state",
            labels=["flow"],
        )
        for flow, histogram in self.durations.items():
            durations.add_metric([flow], histogram.cumulative(), histogram.total)
        yield durations
        yield from self._index_metrics()
        yield _labelled(
            "codeflow_sandbox_runs", "Sandboxed runs by status and whether the result was cached",
            ["status", "cached"], self.sandbox_runs,
        )  # fmt: skip
        yield HistogramMetricFamily(
            "codeflow_sandbox_run_duration_seconds",
            "Sandboxed runs' durations (results not from the cache)",
            buckets=self.sandbox_seconds.cumulative(),
            sum_value=self.sandbox_seconds.total,
        )
        yield _labelled(
            "codeflow_cache_invalidations", "Cache invalidations by namespace and strategy",
            ["namespace", "strategy"], self.invalidations,
        )  # fmt: skip
        yield _labelled(
            "codeflow_redis_outages", "Redis calls that met an outage, by process",
            ["process"], {(k,): v for k, v in self.redis_outages.items()},
        )  # fmt: skip

    def _index_metrics(self) -> Iterator[Metric]:
        described = {
            "files_changed": ("codeflow_index_files", "Files indexed (added or changed)"),
            "chunks_embedded": ("codeflow_chunks_embedded", "Chunks embedded by index runs"),
            "cache_hits": ("codeflow_embedding_cache_hits", "Chunks whose vector was cached"),
            "embedding_tokens": ("codeflow_embedding_tokens", "Tokens sent to the embedder"),
        }
        for field, (name, documentation) in described.items():
            yield CounterMetricFamily(name, documentation, value=self.index[field])


def _labelled(
    name: str, documentation: str, labels: list[str], counts: Mapping[tuple[str, ...], int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in sorted(counts.items()):
        family.add_metric(list(values), count)
    return family
