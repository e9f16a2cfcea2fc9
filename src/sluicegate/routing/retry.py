"""What to do after a failed attempt, and how long to wait before the next one.

client error (4xx about the request itself)  → stop: the caller sees it
rate limited (429)                           → retry after Retry-After (up to a cap), else fail over
overloaded or broken (5xx, reset, bad body)  → retry with capped, fully jittered backoff
silent or unreachable (timeouts, refused)    → fail over: never wait on that deployment again
"""

from __future__ import annotations

import random
from enum import Enum

from sluicegate.config.routing import RetryConfig
from sluicegate.errors import (
    InvalidRequest,
    RateLimited,
    SluicegateError,
    UpstreamRejected,
    UpstreamTimeout,
)

__all__ = ["Outcome", "backoff", "classify", "counts_against_deployment"]

# Deployment-specific failures: another deployment of the same model may well succeed.
_DEPLOYMENT_FAULTS = frozenset(
    {"upstream_unreachable", "upstream_auth_failed", "upstream_not_found"}
)


class Outcome(Enum):
    FATAL = "fatal"  # the request itself is wrong (or refused on policy): no retry anywhere
    RETRY = "retry"  # transient: the same or another deployment may answer next time
    FAILOVER = "failover"  # this deployment is silent or broken: try others only


def classify(exc: SluicegateError) -> Outcome:
    if isinstance(exc, UpstreamRejected | InvalidRequest):
        return Outcome.FATAL
    if isinstance(exc, UpstreamTimeout):
        return Outcome.FAILOVER
    if exc.code in _DEPLOYMENT_FAULTS:
        return Outcome.FAILOVER
    if exc.status >= 500 or isinstance(exc, RateLimited):
        return Outcome.RETRY
    return Outcome.FATAL


def counts_against_deployment(exc: SluicegateError) -> bool:
    """Does this failure say something about the deployment's health (for its breaker)?"""
    return classify(exc) is not Outcome.FATAL


def backoff(config: RetryConfig, retry_index: int, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(max, base * 2^i)], as in AWS's 'backoff and jitter'."""
    ceiling = min(config.backoff_max, config.backoff_base * (2**retry_index))
    return (rng or random).uniform(0.0, ceiling)
