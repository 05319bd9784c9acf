"""Prometheus metrics. Counters are read from the broker at scrape time, so the
fan-out path pays for nothing but one histogram observation per publish."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broadcaster.fanout.broker import Broker
from broadcaster.ops.lag import LoopLag

FANOUT_BUCKETS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)
LATENESS_BUCKETS = (5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    """One registry per app, so that several apps in one process never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.fanout_seconds = Histogram(
            "broadcaster_fanout_seconds",
            "Time to offer one published event to every matching subscriber",
            buckets=FANOUT_BUCKETS,
            registry=self.registry,
        )

        self.tick_lateness_seconds = Histogram(
            "broadcaster_tick_lateness_seconds",
            "How late each ticker message ran against its schedule: event loop stalls",
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )

        self.publish_wait_seconds = Histogram(
            "broadcaster_publish_wait_seconds",
            "How long each publish request waited for its turn since its bytes came: behind"
            " pipelined requests, or the loop's lateness",
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )
        self.publish_throttled = Counter(
            "broadcaster_publish_throttled",
            "Publish requests refused with 503 because their wait (behind pipelined requests,"
            " or the loop's lateness) passed --max-publish-lag-ms",
            registry=self.registry,
        )

    def observe_tick_lateness(self, seconds: float) -> None:
        self.tick_lateness_seconds.observe(seconds)

    def observe_fanout(self, seconds: float) -> None:
        self.fanout_seconds.observe(seconds)

    def watch(self, broker: Broker) -> None:
        self.registry.register(BrokerCollector(broker))

    def watch_lag(self, lag: LoopLag) -> None:
        self.registry.register(LagCollector(lag))

    def watch_refusals(self, refusals: Mapping[str, int]) -> None:
        """Token refusals by reason: the keys are a closed set (`auth.tokens.REASONS`)."""
        self.registry.register(RefusalCollector(refusals))


class RefusalCollector(Collector):
    def __init__(self, refusals: Mapping[str, int]) -> None:
        self._refusals = refusals

    def collect(self) -> Iterable[Metric]:
        counter = CounterMetricFamily(
            "broadcaster_auth_refusals",
            "Requests refused for their token, by reason",
            labels=["reason"],
        )
        for reason, count in self._refusals.items():
            counter.add_metric([reason], count)
        yield counter


class LagCollector(Collector):
    def __init__(self, lag: LoopLag) -> None:
        self._lag = lag

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "broadcaster_publish_lag_seconds",
            "How late the event loop runs now, while publishing goes on (0 a second after the"
            " last publish); one of the two waits --max-publish-lag-ms bounds, the other is"
            " broadcaster_publish_wait_seconds",
            value=self._lag.seconds(),
        )


class BrokerCollector(Collector):
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def collect(self) -> Iterable[Metric]:
        broker, stats = self._broker, self._broker.stats
        yield GaugeMetricFamily(
            "broadcaster_clients", "Connected SSE clients", value=broker.client_count
        )
        yield GaugeMetricFamily(
            "broadcaster_publish_backlog",
            "Events published and not fanned out yet: held for a batch, or on their way"
            " to the store",
            value=broker.backlog(),
        )
        published = CounterMetricFamily(
            "broadcaster_events_published", "Events published, by topic", labels=["topic"]
        )
        for topic, count in sorted(stats.published.items()):
            published.add_metric([topic], count)
        yield published
        yield CounterMetricFamily(
            "broadcaster_deliveries", "Frames offered to subscribers", value=stats.deliveries
        )
        yield CounterMetricFamily(
            "broadcaster_evictions", "Subscribers evicted for a full queue", value=stats.evictions
        )
        yield CounterMetricFamily(
            "broadcaster_replays", "Reconnects served from history", value=stats.replays
        )
        yield CounterMetricFamily(
            "broadcaster_resyncs", "Reconnects told to resync", value=stats.resyncs
        )
