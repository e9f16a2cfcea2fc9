"""Confidential data only ever reaches self-hosted deployments — on every attempt and fallback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import APP_KEY, MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.servers import running

SECRET = "the Falcon merger closes on Friday"


def _config(upstream_url: str, tmp_path: Path, onprem_mode: str) -> dict[str, Any]:
    cloud = {"provider": "openai", "base_url": f"{upstream_url}/ok/v1", "id": "cloud"}
    onprem = {
        "provider": "openai",
        "base_url": f"{upstream_url}/{onprem_mode}/v1",
        "id": "onprem",
        "self_hosted": True,
        "breaker": {"failures": 1, "recovery": 60},
    }
    return {
        "database": {"url": sqlite_url(tmp_path)},
        "auth": {"keys": [{"name": "app", "key": APP_KEY}]},
        "safety": {
            "sensitivity": {
                "rules": [{"name": "deal-names", "terms": ["Falcon"], "level": "restricted"}]
            }
        },
        "models": [
            {
                "name": "mixed",
                "routing": {"retry": {"attempts": 2, "backoff_base": 0.01}},
                "deployments": [cloud, onprem],
            },
            {
                "name": "cloud-only",
                "deployments": [{**cloud, "id": "cloud-2"}],
            },
            {
                "name": "local-first",
                "routing": {"retry": {"attempts": 1}},
                "fallbacks": ["cloud-only"],
                "deployments": [{**onprem, "id": "onprem-2"}],
            },
        ],
    }


@pytest.fixture
def start(upstream_url: str, tmp_path: Path) -> Iterator[Any]:
    from contextlib import ExitStack

    with ExitStack() as stack:

        def start_gateway(onprem_mode: str = "onprem") -> str:
            raw = _config(upstream_url, tmp_path, onprem_mode)
            app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
            return stack.enter_context(running(app))

        yield start_gateway


def chat(url: str, model: str, text: str = "hello", level: str | None = None) -> httpx2.Response:
    headers = {"authorization": f"Bearer {APP_KEY}"}
    if level is not None:
        headers["x-sluicegate-data-level"] = level
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 5}
    return httpx2.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def test_confidential_calls_only_reach_self_hosted_deployments(
    start: Any, seen: list[dict[str, Any]]
) -> None:
    url = start()
    served = [chat(url, "mixed", level="confidential") for _ in range(6)]
    assert {r.headers["x-sluicegate-deployment"] for r in served} == {"onprem"}
    assert {r.headers["x-sluicegate-data-level"] for r in served} == {"confidential"}
    internal = {chat(url, "mixed").headers["x-sluicegate-deployment"] for _ in range(4)}
    assert internal == {"cloud", "onprem"}  # round robin, when the data allows it
    assert all("/onprem/" in s["path"] for s in seen[:6])


def test_a_rule_raises_the_level(start: Any, seen: list[dict[str, Any]]) -> None:
    url = start()
    for _ in range(4):
        reply = chat(url, "mixed", SECRET)
        assert reply.headers["x-sluicegate-data-level"] == "restricted"
        assert reply.headers["x-sluicegate-deployment"] == "onprem"
    assert not [s for s in seen if "/ok/" in s["path"] and SECRET in str(s["body"])]


def test_with_the_self_hosted_deployment_down_confidential_data_is_refused_not_leaked(
    start: Any, seen: list[dict[str, Any]]
) -> None:
    url = start(onprem_mode="status-503")
    refused = chat(url, "mixed", SECRET)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] in {"upstream_unavailable", "no_self_hosted_deployment"}
    # The breaker is open now: refused at once, still never sent to the cloud.
    again = chat(url, "mixed", SECRET)
    assert again.status_code == 503
    assert again.json()["error"]["code"] == "no_self_hosted_deployment"
    assert "not self-hosted" in again.json()["error"]["message"]
    # Fallback chains obey the same rule.
    assert chat(url, "local-first", SECRET).status_code == 503
    assert not [s for s in seen if SECRET in str(s["body"]) and "/ok/" in s["path"]]
    # Data that may leave is served by the cloud deployment and by the fallback.
    assert chat(url, "mixed", "hello").headers["x-sluicegate-deployment"] == "cloud"
    assert chat(url, "local-first", "hello").headers["x-sluicegate-deployment"] == "cloud-2"


def test_a_bad_declared_level_is_400_naming_the_header(start: Any) -> None:
    reply = chat(start(), "mixed", level="secret")
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "x-sluicegate-data-level"


def test_a_role_caps_the_level_its_keys_may_send(start: Any) -> None:
    url = start()
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    key = httpx2.post(
        url + "/admin/keys", json={"name": "dev", "role": "developer"}, headers=admin
    ).json()["key"]
    body = {"model": "mixed", "messages": [{"role": "user", "content": SECRET}]}
    reply = httpx2.post(
        url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    )
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "data_level_not_allowed"
    analyst = httpx2.post(
        url + "/admin/keys", json={"name": "a", "role": "analyst"}, headers=admin
    ).json()["key"]
    # Analysts may send confidential data, and only ever reach self-hosted models.
    ok = httpx2.post(
        url + "/v1/chat/completions",
        json={**body, "messages": [{"role": "user", "content": "hello"}]},
        headers={"authorization": f"Bearer {analyst}", "x-sluicegate-data-level": "confidential"},
    )
    assert ok.status_code == 200 and ok.headers["x-sluicegate-deployment"] == "onprem"
