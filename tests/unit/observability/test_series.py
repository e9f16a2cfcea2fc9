"""observability/series: the same exposition as prometheus_client's own metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sluicegate.observability.series import CounterVec, HistogramVec

BUCKETS = (0.005, 0.01, 0.5, 1, 2.5)
VALUES = [0.0, 0.005, 0.0051, 0.01, 0.3, 0.5, 1, 2.5, 2.6, 300.0]


def _without_created(text: bytes) -> list[str]:
    # prometheus_client adds a "_created" timestamp per series; ours has none.
    return [line for line in text.decode().splitlines() if "_created" not in line]


def test_counters_and_histograms_read_as_prometheus_clients_own() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = CounterVec("calls", "Calls", ["route", "status"], registry=ours)
    reference = Counter("calls", "Calls", ["route", "status"], registry=theirs)
    histogram = HistogramVec("wait_seconds", "Wait", ["model"], BUCKETS, registry=ours)
    reference_h = Histogram("wait_seconds", "Wait", ["model"], buckets=BUCKETS, registry=theirs)
    for route, status, amount in [("chat", "200", 1), ("chat", "200", 2), ("embed", "429", 1)]:
        counter.inc((route, status), amount)
        reference.labels(route, status).inc(amount)
    for model in ("a", "b"):
        for value in VALUES if model == "a" else VALUES[:3]:
            histogram.observe((model,), value)
            reference_h.labels(model).observe(value)
    assert _without_created(generate_latest(ours)) == _without_created(generate_latest(theirs))


def test_a_value_on_a_bound_counts_in_that_bucket() -> None:
    histogram = HistogramVec("h", "H", [], (1, 2))
    for value in (1.0, 2.0, 2.0001):
        histogram.observe((), value)
    assert histogram.series[()] == [1.0, 1.0, 1.0, 5.0001]


def test_buckets_must_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        HistogramVec("h", "H", [], (1, 1, 2))
