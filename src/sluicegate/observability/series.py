"""Counters and histograms for the per-call metrics: plain numbers, formatted at scrape time.

prometheus_client's own ``Counter`` and ``Histogram`` take a lock and check their
labels on every update: about 18 µs of a call's CPU for the ten updates a call
makes, measured under load. These are updated only from the event loop's thread
(``Record`` runs there, stream ends too, and so does the ``/metrics`` route that
reads them), so they need no lock: an update is a dict lookup and a float add, a
histogram's a ``bisect`` more. prometheus_client still writes the exposition, from
``CounterMetricFamily`` and ``HistogramMetricFamily`` built when Prometheus scrapes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CounterVec", "HistogramVec"]

Key = tuple[str, ...]


class CounterVec(Collector):
    """A counter family; ``inc(key)`` with the label values in ``labelnames`` order."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.values: dict[Key, float] = {}
        if registry is not None:
            registry.register(self)

    def inc(self, key: Key, amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, value in list(self.values.items()):
            family.add_metric(key, value)
        yield family


class HistogramVec(Collector):
    """A histogram family: per label set, a count per bucket (the last one +Inf) and a sum."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError(f"{name}: buckets must increase")
        self.series: dict[Key, list[float]] = {}
        if registry is not None:
            registry.register(self)

    def observe(self, key: Key, value: float) -> None:
        counts = self.series.get(key)
        if counts is None:
            # One count per bound, one for +Inf, then the sum.
            counts = self.series[key] = [0.0] * (len(self.bounds) + 2)
        # The first bound >= value: Prometheus buckets are "less than or equal".
        counts[bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        names = [_bound(b) for b in self.bounds] + ["+Inf"]
        for key, counts in list(self.series.items()):
            cumulative = 0.0
            buckets = []
            for name, count in zip(names, counts, strict=False):
                cumulative += count
                buckets.append((name, cumulative))
            family.add_metric(list(key), buckets, counts[-1])
        yield family


def _bound(value: float) -> str:
    # As prometheus_client writes them: "0.005", "1.0", "300.0".
    return repr(float(value))
