"""What routing knows about one deployment right now: load, latency, health, breaker.

Engine figures (``engine_*``) are what the serving engine itself last reported on
its metrics endpoint (``routing.engine_load``): its whole queue, other gateways'
calls included. They are written by the scraper only, and read on the hot path
as plain attributes; ``engine_seen_at`` is ``time.monotonic()`` of the last good
scrape, None when there is none.
"""

from __future__ import annotations

from time import monotonic

from sluicegate.config.schema import Deployment
from sluicegate.routing.breaker import CircuitBreaker

__all__ = ["DeploymentState"]

_EWMA_WEIGHT = 0.3  # weight of the newest latency sample


class DeploymentState:
    __slots__ = (
        "breaker",
        "engine_fresh_for",
        "engine_kv_usage",
        "engine_running",
        "engine_seen_at",
        "engine_waiting",
        "healthy",
        "latency_ewma",
        "max_concurrency",
        "outstanding",
    )

    def __init__(self, deployment: Deployment) -> None:
        self.outstanding = 0
        self.max_concurrency = deployment.max_concurrency
        self.latency_ewma: float | None = None
        self.healthy = True
        self.breaker = CircuitBreaker(deployment.breaker)
        self.engine_waiting = 0.0
        self.engine_running = 0.0
        self.engine_kv_usage: float | None = None
        self.engine_seen_at: float | None = None
        self.engine_fresh_for = deployment.engine_metrics.fresh_for

    def available(self) -> bool:
        """In rotation: health checks pass and the breaker lets calls through."""
        return self.healthy and self.breaker.can_try()

    def has_capacity(self) -> bool:
        return self.outstanding < self.max_concurrency

    def started(self) -> None:
        self.outstanding += 1

    def finished(self) -> None:
        self.outstanding -= 1

    def observe_latency(self, seconds: float) -> None:
        previous = self.latency_ewma
        self.latency_ewma = (
            seconds if previous is None else previous + _EWMA_WEIGHT * (seconds - previous)
        )

    def engine_scraped(
        self, waiting: float, running: float, kv_usage: float | None, now: float
    ) -> None:
        self.engine_waiting = waiting
        self.engine_running = running
        self.engine_kv_usage = kv_usage
        self.engine_seen_at = now

    def engine_lost(self) -> None:
        """The engine's figures are gone (a failed scrape, or none found): own counts only."""
        self.engine_seen_at = None
        self.engine_kv_usage = None

    def engine_fresh(self, now: float) -> bool:
        seen = self.engine_seen_at
        return seen is not None and now - seen <= self.engine_fresh_for

    def engine_load(self, now: float) -> float | None:
        """Requests the engine holds (waiting + running); None when unknown or stale."""
        if not self.engine_fresh(now):
            return None
        return self.engine_waiting + self.engine_running

    def load(self, now: float | None = None) -> float:
        """Calls on the deployment for balancing: the engine's own queue when fresh, since
        other gateways' calls share it, but never less than the calls this gateway has out
        (the engine's figures lag by up to one scrape interval). ``now``: monotonic time,
        read here when not given."""
        outstanding = self.outstanding
        if self.engine_seen_at is None:
            return outstanding  # no engine figures: no clock read either
        engine = self.engine_load(monotonic() if now is None else now)
        return outstanding if engine is None or engine < outstanding else engine
