"""config/loader: YAML, ${ENV} substitution, and error messages that name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluicegate.config.loader import ConfigError, load_config
from sluicegate.config.schema import OpenAIDeployment

CHAT_MODEL = """\
models:
  - name: chat
    deployments:
      - provider: openai
        base_url: {base_url}
        api_key: {api_key}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sluicegate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


def only_deployment(path: Path) -> OpenAIDeployment:
    config = load_config(path)
    dep = config.models[0].deployments[0]
    assert isinstance(dep, OpenAIDeployment)
    return dep


def test_env_var_is_substituted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SG_TEST_KEY", "sk-from-env")
    monkeypatch.setenv("SG_TEST_HOST", "vllm.internal")
    path = write(
        tmp_path,
        CHAT_MODEL.format(base_url="http://${SG_TEST_HOST}:8000/v1", api_key="${SG_TEST_KEY}"),
    )
    dep = only_deployment(path)
    assert dep.base_url == "http://vllm.internal:8000/v1"
    assert dep.api_key is not None
    assert dep.api_key.get_secret_value() == "sk-from-env"


def test_default_used_when_env_var_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SG_TEST_UNSET", raising=False)
    path = write(
        tmp_path,
        CHAT_MODEL.format(base_url="http://h/v1", api_key="${SG_TEST_UNSET:-sk-fallback}"),
    )
    dep = only_deployment(path)
    assert dep.api_key is not None
    assert dep.api_key.get_secret_value() == "sk-fallback"


def test_default_ignored_when_env_var_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SG_TEST_SET", "sk-real")
    path = write(
        tmp_path, CHAT_MODEL.format(base_url="http://h/v1", api_key="${SG_TEST_SET:-sk-fallback}")
    )
    dep = only_deployment(path)
    assert dep.api_key is not None
    assert dep.api_key.get_secret_value() == "sk-real"


def test_empty_default_is_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SG_TEST_UNSET", raising=False)
    path = write(
        tmp_path, CHAT_MODEL.format(base_url="http://h${SG_TEST_UNSET:-}/v1", api_key="sk-x")
    )
    assert only_deployment(path).base_url == "http://h/v1"


def test_default_used_when_env_var_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SG_TEST_EMPTY", "")
    path = write(
        tmp_path,
        CHAT_MODEL.format(base_url="http://h/v1", api_key="${SG_TEST_EMPTY:-sk-fallback}"),
    )
    dep = only_deployment(path)
    assert dep.api_key is not None
    assert dep.api_key.get_secret_value() == "sk-fallback"


def test_substituted_number_is_coerced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SG_TEST_PORT", "9090")
    text = "server:\n  port: ${SG_TEST_PORT}\n" + CHAT_MODEL.format(
        base_url="http://h/v1", api_key="k"
    )
    assert load_config(write(tmp_path, text)).server.port == 9090


def test_missing_env_vars_are_all_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SG_TEST_A", raising=False)
    monkeypatch.delenv("SG_TEST_B", raising=False)
    path = write(
        tmp_path,
        CHAT_MODEL.format(base_url="http://${SG_TEST_B}/v1", api_key="${SG_TEST_A}"),
    )
    assert problems(path) == (
        f"{path}: environment variable(s) SG_TEST_A, SG_TEST_B are referenced but not set. "
        "Fix: export them, or write ${NAME:-default} in the file."
    )


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "models: [\n  - name: x\n")
    message = problems(path)
    assert message.startswith(f"{path}: not valid YAML: ")
    assert "line" in message  # PyYAML's position, so the user can find the mistake


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert problems(path) == f"{path}: the top level must be a mapping with a 'models' list"


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert problems(path) == f"{path}: cannot read the config file (No such file or directory)"


def test_unknown_field_names_the_path_and_the_fix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models:\n  - name: chat\n    deployments:\n"
        "      - provider: openai\n        bas_url: http://h/v1\n",
    )
    assert problems(path) == (
        f"{path}: 2 problem(s):\n"
        "  - models[0](chat).deployments[0].base_url: required field is missing. Fix: add it.\n"
        "  - models[0](chat).deployments[0].bas_url: unknown field. "
        "Fix: remove it or check its spelling (see docs/configuration.md)."
    )


def test_unknown_top_level_and_server_fields(tmp_path: Path) -> None:
    text = "server:\n  prot: 1\nmodel: []\n" + CHAT_MODEL.format(
        base_url="http://h/v1", api_key="k"
    )
    message = problems(write(tmp_path, text))
    assert "  - server.prot: unknown field." in message
    assert "  - model: unknown field." in message


def test_unknown_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models:\n  - name: chat\n    deployments:\n"
        "      - provider: opena1\n        base_url: http://h/v1\n",
    )
    assert problems(path) == (
        f"{path}: 1 problem(s):\n"
        "  - models[0](chat).deployments[0]: unknown provider. "
        "Fix: use one of openai, anthropic, local."
    )


def test_missing_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path, "models:\n  - name: chat\n    deployments:\n      - base_url: http://h/v1\n"
    )
    assert problems(path) == (
        f"{path}: 1 problem(s):\n"
        "  - models[0](chat).deployments[0]: no provider given. "
        "Fix: add 'provider: openai|anthropic|local'."
    )


def test_second_model_is_named_in_the_path(tmp_path: Path) -> None:
    text = CHAT_MODEL.format(base_url="http://h/v1", api_key="k") + (
        "  - name: embed\n    kind: embedding\n    deployments:\n"
        "      - provider: openai\n        base_url: ftp://h/v1\n"
    )
    path = write(tmp_path, text)
    assert problems(path) == (
        f"{path}: 1 problem(s):\n"
        "  - models[1](embed).deployments[0].base_url: must start with http:// or https://"
    )


def test_duplicate_model_name(tmp_path: Path) -> None:
    model = CHAT_MODEL.format(base_url="http://h/v1", api_key="k").removeprefix("models:\n")
    path = write(tmp_path, "models:\n" + model + model)
    assert problems(path) == (
        f"{path}: 1 problem(s):\n  - (top level): model name 'chat' is declared twice"
    )


def test_local_kind_and_path_must_agree(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models:\n  - name: emb\n    kind: chat\n    deployments:\n"
        "      - provider: local\n        path: builtin:minilm-l6\n",
    )
    assert problems(path) == (
        f"{path}: 1 problem(s):\n  - (top level): model 'emb' is kind 'chat' but its local "
        "path 'builtin:minilm-l6' is an embedding model"
    )


def test_models_are_required(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8081\n")
    assert problems(path) == (
        f"{path}: 1 problem(s):\n  - models: required field is missing. Fix: add it."
    )


def test_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, CHAT_MODEL.format(base_url="http://from-env/v1", api_key="k"))
    monkeypatch.setenv("SLUICEGATE_CONFIG", str(path))
    dep = load_config().models[0].deployments[0]
    assert isinstance(dep, OpenAIDeployment)
    assert dep.base_url == "http://from-env/v1"


def test_embedded_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICEGATE_CONFIG", raising=False)
    config = load_config()
    assert [(m.name, m.kind) for m in config.models] == [
        ("smollm2-135m", "chat"),
        ("minilm-l6", "embedding"),
    ]
