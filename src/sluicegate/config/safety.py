"""Config for data protection: sensitivity levels, PII handling and guardrails."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sluicegate.config.moderation import ModerationConfig
from sluicegate.safety.output_checks import OutputChecksConfig

__all__ = [
    "DataLevel",
    "GuardrailsConfig",
    "OrgSafetyConfig",
    "PiiConfig",
    "SafetyConfig",
    "SensitivityConfig",
    "SensitivityRule",
]

DataLevel = Literal["public", "internal", "confidential", "restricted"]
PiiMode = Literal["off", "detect", "redact", "mask", "block"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SensitivityRule(_Strict):
    """Text that matches makes a request at least ``level``."""

    name: str = Field(min_length=1, max_length=100)
    level: DataLevel
    pattern: str | None = Field(None, description="a regular expression (case-insensitive)")
    terms: list[str] = Field([], description="words or phrases, matched as whole words")

    @model_validator(mode="after")
    def _something_to_match(self) -> SensitivityRule:
        if not self.pattern and not self.terms:
            raise ValueError("give a pattern or terms")
        if self.pattern:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc
        return self


class SensitivityConfig(_Strict):
    header: str = Field(
        "x-sluicegate-data-level", description="request header where callers declare a level"
    )
    default_level: DataLevel = "internal"
    pii_level: DataLevel | None = Field(
        "confidential", description="the level a request has when PII is found in it"
    )
    self_hosted_from: DataLevel = Field(
        "confidential", description="from this level up, only self-hosted deployments serve"
    )
    rules: list[SensitivityRule] = []

    @field_validator("header")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        return value.lower()


class PiiConfig(_Strict):
    mode: PiiMode = Field(
        "off",
        description="off; detect (count, and raise the level to pii_level); redact (typed "
        "placeholders); mask (placeholders restored in the answer); block (400)",
    )
    entities: list[str] | None = Field(
        None,
        description="entity types to look for (default: all); without PERSON, LOCATION and "
        "ORGANIZATION no NER model runs (about 50 µs instead of 60 ms a prompt)",
    )
    answers: Literal["off", "detect", "redact", "block"] = Field(
        "off",
        description="PII in answers that the caller did not send: off; detect (count); redact "
        "(<EMAIL_ADDRESS_REDACTED>); block (400, or a stream's in-band error before the PII "
        "is sent)",
    )

    @field_validator("entities")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        from sluicegate.safety.pii.entities import SUPPORTED_TYPES

        unknown = sorted(set(value or ()) - SUPPORTED_TYPES)
        if unknown:
            raise ValueError(
                f"unknown entity types {unknown}; known: {', '.join(sorted(SUPPORTED_TYPES))}"
            )
        return value


class GuardrailsConfig(_Strict):
    injection: bool = Field(False, description="block prompt injection and jailbreaks")
    injection_threshold: float | None = Field(
        None, gt=0, lt=1, description="classifier probability that blocks (default: the model's)"
    )
    injection_model: Literal["ngram", "minilm"] = Field(
        "ngram",
        description="ngram: patterns and an n-gram classifier (under 1 ms a prompt); minilm: "
        "plus MiniLM embeddings stacked on it (higher recall, about 0.2 s of CPU per 500 tokens, "
        "on a worker thread)",
    )
    moderation: list[ModerationConfig] = Field(
        [], description="external moderation services (OpenAI moderation, Azure AI Content Safety)"
    )
    output: OutputChecksConfig | None = Field(
        None, description="checks on answers: leakage, echoed injections, repetition, length"
    )
    on_unknown: Literal["block", "allow"] = Field(
        "block", description="what a check that errs or times out means (fail closed)"
    )


class OrgSafetyConfig(_Strict):
    """One organisation's own settings, over the defaults."""

    default_level: DataLevel | None = None
    pii: PiiConfig | None = None
    rules: list[SensitivityRule] = Field([], description="added to the global rules")


class SafetyConfig(_Strict):
    sensitivity: SensitivityConfig = SensitivityConfig()
    pii: PiiConfig = PiiConfig()
    guardrails: GuardrailsConfig = GuardrailsConfig()
    orgs: dict[str, OrgSafetyConfig] = {}
