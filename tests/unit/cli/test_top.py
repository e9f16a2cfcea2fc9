"""``sluicegate top``'s arithmetic: rates and quantiles from two crafted scrapes."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from rich.console import Console

from sluicegate.cli.top import render
from sluicegate.observability.metrics import LATENCY_BUCKETS
from sluicegate.observability.rates import (
    Figures,
    NotMetrics,
    compute,
    histogram_quantile,
    parse,
)

INF = math.inf


def test_quantile_interpolates_inside_the_bucket_the_rank_falls_in() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (INF, 40.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)  # rank 20: half of (0.1, 0.5]
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.9)  # rank 38: 8/10 of (0.5, 1]
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.04)  # the first bucket from 0
    assert histogram_quantile(1.0, buckets) == pytest.approx(1.0)
    assert histogram_quantile(0.0, buckets) == 0.0
    assert histogram_quantile(0.5, reversed(buckets)) == pytest.approx(0.3)


def test_a_rank_past_the_last_finite_bound_answers_that_bound() -> None:
    assert histogram_quantile(0.95, [(0.1, 1.0), (0.5, 2.0), (INF, 10.0)]) == 0.5


def test_nothing_to_measure_is_none() -> None:
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.5, [(INF, 3.0)]) is None  # no finite bound to interpolate to
    assert histogram_quantile(0.5, [(0.1, 3.0), (1.0, 3.0)]) is None  # no +Inf bucket
    with pytest.raises(ValueError):
        histogram_quantile(1.5, [(0.1, 1.0), (INF, 1.0)])


def test_counts_that_dip_are_made_monotonic() -> None:
    # A bucket delta one short of the bucket below it (a scrape landing mid-update).
    assert histogram_quantile(0.5, [(0.1, 5.0), (0.5, 4.0), (INF, 10.0)]) == pytest.approx(0.1)


def test_quantiles_of_a_real_prometheus_histogram() -> None:
    registry = CollectorRegistry()
    latency = Histogram(
        "sluicegate_request_duration_seconds",
        "",
        ["route", "model"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    before = parse(generate_latest(registry).decode())
    for _ in range(80):
        latency.labels("chat", "m").observe(0.2)  # (0.1, 0.25]
    for _ in range(20):
        latency.labels("embeddings", "m").observe(3.0)  # (2.5, 5]
    figures = compute(before, parse(generate_latest(registry).decode()), 10.0)
    (model,) = figures.models
    assert model.p50_seconds == pytest.approx(0.1 + 0.15 * 50 / 80)
    assert model.p95_seconds == pytest.approx(2.5 + 2.5 * 15 / 20)


BEFORE = """\
# TYPE sluicegate_requests_total counter
sluicegate_requests_total{route="chat",model="m",deployment="m-a",org="-",status="200"} 100
sluicegate_requests_total{route="chat",model="m",deployment="m-a",org="-",status="503"} 7
sluicegate_requests_total{route="chat",model="big",deployment="big-1",org="acme",status="200"} 50
# TYPE sluicegate_request_duration_seconds histogram
sluicegate_request_duration_seconds_bucket{route="chat",model="m",le="0.1"} 0
sluicegate_request_duration_seconds_bucket{route="chat",model="m",le="1.0"} 0
sluicegate_request_duration_seconds_bucket{route="chat",model="m",le="+Inf"} 107
sluicegate_request_duration_seconds_count{route="chat",model="m"} 107
sluicegate_request_duration_seconds_sum{route="chat",model="m"} 2000
# TYPE sluicegate_tokens_total counter
sluicegate_tokens_total{model="m",org="-",kind="prompt"} 1000
sluicegate_tokens_total{model="m",org="-",kind="completion"} 400
# TYPE sluicegate_cost_usd_total counter
sluicegate_cost_usd_total{model="m",org="-"} 1.5
# TYPE sluicegate_refusals_total counter
sluicegate_refusals_total{code="rate_limit_exceeded"} 4
# TYPE sluicegate_usage_events_dropped_total counter
sluicegate_usage_events_dropped_total 2
# TYPE sluicegate_usage_events_written_total counter
sluicegate_usage_events_written_total 150
# TYPE sluicegate_usage_events_pending gauge
sluicegate_usage_events_pending 0
"""

# Ten seconds later: "big" restarted its counter (a gateway restart), "m" served 20
# calls, 2 of them 5xx, all fast; a refusal code appears; scrapes and admin calls
# (no model calls) are left out.
AFTER = """\
# TYPE sluicegate_requests_total counter
sluicegate_requests_total{route="chat",model="m",deployment="m-a",org="-",status="200"} 114
sluicegate_requests_total{route="chat",model="m",deployment="m-b",org="-",status="200"} 4
sluicegate_requests_total{route="chat",model="m",deployment="m-a",org="-",status="503"} 9
sluicegate_requests_total{route="chat",model="big",deployment="big-1",org="acme",status="200"} 3
sluicegate_requests_total{route="chat",model="-",deployment="-",org="-",status="404"} 1
sluicegate_requests_total{route="metrics",model="-",deployment="-",org="-",status="200"} 30
sluicegate_requests_total{route="admin",model="-",deployment="-",org="-",status="500"} 2
# TYPE sluicegate_request_duration_seconds histogram
sluicegate_request_duration_seconds_bucket{route="chat",model="m",le="0.1"} 10
sluicegate_request_duration_seconds_bucket{route="chat",model="m",le="1.0"} 20
sluicegate_request_duration_seconds_bucket{route="chat",model="m",le="+Inf"} 127
sluicegate_request_duration_seconds_count{route="chat",model="m"} 127
sluicegate_request_duration_seconds_sum{route="chat",model="m"} 2008
sluicegate_request_duration_seconds_bucket{route="metrics",model="-",le="0.1"} 30
sluicegate_request_duration_seconds_bucket{route="metrics",model="-",le="+Inf"} 30
# TYPE sluicegate_time_to_first_token_seconds histogram
sluicegate_time_to_first_token_seconds_bucket{model="m",le="0.25"} 4
sluicegate_time_to_first_token_seconds_bucket{model="m",le="0.5"} 4
sluicegate_time_to_first_token_seconds_bucket{model="m",le="+Inf"} 4
# TYPE sluicegate_tokens_total counter
sluicegate_tokens_total{model="m",org="-",kind="prompt"} 1500
sluicegate_tokens_total{model="m",org="-",kind="completion"} 600
# TYPE sluicegate_cost_usd_total counter
sluicegate_cost_usd_total{model="m",org="-"} 1.75
# TYPE sluicegate_failovers_total counter
sluicegate_failovers_total{model="m"} 2
# TYPE sluicegate_refusals_total counter
sluicegate_refusals_total{code="rate_limit_exceeded"} 4
sluicegate_refusals_total{code="budget_exceeded"} 3
# TYPE sluicegate_in_flight gauge
sluicegate_in_flight 5
# TYPE sluicegate_queue_depth gauge
sluicegate_queue_depth{model="m"} 3
sluicegate_queue_depth{model="big"} 0
# TYPE sluicegate_deployment_healthy gauge
sluicegate_deployment_healthy{model="m",deployment="m-a"} 1
sluicegate_deployment_healthy{model="m",deployment="m-b"} 0
sluicegate_deployment_healthy{model="big",deployment="big-1"} 1
# TYPE sluicegate_deployment_in_flight gauge
sluicegate_deployment_in_flight{model="m",deployment="m-a"} 4
sluicegate_deployment_in_flight{model="m",deployment="m-b"} 0
sluicegate_deployment_in_flight{model="big",deployment="big-1"} 1
# TYPE sluicegate_breaker_state gauge
sluicegate_breaker_state{deployment="m-a",state="closed"} 1
sluicegate_breaker_state{deployment="m-a",state="open"} 0
sluicegate_breaker_state{deployment="m-b",state="closed"} 0
sluicegate_breaker_state{deployment="m-b",state="open"} 1
# TYPE sluicegate_usage_events_dropped_total counter
sluicegate_usage_events_dropped_total 5
# TYPE sluicegate_usage_events_written_total counter
sluicegate_usage_events_written_total 170
# TYPE sluicegate_usage_events_pending gauge
sluicegate_usage_events_pending 6
# TYPE sluicegate_key_directory_available gauge
sluicegate_key_directory_available 0
"""


def _figures() -> Figures:
    return compute(parse(BEFORE), parse(AFTER), 10.0)


def test_rates_are_the_increase_over_the_seconds_between_scrapes() -> None:
    figures = _figures()
    models = {m.model: m for m in figures.models}
    assert list(models) == ["-", "big", "m"]
    m = models["m"]
    assert m.requests == 20 and m.requests_per_s == pytest.approx(2.0)
    assert m.by_class == {"2xx": 18, "5xx": 2}
    assert m.error_percent == pytest.approx(10.0)
    assert m.prompt_tokens_per_s == pytest.approx(50.0)
    assert m.completion_tokens_per_s == pytest.approx(20.0)
    assert m.cost_usd_per_minute == pytest.approx(1.5)
    assert m.failovers == 2 and m.queue_depth == 3
    # Only the window's 20 calls count: the 107 slow ones before it are not in the deltas.
    assert m.p50_seconds == pytest.approx(0.1)
    assert m.p95_seconds == pytest.approx(0.1 + 0.9 * 9 / 10)
    assert m.ttft_p95_seconds == pytest.approx(0.25 * 3.8 / 4)
    # A counter below its last value restarted from zero: all of it is new.
    assert models["big"].requests == 3 and models["big"].by_class == {"2xx": 3}
    assert models["-"].by_class == {"4xx": 1} and models["-"].error_percent == 0.0
    assert models["-"].p50_seconds is None  # the scrapes' latency is not the model calls'
    assert figures.total.requests == 24 and figures.total.requests_per_s == pytest.approx(2.4)
    assert figures.total.error_percent == pytest.approx(100 * 2 / 24)
    assert figures.total.queue_depth == 3 and figures.total.failovers == 2
    assert figures.in_flight == 5  # scrapes are not counted in the gauge
    assert figures.refusals == {"budget_exceeded": 3}


def test_state_comes_from_the_second_scrape() -> None:
    figures = _figures()
    deployments = {d.deployment: d for d in figures.deployments}
    assert deployments["m-a"].healthy and deployments["m-a"].breaker == "closed"
    assert deployments["m-a"].in_flight == 4
    assert not deployments["m-b"].healthy and deployments["m-b"].breaker == "open"
    assert deployments["big-1"].breaker == "-"  # no breaker series for it
    assert all(d.engine_waiting is None and d.kv_cache_usage is None for d in deployments.values())
    (usage,) = figures.queues
    assert (usage.name, usage.pending, usage.dropped, usage.dropped_total) == ("usage", 6, 3, 5)
    assert usage.written_per_s == pytest.approx(2.0)
    assert figures.key_directory_available is False


def test_engine_gauges_show_when_the_gateway_exports_them() -> None:
    engine = """\
# TYPE sluicegate_engine_requests_waiting gauge
sluicegate_engine_requests_waiting{model="m",deployment="m-a"} 7
# TYPE sluicegate_engine_requests_running gauge
sluicegate_engine_requests_running{model="m",deployment="m-a"} 12
# TYPE sluicegate_engine_kv_cache_usage_ratio gauge
sluicegate_engine_kv_cache_usage_ratio{model="m",deployment="m-a"} 0.83
"""
    figures = compute(parse(BEFORE), parse(AFTER + engine), 10.0)
    deployments = {d.deployment: d for d in figures.deployments}
    a = deployments["m-a"]
    assert (a.engine_waiting, a.engine_running, a.kv_cache_usage) == (7, 12, 0.83)
    assert deployments["m-b"].engine_running is None
    console = Console(record=True, width=160)
    console.print(render(figures, url="http://gw", interval=2))
    text = console.export_text()
    assert "KV cache" in text and "83 %" in text


def test_the_figures_as_json_and_as_a_frame() -> None:
    figures = _figures()
    loaded = json.loads(figures.as_json())
    assert loaded["total"]["requests"] == 24 and loaded["seconds"] == 10.0
    assert loaded["models"][2]["by_class"] == {"2xx": 18, "5xx": 2}
    assert loaded["models"][0]["p95_seconds"] is None

    console = Console(record=True, width=160)
    console.print(render(figures, url="http://gw", interval=2))
    text = console.export_text()
    for expected in ("2.40 req/s", "m-b", "down", "open", "budget_exceeded", "usage"):
        assert expected in text
    assert "KV cache" not in text  # no engine gauges: no engine columns
    assert "key directory unavailable" in text


def test_a_frame_before_the_second_scrape_and_after_a_failed_one() -> None:
    console = Console(record=True, width=120)
    console.print(render(None, url="http://gw", interval=2))
    console.print(render(_figures(), url="http://gw", interval=2, error="HTTP 401"))
    text = console.export_text()
    assert "rates after the next one" in text
    assert "HTTP 401" in text and "last good scrape" in text


def test_scrapes_must_be_apart_and_parse() -> None:
    with pytest.raises(ValueError):
        compute(parse(BEFORE), parse(AFTER), 0)
    with pytest.raises(NotMetrics, match="not Prometheus metrics"):
        parse('<html lang="en">{oops}</html>\n')


def test_an_unused_registry_gives_zero_rates() -> None:
    registry = CollectorRegistry()
    Counter("sluicegate_requests", "", ["model", "status"], registry=registry)
    text = generate_latest(registry).decode()
    figures = compute(parse(text), parse(text), 2.0)
    assert (
        figures.total.requests == 0 and figures.total.error_percent is None and figures.models == []
    )
