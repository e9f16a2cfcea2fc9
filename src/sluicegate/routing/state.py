"""What routing knows about one deployment right now: load, latency, health, breaker."""

from __future__ import annotations

from sluicegate.config.schema import Deployment
from sluicegate.routing.breaker import CircuitBreaker

__all__ = ["DeploymentState"]

_EWMA_WEIGHT = 0.3  # weight of the newest latency sample


class DeploymentState:
    __slots__ = ("breaker", "healthy", "latency_ewma", "max_concurrency", "outstanding")

    def __init__(self, deployment: Deployment) -> None:
        self.outstanding = 0
        self.max_concurrency = deployment.max_concurrency
        self.latency_ewma: float | None = None
        self.healthy = True
        self.breaker = CircuitBreaker(deployment.breaker)

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
