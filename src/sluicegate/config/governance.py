"""Config for governance: who may spend what, where the counters live, what models cost."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["GovernanceConfig", "LimitsConfig", "OrgConfig", "PricingConfig"]


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


class OrgConfig(_Strict):
    name: str = Field(min_length=1, max_length=100)
    limits: LimitsConfig = LimitsConfig()


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

    @field_validator("state")
    @classmethod
    def _known_state(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be 'memory' or a redis:// URL")
        return value
