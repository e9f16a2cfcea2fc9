"""The shape of a Sluicegate config file, validated once at start-up.

Every model names a group of deployments; every deployment names the provider
that speaks to it. Unknown fields are refused so that a typo never silently
turns a setting off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from sluicegate.config.audit import AuditConfig
from sluicegate.config.governance import GovernanceConfig, LimitsConfig
from sluicegate.config.observability import ObservabilityConfig
from sluicegate.config.routing import (
    BreakerConfig,
    EngineMetricsConfig,
    HealthConfig,
    RoutingConfig,
)
from sluicegate.config.safety import SafetyConfig

__all__ = [
    "AnthropicDeployment",
    "AuthConfig",
    "Config",
    "DatabaseConfig",
    "Deployment",
    "LocalDeployment",
    "ModelConfig",
    "OpenAIDeployment",
    "ServerConfig",
    "StaticKey",
    "Timeouts",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Seconds. ``first_byte`` bounds the wait for response headers, ``stream_idle``
    the gap between two reads of a stream, ``total`` the whole call."""

    connect: float = Field(5.0, gt=0)
    first_byte: float = Field(60.0, gt=0)
    stream_idle: float = Field(30.0, gt=0)
    total: float = Field(600.0, gt=0)


class _DeploymentBase(_Strict):
    id: str | None = Field(
        None, description="Name shown in headers and logs; defaults to model/index"
    )
    weight: int = Field(1, ge=1)
    max_concurrency: int = Field(64, ge=1)
    self_hosted: bool = False
    accepts_prefill: bool = Field(
        False,
        description="continues a partial assistant message, so a cut stream can resume here",
    )
    timeouts: Timeouts = Timeouts()
    health: HealthConfig = HealthConfig()
    breaker: BreakerConfig = BreakerConfig()
    engine_metrics: EngineMetricsConfig = EngineMetricsConfig()

    @model_validator(mode="after")
    def _engine_metrics_over_http(self) -> _DeploymentBase:
        # An in-process model has no origin to scrape; refuse rather than ignore the setting.
        if self.engine_metrics.enabled and not hasattr(self, "base_url"):
            raise ValueError("engine_metrics needs an HTTP deployment (one with a base_url)")
        return self


class OpenAIDeployment(_DeploymentBase):
    """Any OpenAI-compatible server: vLLM, TEI, llama.cpp server, Ollama, OpenAI."""

    provider: Literal["openai"]
    base_url: str = Field(description="Up to and including /v1, e.g. http://vllm:8000/v1")
    model: str | None = Field(None, description="Upstream model name; defaults to the model's name")
    api_key: SecretStr | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class AnthropicDeployment(_DeploymentBase):
    """The Anthropic Messages API (or anything that speaks it)."""

    provider: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com"
    model: str | None = None
    api_key: SecretStr | None = None
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = Field(4096, ge=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class LocalDeployment(_DeploymentBase):
    """A model run inside the gateway process: a GGUF chat model or the bundled embedder."""

    provider: Literal["local"]
    self_hosted: bool = True
    max_concurrency: int = Field(1, ge=1)
    path: str = Field(
        description="'builtin:smollm2', 'builtin:minilm-l6', or a path to a .gguf file"
    )
    context_length: int = Field(2048, ge=128)
    threads: int | None = Field(
        None, ge=1, description="Threads per instance; default cores ÷ max_concurrency for chat"
    )
    preload: bool = False

    @field_validator("path")
    @classmethod
    def _known_path(cls, value: str) -> str:
        if value.startswith("builtin:"):
            if value not in ("builtin:smollm2", "builtin:minilm-l6"):
                raise ValueError("builtin models are 'builtin:smollm2' and 'builtin:minilm-l6'")
        elif not value.endswith(".gguf"):
            raise ValueError("must be 'builtin:...' or a path to a .gguf file")
        elif not Path(value).expanduser().is_file():
            raise ValueError(f"no such file: {value}")
        return value


Deployment = Annotated[
    OpenAIDeployment | AnthropicDeployment | LocalDeployment, Field(discriminator="provider")
]


class ModelConfig(_Strict):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["chat", "embedding"] = "chat"
    deployments: list[Deployment] = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    fallbacks: list[str] = Field(
        [], description="model groups to try in order when this one cannot answer"
    )
    context_fallback: str | None = Field(
        None, description="model group with a longer context, taken on context_length_exceeded"
    )


class StaticKey(_Strict):
    name: str = Field(min_length=1)
    key: SecretStr
    org: str | None = Field(None, description="the organisation whose limits also apply")
    limits: LimitsConfig = LimitsConfig()

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class AuthConfig(_Strict):
    master_key: SecretStr | None = Field(
        None, description="Defaults to $SLUICEGATE_MASTER_KEY, else one generated under data_dir"
    )
    keys: list[StaticKey] = []


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    data_dir: str = Field(
        default_factory=lambda: os.environ.get("SLUICEGATE_DATA_DIR", "./.sluicegate"),
        description="local state: the generated master key and the default SQLite database",
    )
    access_log: bool = True
    drain_timeout: float = Field(
        30.0, ge=0, description="seconds in-flight calls may finish after SIGTERM"
    )


class DatabaseConfig(_Strict):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL: sqlite:///path or postgresql://user@host/db "
        "(default: SQLite under server.data_dir)",
    )
    migrate: bool = Field(True, description="apply pending migrations at start-up")
    pool_size: int = Field(5, ge=1, le=100)

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:", "postgresql:", "postgresql+")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value


class Config(_Strict):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    auth: AuthConfig = AuthConfig()
    governance: GovernanceConfig = GovernanceConfig()
    safety: SafetyConfig = SafetyConfig()
    audit: AuditConfig = AuditConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    models: list[ModelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for model in self.models:
            if model.name in seen:
                raise ValueError(f"model name '{model.name}' is declared twice")
            seen.add(model.name)
        actions = self.governance.budget_actions
        if actions.reroute_to is not None and actions.reroute_to not in {
            m.name for m in self.models
        }:
            raise ValueError(
                f"governance.budget_actions.reroute_to names '{actions.reroute_to}', "
                "which is not a model here"
            )
        orgs = {org.name for org in self.governance.orgs}
        for key in self.auth.keys:
            if key.org is not None and key.org not in orgs:
                raise ValueError(
                    f"key '{key.name}' belongs to org '{key.org}', which governance.orgs "
                    "does not declare"
                )
        ids: set[str] = set()
        for model in self.models:
            for index, dep in enumerate(model.deployments):
                dep_id = dep.id or f"{model.name}/{index}"
                if dep_id in ids:
                    raise ValueError(
                        f"deployment id '{dep_id}' is used twice; ids name deployments in "
                        "headers, logs and routing state, so each must be unique"
                    )
                ids.add(dep_id)
        names = {model.name: model for model in self.models}
        for model in self.models:
            for other in [*model.fallbacks, *filter(None, [model.context_fallback])]:
                if other not in names:
                    raise ValueError(
                        f"model '{model.name}' falls back to '{other}', which is not a model here"
                    )
                if other == model.name:
                    raise ValueError(f"model '{model.name}' falls back to itself")
                if names[other].kind != model.kind:
                    raise ValueError(
                        f"model '{model.name}' ({model.kind}) falls back to '{other}' "
                        f"({names[other].kind}); a fallback must be of the same kind"
                    )
        for model in self.models:
            for dep in model.deployments:
                if isinstance(dep, LocalDeployment):
                    wants_embedder = dep.path == "builtin:minilm-l6"
                    if wants_embedder != (model.kind == "embedding"):
                        raise ValueError(
                            f"model '{model.name}' is kind '{model.kind}' but its local path "
                            f"'{dep.path}' is "
                            + ("an embedding model" if wants_embedder else "a chat model")
                        )
                elif isinstance(dep, AnthropicDeployment) and model.kind != "chat":
                    raise ValueError(f"model '{model.name}': anthropic serves chat models only")
        return self
