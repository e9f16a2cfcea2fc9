"""Prometheus metrics: what every call did, and the live state scrapers read.

Per-call metrics are updated once, when the call ends (``Record``), as plain
numbers (``observability.series``: no lock, no label checks); the state
of the gateway (queue depth per model group — the autoscaling signal —,
deployment health and breakers, the usage and audit queues, budget alerts) is
read only when Prometheus scrapes, by a collector, so it costs nothing per call.

Label values are bounded: a model name a client made up is reported as ``-``,
orgs and deployments come from config or the directory, errors from the
gateway's own codes; never a prompt or a key, and key ids only with
``observability.metrics.per_key``.
"""

from __future__ import annotations

from collections.abc import Iterator
from time import monotonic
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sluicegate.governance.keys import PREFIX as KEY_PREFIX
from sluicegate.observability.series import CounterVec, HistogramVec

if TYPE_CHECKING:
    from sluicegate.audit.writer import AuditLog
    from sluicegate.governance.budget_actions import BudgetWatch
    from sluicegate.governance.directory import Directory
    from sluicegate.governance.limits import Limit
    from sluicegate.governance.usage_log import UsageLog
    from sluicegate.observability.counters import Counters
    from sluicegate.pipeline.call import Call, Usage
    from sluicegate.routing.router import Router

__all__ = ["Metrics"]

#: Seconds; from a cached embedding (ms) to a long generation (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(
        self,
        router: Router,
        counters: Counters,
        *,
        usage_log: UsageLog | None = None,
        audit: AuditLog | None = None,
        budget_watch: BudgetWatch | None = None,
        directory: Directory | None = None,
        per_key: bool = False,
    ) -> None:
        # One registry per gateway: several gateways in one process (tests) stay apart.
        self.registry = CollectorRegistry(auto_describe=False)
        self.models = frozenset(router.groups)
        self.requests = CounterVec(
            "sluicegate_requests",
            "Calls by route, model asked, deployment that served, org and status",
            ["route", "model", "deployment", "org", "status"],
            registry=self.registry,
        )
        # Apart from the main counters, so turning it on changes no other series or query.
        self.key_requests: CounterVec | None = None
        self.key_tokens: CounterVec | None = None
        if per_key:
            self.key_requests = CounterVec(
                "sluicegate_key_requests",
                "Calls by API key (display prefix) and status (observability.metrics.per_key)",
                ["key", "status"],
                registry=self.registry,
            )
            self.key_tokens = CounterVec(
                "sluicegate_key_tokens",
                "Tokens by API key (display prefix) and kind (observability.metrics.per_key)",
                ["key", "kind"],
                registry=self.registry,
            )
        self.duration = HistogramVec(
            "sluicegate_request_duration_seconds",
            "Time from the request's arrival to its reply's end (streams: the last byte)",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_token = HistogramVec(
            "sluicegate_time_to_first_token_seconds",
            "Streams: time from the request's arrival to the first real chunk from upstream",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream = HistogramVec(
            "sluicegate_upstream_duration_seconds",
            "The answering attempt: time to the upstream's reply (streams: its first chunk)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.overhead = HistogramVec(
            "sluicegate_gateway_overhead_seconds",
            "Non-streamed calls: total time minus the answering upstream attempt's",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )
        self.tokens = CounterVec(
            "sluicegate_tokens",
            "Tokens the upstream reported, by model served, org and kind (prompt, completion)",
            ["model", "org", "kind"],
            registry=self.registry,
        )
        self.cost = CounterVec(
            "sluicegate_cost_usd",
            "What calls cost, priced from reported usage, by model served and org",
            ["model", "org"],
            registry=self.registry,
        )
        self.queue_wait = HistogramVec(
            "sluicegate_queue_wait_seconds",
            "Time calls waited in their model group's fair queue for a free deployment slot "
            "(0 for most: only calls that found every deployment busy wait)",
            ["model"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.retries = CounterVec(
            "sluicegate_retries",
            "Upstream attempts after a call's first, by model asked",
            ["model"],
            registry=self.registry,
        )
        self.upstream_failures = CounterVec(
            "sluicegate_upstream_failures",
            "Failed upstream attempts, by deployment and error code (upstream_timeout, "
            "upstream_unreachable, rate_limit_exceeded, ...)",
            ["deployment", "code"],
            registry=self.registry,
        )
        self.failovers = CounterVec(
            "sluicegate_failovers",
            "Calls served after at least one failed upstream attempt, by model asked",
            ["model"],
            registry=self.registry,
        )
        self.refusals = CounterVec(
            "sluicegate_refusals",
            "Calls the gateway refused, by error code (rate_limit_exceeded, budget_exceeded, "
            "content_policy_violation, no_self_hosted_deployment, ...)",
            ["code"],
            registry=self.registry,
        )
        self.limit_refusals = CounterVec(
            "sluicegate_limit_refusals",
            "Calls refused by a rate limit, quota or budget, by the scope it binds (key, team, "
            "org) and the limit (rpm, tpm, tokens_per_day, budget_usd_month, ...)",
            ["scope", "limit"],
            registry=self.registry,
        )
        self.guards = CounterVec(
            "sluicegate_guard_decisions",
            "Decisions of the inspection stages, by check and outcome",
            ["check", "decision"],
            registry=self.registry,
        )
        self.registry.register(_State(router, counters, usage_log, audit, budget_watch, directory))

    def observe(
        self,
        call: Call,
        status: int,
        error: str | None,
        usage: Usage | None,
        seconds: float,
        limit: Limit | None = None,
    ) -> None:
        """One finished call; ``limit`` is the one that refused it, if one did."""
        model = call.model if call.model in self.models else "-"
        route = call.endpoint.value
        principal = call.principal
        org = (principal.org or "-") if principal is not None else "-"
        target = call.target
        deployment = target.deployment_id if target is not None else "-"
        self.requests.inc((route, model, deployment, org, str(status)))
        self.duration.observe((route, model), seconds)
        if call.upstream_seconds is not None:
            self.upstream.observe((model,), call.upstream_seconds)
            if call.first_token_at is not None:
                self.first_token.observe((model,), call.first_token_at - call.started)
            else:
                overhead = max(0.0, seconds - call.upstream_seconds)
                self.overhead.observe((route,), overhead)
        served = target.model if target is not None else model
        if usage is not None:
            self.tokens.inc((served, org, "prompt"), usage.prompt_tokens)
            self.tokens.inc((served, org, "completion"), usage.completion_tokens)
        if self.key_requests is not None and principal is not None:
            self._per_key(principal.key_id, status, usage)
        if call.cost_micros:
            self.cost.inc((served, org), call.cost_micros / 1_000_000)
        if target is not None:
            self.queue_wait.observe((model,), call.queued_seconds)
        if call.attempts > 1:
            self.retries.inc((model,), call.attempts - 1)
            if status < 400:
                self.failovers.inc((model,))
        if call.failures is not None:
            for failed, code in call.failures:
                self.upstream_failures.inc((failed, code))
        if status >= 400 and error is not None and target is None:
            self.refusals.inc((error,))
            if limit is not None:
                # "key:billing-app" → "key": the kind of scope, not its name, stays bounded.
                self.limit_refusals.inc((limit.scope.split(":", 1)[0], limit.name))
        for check, decision in call.decisions.items():
            if check in ("route", "level_rule"):
                continue
            self.guards.inc((check, decision.split(":", 1)[0]))

    def _per_key(self, key_id: str | None, status: int, usage: Usage | None) -> None:
        assert self.key_requests is not None and self.key_tokens is not None
        # Config keys have no id and the master key is no tenant: only directory keys count.
        if key_id is None:
            return
        key = KEY_PREFIX + key_id
        self.key_requests.inc((key, str(status)))
        if usage is not None:
            self.key_tokens.inc((key, "prompt"), usage.prompt_tokens)
            self.key_tokens.inc((key, "completion"), usage.completion_tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _State(Collector):
    """Gauges read at scrape time."""

    def __init__(
        self,
        router: Router,
        counters: Counters,
        usage_log: UsageLog | None,
        audit: AuditLog | None,
        budget_watch: BudgetWatch | None,
        directory: Directory | None,
    ) -> None:
        self.router = router
        self.counters = counters
        self.usage_log = usage_log
        self.audit = audit
        self.budget_watch = budget_watch
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily("sluicegate_in_flight", "Calls in progress")
        in_flight.add_metric([], self.counters.in_flight)
        yield in_flight
        depth = GaugeMetricFamily(
            "sluicegate_queue_depth",
            "Calls waiting for a free deployment slot, by model group (scale on this)",
            labels=["model"],
        )
        healthy = GaugeMetricFamily(
            "sluicegate_deployment_healthy",
            "1 when the deployment passes its health checks",
            labels=["model", "deployment"],
        )
        outstanding = GaugeMetricFamily(
            "sluicegate_deployment_in_flight",
            "Calls in progress on the deployment",
            labels=["model", "deployment"],
        )
        breaker = GaugeMetricFamily(
            "sluicegate_breaker_state",
            "1 for the breaker's current state (closed, open, half_open)",
            labels=["deployment", "state"],
        )
        for name, group in self.router.groups.items():
            depth.add_metric([name], len(group.queue))
            for target in group.targets:
                state = target.state
                healthy.add_metric([name, target.deployment_id], 1 if state.healthy else 0)
                outstanding.add_metric([name, target.deployment_id], state.outstanding)
                for value in ("closed", "open", "half_open"):
                    breaker.add_metric(
                        [target.deployment_id, value], 1 if state.breaker.state == value else 0
                    )
        yield from (depth, healthy, outstanding, breaker)
        yield from self._engines()
        yield from self._queues()
        if self.budget_watch is not None:
            alerts = CounterMetricFamily(
                "sluicegate_budget_alerts",
                "Budget alerts raised, by scope, budget and threshold",
                labels=["scope", "budget", "threshold"],
            )
            for (scope, budget, threshold), count in self.budget_watch.alerts.items():
                alerts.add_metric([scope, budget, str(threshold)], count)
            yield alerts
        if self.directory is not None:
            available = GaugeMetricFamily(
                "sluicegate_key_directory_available",
                "1 while the key database can be read (0: serving the last snapshot)",
            )
            available.add_metric([], 1 if self.directory.available else 0)
            yield available

    def _engines(self) -> Iterator[Metric]:
        """What engines report about themselves (routing.engine_load), fresh figures only:
        a stale one would show a queue that may long be gone."""
        waiting = GaugeMetricFamily(
            "sluicegate_engine_requests_waiting",
            "Requests queued in the serving engine (all its clients), as last scraped",
            labels=["model", "deployment"],
        )
        running = GaugeMetricFamily(
            "sluicegate_engine_requests_running",
            "Requests the serving engine is running (all its clients), as last scraped",
            labels=["model", "deployment"],
        )
        kv_usage = GaugeMetricFamily(
            "sluicegate_engine_kv_cache_usage_ratio",
            "Share of the engine's KV cache in use (0..1), as last scraped",
            labels=["model", "deployment"],
        )
        now = monotonic()
        for name, group in self.router.groups.items():
            for target in group.targets:
                state = target.state
                if not state.engine_fresh(now):
                    continue
                labels = [name, target.deployment_id]
                waiting.add_metric(labels, state.engine_waiting)
                running.add_metric(labels, state.engine_running)
                if state.engine_kv_usage is not None:
                    kv_usage.add_metric(labels, state.engine_kv_usage)
        for family in (waiting, running, kv_usage):
            if family.samples:
                yield family

    def _queues(self) -> Iterator[Metric]:
        for name, log in (("usage", self.usage_log), ("audit", self.audit)):
            if log is None:
                continue
            for field, kind in (
                ("submitted", "counter"),
                ("written", "counter"),
                ("dropped", "counter"),
                ("pending", "gauge"),
            ):
                metric_name = f"sluicegate_{name}_events_{field}"
                help_text = f"{name.capitalize()} events {field}"
                family: Metric = (
                    CounterMetricFamily(metric_name, help_text)
                    if kind == "counter"
                    else GaugeMetricFamily(metric_name, help_text)
                )
                family.add_metric([], getattr(log, field))  # type: ignore[attr-defined]
                yield family
