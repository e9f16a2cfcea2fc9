"""Config of the external moderation services the guardrails may call (safety/moderation.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from sluicegate.config.routing import BreakerConfig

__all__ = [
    "AZURE_CATEGORIES",
    "OPENAI_CATEGORIES",
    "AzureContentSafetyConfig",
    "ModerationConfig",
    "OpenAIModerationConfig",
]

#: Categories of OpenAI's moderation models (omni-moderation and text-moderation).
OPENAI_CATEGORIES = frozenset(
    {
        "harassment",
        "harassment/threatening",
        "hate",
        "hate/threatening",
        "illicit",
        "illicit/violent",
        "self-harm",
        "self-harm/instructions",
        "self-harm/intent",
        "sexual",
        "sexual/minors",
        "violence",
        "violence/graphic",
    }
)
AZURE_CATEGORIES = frozenset({"Hate", "SelfHarm", "Sexual", "Violence"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _AdapterConfig(_Strict):
    api_key: SecretStr | None = None
    timeout: float = Field(2.0, gt=0, description="seconds for the whole check, all chunks")
    max_chars: int = Field(
        10_000, ge=100, description="longer texts are sent in chunks of at most this"
    )
    max_chunks: int = Field(
        8, ge=1, description="a text needing more chunks than this is unknown, not sent"
    )
    max_connections: int = Field(16, ge=1)
    breaker: BreakerConfig = BreakerConfig()


class OpenAIModerationConfig(_AdapterConfig):
    """The OpenAI moderation API (or a service speaking its shape)."""

    kind: Literal["openai"] = "openai"
    base_url: str = "https://api.openai.com/v1"
    model: str = "omni-moderation-latest"
    use_flagged: bool = Field(True, description="block whatever the service flags")
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="category → score at or above which to block, stricter than 'flagged', "
        "e.g. {'self-harm': 0.2}",
    )

    @model_validator(mode="after")
    def _known(self) -> OpenAIModerationConfig:
        unknown = sorted(set(self.thresholds) - OPENAI_CATEGORIES)
        if unknown:
            raise ValueError(
                f"unknown OpenAI moderation categories {unknown}; "
                f"known: {sorted(OPENAI_CATEGORIES)}"
            )
        for category, score in self.thresholds.items():
            if not 0 < score <= 1:
                raise ValueError(f"threshold of '{category}' must be in (0, 1]")
        return self


class AzureContentSafetyConfig(_AdapterConfig):
    """Azure AI Content Safety's text analysis; severities 0-7 (0, 2, 4, 6 with four levels)."""

    kind: Literal["azure"] = "azure"
    endpoint: str = Field(description="https://<resource>.cognitiveservices.azure.com")
    api_version: str = "2024-09-01"
    categories: tuple[str, ...] = ("Hate", "SelfHarm", "Sexual", "Violence")
    output_type: Literal["FourSeverityLevels", "EightSeverityLevels"] = "FourSeverityLevels"
    #: Seed 003's numbers: medium (4) and up blocks, self-harm already at low (2).
    thresholds: dict[str, int] = Field(
        default_factory=lambda: {"Hate": 4, "SelfHarm": 2, "Sexual": 4, "Violence": 4},
        description="category → severity at or above which to block",
    )
    default_threshold: int = Field(4, ge=1, le=7, description="for a category not listed")
    blocklists: tuple[str, ...] = Field((), description="custom blocklist names; a match blocks")

    @model_validator(mode="after")
    def _known(self) -> AzureContentSafetyConfig:
        for name in (*self.categories, *self.thresholds):
            if name not in AZURE_CATEGORIES:
                raise ValueError(
                    f"unknown Azure category '{name}'; known: {sorted(AZURE_CATEGORIES)}"
                )
        if not self.categories:
            raise ValueError("categories must name at least one category")
        for category, severity in self.thresholds.items():
            if not 1 <= severity <= 7:
                raise ValueError(f"threshold of '{category}' must be 1-7")
        return self


ModerationConfig = Annotated[
    OpenAIModerationConfig | AzureContentSafetyConfig, Field(discriminator="kind")
]
