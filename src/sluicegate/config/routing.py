"""Config for routing that survives failure: balancing, health, breakers, retries, queues.

Every default here is a production default; seed 004's numbers where it gives them
(5 failures → breaker open, 30 s recovery, 3 attempts at 1 s / 2 s / 4 s, 30 s queue
timeout, 30 s drain).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BreakerConfig",
    "EngineMetricsConfig",
    "HealthConfig",
    "QueueConfig",
    "RetryConfig",
    "RoutingConfig",
]

Strategy = Literal["round_robin", "least_outstanding", "latency", "prefix_affinity"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthConfig(_Strict):
    """Active checks of one deployment."""

    enabled: bool = True
    path: str | None = Field(
        None,
        description="Path on the upstream's origin, e.g. /health for vLLM and TEI; "
        "default: the provider's model list (<base_url>/models)",
    )
    interval: float = Field(10.0, gt=0)
    timeout: float = Field(2.0, gt=0)
    unhealthy_after: int = Field(2, ge=1, description="consecutive failed checks")
    healthy_after: int = Field(1, ge=1, description="consecutive passed checks")

    @model_validator(mode="after")
    def _absolute_path(self) -> HealthConfig:
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError("health.path must start with '/'")
        return self


class EngineMetricsConfig(_Strict):
    """Scraping the serving engine's own Prometheus metrics (vLLM, TEI) for its queue.

    The engine's queue counts every caller's requests, other gateway replicas'
    included, so least-loaded routing sees load the gateway did not send itself.
    """

    path: str | None = Field(
        None,
        description="Path on the upstream's origin, e.g. /metrics for vLLM; "
        "unset (and no url): no scraping",
    )
    url: str | None = Field(
        None,
        description="The whole address instead of a path, for engines that serve metrics on "
        "another port (TEI: http://tei:9000/metrics)",
    )
    interval: float = Field(2.0, gt=0, description="seconds between scrapes")
    timeout: float = Field(1.0, gt=0, description="seconds one scrape may take")
    stale_after: float | None = Field(
        None,
        gt=0,
        description="seconds after the last good scrape when routing ignores the figures "
        "(default: three intervals)",
    )

    @model_validator(mode="after")
    def _absolute_path(self) -> EngineMetricsConfig:
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError("engine_metrics.path must start with '/'")
        if self.url is not None:
            if self.path is not None:
                raise ValueError("engine_metrics: set path or url, not both")
            if not self.url.startswith(("http://", "https://")):
                raise ValueError("engine_metrics.url must start with http:// or https://")
        if self.stale_after is not None and self.stale_after <= self.interval:
            # Figures would lapse between two good scrapes and routing would flap.
            raise ValueError("engine_metrics.stale_after must be longer than interval")
        return self

    @property
    def enabled(self) -> bool:
        return self.path is not None or self.url is not None

    @property
    def fresh_for(self) -> float:
        """Seconds a scrape's figures stay usable."""
        return self.stale_after if self.stale_after is not None else 3 * self.interval


class BreakerConfig(_Strict):
    """Circuit breaker of one deployment: opens on consecutive failures or a failure rate."""

    failures: int = Field(5, ge=1, description="consecutive failures that open it")
    failure_rate: float = Field(0.5, gt=0, le=1)
    window: float = Field(30.0, gt=0, description="seconds the failure rate is measured over")
    min_requests: int = Field(20, ge=1, description="calls in the window before the rate counts")
    recovery: float = Field(30.0, gt=0, description="seconds open before a half-open probe")
    half_open_probes: int = Field(1, ge=1)


class RetryConfig(_Strict):
    attempts: int = Field(3, ge=1, description="tries per model group, the first included")
    backoff_base: float = Field(1.0, ge=0, description="seconds; doubles per retry")
    backoff_max: float = Field(4.0, ge=0)
    retry_after_max: float = Field(
        10.0, ge=0, description="honour Retry-After up to this; longer → fail over"
    )
    budget: float = Field(
        120.0, gt=0, description="seconds for the whole call, every attempt and fallback"
    )


class QueueConfig(_Strict):
    """Waiting for a free deployment slot, fairly between tenants."""

    size: int = Field(256, ge=0)
    timeout: float = Field(30.0, gt=0)


class RoutingConfig(_Strict):
    strategy: Strategy = "round_robin"
    prefix_chars: int = Field(
        4096, ge=16, description="prefix_affinity: leading prompt characters that pick a replica"
    )
    load_factor: float = Field(
        1.25, ge=1.0, description="prefix_affinity: a replica may carry this times the mean load"
    )
    retry: RetryConfig = RetryConfig()
    queue: QueueConfig = QueueConfig()
