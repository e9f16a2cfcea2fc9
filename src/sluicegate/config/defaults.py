"""The embedded defaults: the bundled chat and embedding models, no file needed."""

from __future__ import annotations

from sluicegate.config.schema import Config, LocalDeployment, ModelConfig

__all__ = ["embedded_config"]


def embedded_config() -> Config:
    return Config(
        models=[
            ModelConfig(
                name="smollm2-135m",
                kind="chat",
                deployments=[LocalDeployment(provider="local", path="builtin:smollm2")],
            ),
            ModelConfig(
                name="minilm-l6",
                kind="embedding",
                deployments=[
                    LocalDeployment(provider="local", path="builtin:minilm-l6", max_concurrency=2)
                ],
            ),
        ]
    )
