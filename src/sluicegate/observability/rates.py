"""Figures from two scrapes of the gateway's ``/metrics``, computed as Prometheus would.

``parse`` turns exposition text into samples; ``compute`` turns two scrapes and the
seconds between them into rates, error shares and latency quantiles, the way
``rate()`` and ``histogram_quantile()`` would over the same window. Pure functions:
``sluicegate top`` renders what they return.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DeploymentFigures",
    "Figures",
    "ModelFigures",
    "NotMetrics",
    "QueueFigures",
    "Scrape",
    "compute",
    "histogram_quantile",
    "parse",
]


class NotMetrics(ValueError):
    """A page that is not Prometheus' text format."""


Labels = tuple[tuple[str, str], ...]
#: Sample name (``…_total``, ``…_bucket``) → sorted label pairs → value.
Scrape = dict[str, dict[Labels, float]]
#: Values summed by some of their labels.
_Series = dict[tuple[str, ...], float]

_P = "sluicegate_"
#: Routes that are no model call: scrapes (top's own among them), the admin API, listings.
_CONTROL_ROUTES = frozenset({"metrics", "admin", "models", "openapi"})
_ENGINE = {
    "waiting": f"{_P}engine_requests_waiting",
    "running": f"{_P}engine_requests_running",
    "kv_cache": f"{_P}engine_kv_cache_usage_ratio",
}


@dataclass(frozen=True)
class ModelFigures:
    model: str
    requests: int
    requests_per_s: float
    by_class: dict[str, int]
    """Calls in the window by status class (``2xx``, ``4xx``, ``5xx``)."""
    error_percent: float | None
    """5xx share of the calls; 4xx (client errors, refusals) are in ``by_class``."""
    p50_seconds: float | None
    p95_seconds: float | None
    ttft_p95_seconds: float | None
    prompt_tokens_per_s: float
    completion_tokens_per_s: float
    cost_usd_per_minute: float
    failovers: int
    queue_depth: float


@dataclass(frozen=True)
class DeploymentFigures:
    model: str
    deployment: str
    healthy: bool
    breaker: str
    in_flight: float
    engine_waiting: float | None
    engine_running: float | None
    kv_cache_usage: float | None


@dataclass(frozen=True)
class QueueFigures:
    name: str
    pending: float
    written_per_s: float
    dropped: int
    """In the window."""
    dropped_total: int


@dataclass(frozen=True)
class Figures:
    seconds: float
    total: ModelFigures
    """Every model together (``model`` is ``*``)."""
    in_flight: float
    models: list[ModelFigures]
    deployments: list[DeploymentFigures]
    refusals: dict[str, int]
    """Calls refused before any upstream in the window, by error code."""
    queues: list[QueueFigures]
    key_directory_available: bool | None

    def as_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def parse(text: str) -> Scrape:
    # Imported here: the rest of the CLI starts without prometheus_client (~50 ms).
    from prometheus_client.parser import text_string_to_metric_families

    scrape: Scrape = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                scrape.setdefault(sample.name, {})[labels] = sample.value
    except ValueError as exc:
        raise NotMetrics(f"the reply is not Prometheus metrics ({exc})") from None
    return scrape


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(upper bound, count)`` buckets, as Prometheus does.

    Linear interpolation inside the bucket the rank falls in (from 0 for the first
    bucket); a rank in the ``+Inf`` bucket answers the highest finite bound. None
    when there is nothing to measure (no ``+Inf`` bucket, no observations).
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is not within [0, 1]")
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    # Counts taken from two scrapes can dip by a hair when a scrape lands mid-update.
    cumulative: list[tuple[float, float]] = []
    highest = 0.0
    for bound, count in ordered:
        highest = max(highest, count)
        cumulative.append((bound, highest))
    total = cumulative[-1][1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, (_, count) in enumerate(cumulative) if count >= rank and count > 0)
    bound, count = cumulative[index]
    if math.isinf(bound):
        return cumulative[-2][0]
    if index == 0 and bound <= 0:
        return bound
    lower, below = cumulative[index - 1] if index > 0 else (0.0, 0.0)
    return lower + (bound - lower) * (rank - below) / (count - below)


def compute(previous: Scrape, current: Scrape, seconds: float) -> Figures:
    """What happened between two scrapes ``seconds`` apart, and the state at the second."""
    if seconds <= 0:
        raise ValueError("the scrapes must be some time apart")

    def increase(name: str, *keys: str) -> _Series:
        return _increase(previous, current, f"{_P}{name}", "model", *keys)

    series = {
        "requests": increase("requests_total", "status"),
        "tokens": increase("tokens_total", "kind"),
        "cost": increase("cost_usd_total"),
        "failovers": increase("failovers_total"),
        "duration": increase("request_duration_seconds_bucket", "le"),
        "ttft": increase("time_to_first_token_seconds_bucket", "le"),
        "depth": _gauge(current, f"{_P}queue_depth", "model"),
    }
    names = sorted({key[0] for values in series.values() for key in values})
    refusals = _increase(previous, current, f"{_P}refusals_total", "code")
    return Figures(
        seconds=seconds,
        total=_model(series, None, seconds),
        # Scrapes are not counted in the gauge: an idle gateway reads 0.
        in_flight=sum(_gauge(current, f"{_P}in_flight").values()),
        models=[_model(series, name, seconds) for name in names],
        deployments=_deployments(current),
        refusals={code: round(n) for (code,), n in sorted(refusals.items()) if n > 0},
        queues=[
            _queue(previous, current, name, seconds)
            for name in ("usage", "audit")
            if f"{_P}{name}_events_pending" in current
        ],
        key_directory_available=_flag(current, f"{_P}key_directory_available"),
    )


def _increase(previous: Scrape, current: Scrape, name: str, *keys: str) -> _Series:
    """Per series ``current - previous`` (a counter that fell restarted from 0), summed by keys."""
    before = previous.get(name, {})
    totals: _Series = defaultdict(float)
    for labels, value in current.get(name, {}).items():
        found = dict(labels)
        if found.get("route") in _CONTROL_ROUTES:
            continue
        old = before.get(labels, 0.0)
        totals[tuple(found.get(key, "") for key in keys)] += value - old if value >= old else value
    return dict(totals)


def _gauge(scrape: Scrape, name: str, *keys: str) -> _Series:
    totals: _Series = defaultdict(float)
    for labels, value in scrape.get(name, {}).items():
        found = dict(labels)
        totals[tuple(found.get(key, "") for key in keys)] += value
    return dict(totals)


def _flag(scrape: Scrape, name: str) -> bool | None:
    values = scrape.get(name)
    return None if not values else all(v >= 1 for v in values.values())


def _model(series: dict[str, _Series], name: str | None, seconds: float) -> ModelFigures:
    """One model's figures; every model's together when ``name`` is None."""

    def pick(kind: str) -> dict[str, float]:
        picked: dict[str, float] = defaultdict(float)
        for (model, *rest), value in series[kind].items():
            if name is None or model == name:
                picked["".join(rest)] += value
        return picked

    def quantile(q: float, kind: str) -> float | None:
        return histogram_quantile(q, ((float(le), n) for le, n in pick(kind).items()))

    by_class: dict[str, int] = defaultdict(int)
    for status, n in pick("requests").items():
        by_class[f"{status[:1] or '?'}xx"] += round(n)
    total = sum(by_class.values())
    tokens = pick("tokens")
    return ModelFigures(
        model="*" if name is None else name,
        requests=total,
        requests_per_s=total / seconds,
        by_class=dict(sorted(by_class.items())),
        error_percent=100 * by_class.get("5xx", 0) / total if total else None,
        p50_seconds=quantile(0.5, "duration"),
        p95_seconds=quantile(0.95, "duration"),
        ttft_p95_seconds=quantile(0.95, "ttft"),
        prompt_tokens_per_s=tokens.get("prompt", 0.0) / seconds,
        completion_tokens_per_s=tokens.get("completion", 0.0) / seconds,
        cost_usd_per_minute=60 * sum(pick("cost").values()) / seconds,
        failovers=round(sum(pick("failovers").values())),
        queue_depth=sum(pick("depth").values()),
    )


def _deployments(scrape: Scrape) -> list[DeploymentFigures]:
    healthy = _gauge(scrape, f"{_P}deployment_healthy", "model", "deployment")
    in_flight = _gauge(scrape, f"{_P}deployment_in_flight", "model", "deployment")
    breakers = {
        deployment: state
        for (deployment, state), value in _gauge(
            scrape, f"{_P}breaker_state", "deployment", "state"
        ).items()
        if value >= 1
    }
    engine = {field: _gauge(scrape, name, "model", "deployment") for field, name in _ENGINE.items()}
    return [
        DeploymentFigures(
            model=model,
            deployment=deployment,
            healthy=healthy.get((model, deployment), 0.0) >= 1,
            breaker=breakers.get(deployment, "-"),
            in_flight=in_flight.get((model, deployment), 0.0),
            engine_waiting=engine["waiting"].get((model, deployment)),
            engine_running=engine["running"].get((model, deployment)),
            kv_cache_usage=engine["kv_cache"].get((model, deployment)),
        )
        for model, deployment in sorted(set(healthy) | set(in_flight))
    ]


def _queue(previous: Scrape, current: Scrape, name: str, seconds: float) -> QueueFigures:
    def total(field: str) -> float:
        return sum(current.get(f"{_P}{name}_events_{field}", {}).values())

    def increase(field: str) -> float:
        return sum(_increase(previous, current, f"{_P}{name}_events_{field}_total").values())

    return QueueFigures(
        name=name,
        pending=total("pending"),
        written_per_s=increase("written") / seconds,
        dropped=round(increase("dropped")),
        dropped_total=round(total("dropped_total")),
    )
