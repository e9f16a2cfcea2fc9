"""config/schema: defaults, and the checks that refuse a config before it can misbehave."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sluicegate.config.defaults import embedded_config
from sluicegate.config.schema import (
    Config,
    LocalDeployment,
    OpenAIDeployment,
    ServerConfig,
    Timeouts,
)


def config(*deployments: dict[str, Any], kind: str = "chat") -> Config:
    return Config.model_validate(
        {"models": [{"name": "m", "kind": kind, "deployments": list(deployments)}]}
    )


def errors(raw: dict[str, Any]) -> list[tuple[tuple[int | str, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        Config.model_validate(raw)
    return [(e["loc"], e["type"]) for e in caught.value.errors()]


def test_server_and_auth_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICEGATE_DATA_DIR", raising=False)
    cfg = config({"provider": "openai", "base_url": "http://h/v1"})
    assert cfg.server == ServerConfig(
        host="127.0.0.1",
        port=8080,
        max_body_bytes=4 * 1024 * 1024,
        data_dir="./.sluicegate",
        access_log=True,
    )
    assert cfg.auth.master_key is None
    assert cfg.auth.keys == []


def test_openai_deployment_defaults() -> None:
    dep = config({"provider": "openai", "base_url": "https://api.example.com/v1/"}).models[0]
    assert dep.kind == "chat"
    openai = dep.deployments[0]
    assert isinstance(openai, OpenAIDeployment)
    assert openai.base_url == "https://api.example.com/v1"  # trailing slash dropped
    assert (openai.id, openai.model, openai.api_key) == (None, None, None)
    assert (openai.weight, openai.max_concurrency, openai.self_hosted) == (1, 64, False)
    assert openai.timeouts == Timeouts(connect=5.0, first_byte=60.0, stream_idle=30.0, total=600.0)


def test_local_deployment_defaults() -> None:
    dep = config({"provider": "local", "path": "builtin:smollm2"}).models[0].deployments[0]
    assert isinstance(dep, LocalDeployment)
    assert (dep.self_hosted, dep.max_concurrency, dep.context_length) == (True, 1, 2048)
    assert (dep.preload, dep.threads) == (False, None)


def test_anthropic_serves_chat_only() -> None:
    assert errors(
        {"models": [{"name": "m", "kind": "embedding", "deployments": [{"provider": "anthropic"}]}]}
    ) == [((), "value_error")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("weight", 0),
        ("max_concurrency", 0),
        ("timeouts", {"connect": 0}),
        ("timeouts", {"total": -1}),
        ("base_url", "vllm:8000/v1"),
    ],
)
def test_openai_deployment_bounds(field: str, value: Any) -> None:
    dep = {"provider": "openai", "base_url": "http://h/v1", field: value}
    found = errors({"models": [{"name": "m", "deployments": [dep]}]})
    assert len(found) == 1
    assert found[0][0][:5] == ("models", 0, "deployments", 0, "openai")
    assert found[0][0][5] == field


def test_static_key_must_be_long() -> None:
    raw = {
        "auth": {"keys": [{"name": "app", "key": "short"}]},
        "models": [{"name": "m", "deployments": [{"provider": "openai", "base_url": "http://h"}]}],
    }
    assert errors(raw) == [(("auth", "keys", 0, "key"), "value_error")]


def test_body_limit_has_a_floor() -> None:
    raw = {
        "server": {"max_body_bytes": 1023},
        "models": [{"name": "m", "deployments": [{"provider": "openai", "base_url": "http://h"}]}],
    }
    assert errors(raw) == [(("server", "max_body_bytes"), "greater_than_equal")]


@pytest.mark.parametrize(
    ("path", "problem"),
    [("builtin:other", "builtin models are"), ("model.bin", "must be 'builtin:...'")],
)
def test_local_path_is_checked(path: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        config({"provider": "local", "path": path})


def test_local_gguf_must_exist(tmp_path: Any) -> None:
    missing = str(tmp_path / "absent.gguf")
    with pytest.raises(ValidationError, match="no such file"):
        config({"provider": "local", "path": missing})


def test_config_is_frozen() -> None:
    cfg = config({"provider": "openai", "base_url": "http://h/v1"})
    with pytest.raises(ValidationError):
        cfg.server.port = 1  # type: ignore[misc]


def test_embedded_config() -> None:
    cfg = embedded_config()
    chat, embed = cfg.models
    assert (chat.name, chat.kind) == ("smollm2-135m", "chat")
    assert (embed.name, embed.kind) == ("minilm-l6", "embedding")
    chat_dep, embed_dep = chat.deployments[0], embed.deployments[0]
    assert isinstance(chat_dep, LocalDeployment)
    assert isinstance(embed_dep, LocalDeployment)
    assert (chat_dep.path, embed_dep.path) == ("builtin:smollm2", "builtin:minilm-l6")
    assert embed_dep.max_concurrency == 2
