"""Config for governance: who may spend what, where the counters live, what models cost."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BudgetActionsConfig",
    "GovernanceConfig",
    "IpLimitsConfig",
    "LimitsConfig",
    "OrgConfig",
    "PricingConfig",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Strict):
    """Limits of one key or organisation; unset means unlimited. Windows are UTC."""

    rpm: int | None = Field(None, ge=0, description="requests per minute")
    tpm: int | None = Field(None, ge=0, description="tokens per minute (input + output)")
    requests_per_day: int | None = Field(None, ge=0)
    tokens_per_day: int | None = Field(None, ge=0)
    tokens_per_month: int | None = Field(None, ge=0)
    budget_usd_day: float | None = Field(None, ge=0)
    budget_usd_month: float | None = Field(None, ge=0)
    max_inflight: int | None = Field(
        None, ge=1, description="calls in progress at once (streams until they end)"
    )


class OrgConfig(_Strict):
    name: str = Field(min_length=1, max_length=100)
    limits: LimitsConfig = LimitsConfig()


class IpLimitsConfig(_Strict):
    """Per client IP, checked before authentication so floods of bad keys are limited too
    (seed 004: ``MAX_RPS_PER_IP``, ``RPS_BURST``, ``MAX_INFLIGHT_PER_IP``)."""

    rps: float | None = Field(None, gt=0, description="sustained requests per second")
    burst: int | None = Field(
        None, ge=1, description="requests allowed at once above the rate (default: rps)"
    )
    max_inflight: int | None = Field(None, ge=1, description="calls in progress at once")
    trust_forwarded_for: bool = Field(
        False,
        description="take the client IP from X-Forwarded-For (only behind a proxy you run)",
    )


class BudgetActionsConfig(_Strict):
    """What happens as an organisation's dollar budget runs down (seed 001)."""

    alert_at: list[float] = Field(
        [0.8, 1.0], description="shares of a budget at which to alert (log, metric, webhook)"
    )
    webhook: str | None = Field(None, description="URL that receives a JSON POST per alert")
    reroute_at: float | None = Field(
        None, gt=0, le=1, description="share of a budget past which calls are rerouted"
    )
    reroute_to: str | None = Field(
        None, description="the cheaper (or local) model that rerouted calls go to"
    )

    @field_validator("alert_at")
    @classmethod
    def _shares(cls, value: list[float]) -> list[float]:
        if any(not 0 < share <= 1 for share in value):
            raise ValueError("each share must be in (0, 1]")
        return sorted(set(value))

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _both_or_neither(self) -> BudgetActionsConfig:
        if (self.reroute_at is None) != (self.reroute_to is None):
            raise ValueError("reroute_at and reroute_to go together")
        return self


class PricingConfig(_Strict):
    catalogue: str | None = Field(
        None, description="your own price file; extends the shipped one unless it says not to"
    )
    models: dict[str, Any] = Field(
        {}, description="per-model price overrides, shaped like a catalogue entry"
    )


class GovernanceConfig(_Strict):
    state: str = Field(
        "memory",
        description="where limit counters live: 'memory' (one process) or a redis:// URL "
        "(shared exactly by every replica)",
    )
    orgs: list[OrgConfig] = []
    pricing: PricingConfig = PricingConfig()
    default_max_tokens: int = Field(
        1024,
        ge=1,
        description="output tokens reserved for a call that sets no max_tokens",
    )
    ip_limits: IpLimitsConfig = IpLimitsConfig()
    budget_actions: BudgetActionsConfig = BudgetActionsConfig()
    redis_prefix: str = Field(
        "sg:",
        description="prefix of every Redis key and channel the gateway uses, so that several "
        "gateways (or other apps) can share one Redis",
    )
    refresh_interval: float = Field(
        5.0,
        gt=0,
        description="seconds between checks of the key database for changes made elsewhere",
    )
    usage_queue: int = Field(
        50_000, ge=100, description="usage events held in memory before new ones are dropped"
    )

    @field_validator("state")
    @classmethod
    def _known_state(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be 'memory' or a redis:// URL")
        return value
