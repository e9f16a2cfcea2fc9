"""Providers, one module per upstream API, built from a deployment's config."""

from __future__ import annotations

from sluicegate.config.schema import (
    AnthropicDeployment,
    Deployment,
    LocalDeployment,
    ModelConfig,
    OpenAIDeployment,
)
from sluicegate.providers.base import Provider

__all__ = ["Provider", "build_provider"]


def build_provider(model: ModelConfig, deployment: Deployment) -> Provider:
    # Imports are local so a gateway without local models never loads llama.cpp or onnxruntime.
    if isinstance(deployment, OpenAIDeployment):
        from sluicegate.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(model, deployment)
    if isinstance(deployment, AnthropicDeployment):
        from sluicegate.providers.anthropic import AnthropicProvider

        return AnthropicProvider(model, deployment)
    if isinstance(deployment, LocalDeployment):
        from sluicegate.providers.local import build_local_provider

        return build_local_provider(model, deployment)
    raise TypeError(f"unknown deployment type {type(deployment).__name__}")
