"""Prometheus metrics (prometheus-client), one registry per app.

Per request (recorded once, when the request's log line is written): requests by
provider/route/status, time to first byte and duration histograms, upstream errors by kind.
Read at scrape time (no hot-path cost): in-flight and queued per provider, provider up/down.
No label ever carries a key or a client-chosen string: providers are registry ids, routes are the
route table's paths.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.edge.reqlog import RequestLog
from gateway.fleet.catalog import Catalog
from gateway.pools.lanes import Lanes
from gateway.usage.history import UsageHistory

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class _Live(Collector):
    def __init__(self, lanes: Lanes, catalog: Catalog, metrics: Metrics) -> None:
        self.lanes = lanes
        self.catalog = catalog
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "gateway_in_flight", "Requests being served, per provider.", labels=["provider"]
        )
        queued = GaugeMetricFamily(
            "gateway_queued", "Requests waiting in a provider's lane.", labels=["provider"]
        )
        for pid, lane in sorted(self.lanes.snapshot().items()):
            in_flight.add_metric([pid], lane.in_flight)
            queued.add_metric([pid], lane.queued)
        up = GaugeMetricFamily(
            "gateway_provider_up",
            "1 when the provider's last model-list refresh succeeded.",
            labels=["provider", "status"],
        )
        for state in self.catalog.states():
            status = self.catalog.status(state)
            up.add_metric([state.provider.id, status], 1.0 if status == "online" else 0.0)
        yield from (in_flight, queued, up)
        yield from self.metrics.token_families()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests",
            "Requests by provider, route and status.",
            ["provider", "route", "status"],
            registry=self.registry,
        )
        self.ttfb = Histogram(
            "gateway_time_to_first_byte_seconds",
            "Time to the first byte sent to the client.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Whole request duration (streams included).",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Upstream failures by kind.",
            ["provider", "kind"],
            registry=self.registry,
        )

        self.pool_choices = Counter(
            "gateway_pool_choices",
            "Pool members a request was sent to, by pool and why that member (choose.py).",
            ["pool", "reason"],
            registry=self.registry,
        )
        self.pool_failovers = Counter(
            "gateway_pool_failovers",
            "Pool members that failed before their reply began (the next member was tried).",
            ["pool", "provider"],
            registry=self.registry,
        )
        # token counters: the usage history's sums, exported at scrape time (no Counter, whose
        # lock per increment is most of its cost, on the request path)
        self.usage: UsageHistory | None = None
        self._choices: dict[tuple[str, str], Counter] = {}
        self._requests: dict[tuple[str, str, int | None], Counter] = {}
        self._latency: dict[str, tuple[Histogram, Histogram]] = {}

    def watch(self, lanes: Lanes, catalog: Catalog) -> None:
        self.registry.register(_Live(lanes, catalog, self))

    def observe(self, record: RequestLog, route: str, duration_s: float) -> None:
        provider = record.provider or ""
        key = (provider, route, record.status)
        counter = self._requests.get(key)
        if counter is None:  # labels() costs a few µs: look each label set up once
            counter = self._requests[key] = self.requests.labels(
                provider, route, str(record.status)
            )
        counter.inc()
        if record.provider is None:
            return
        histograms = self._latency.get(provider)
        if histograms is None:
            histograms = self._latency[provider] = (
                self.duration.labels(provider),
                self.ttfb.labels(provider),
            )
        histograms[0].observe(duration_s)
        if record.ttfb_ms is not None:
            histograms[1].observe(record.ttfb_ms / 1000)
        if record.error is not None and record.error.startswith(("upstream_", "gateway_shutdown")):
            self.upstream_errors.labels(provider, record.error).inc()
        elif record.disconnected:
            self.upstream_errors.labels(provider, "client_disconnected").inc()

    def pool_choice(self, pool: str, reason: str) -> None:
        """`pool` is a registry name or `any/<model>` of a model the catalog lists: bounded."""
        counter = self._choices.get((pool, reason))
        if counter is None:
            counter = self._choices[(pool, reason)] = self.pool_choices.labels(pool, reason)
        counter.inc()

    def token_families(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "gateway_tokens",
            "Tokens by machine, model (a model its list names; '' for any other) and kind: "
            "prompt (cached included), completion, cached (of the prompt, from the cache).",
            labels=["provider", "model", "kind"],
        )
        ratio = GaugeMetricFamily(
            "gateway_prompt_cache_ratio",
            "Share of prompt tokens a machine read from its prompt cache (replies that said).",
            labels=["provider"],
        )
        said: dict[str, list[int]] = {}
        totals = self.usage.totals() if self.usage is not None else {}
        for (provider, model), s in sorted(totals.items()):
            for kind, value in (("prompt", s.prompt), ("completion", s.completion),
                                ("cached", s.cached)):  # fmt: skip
                total.add_metric([provider, model, kind], value)
            mine = said.setdefault(provider, [0, 0])
            mine[0] += s.said_cached
            mine[1] += s.cached
        for provider, (of, cached) in said.items():
            if of:
                ratio.add_metric([provider], cached / of)
        yield from (total, ratio)

    def pool_failover(self, pool: str, provider: str) -> None:
        self.pool_failovers.labels(pool, provider).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
