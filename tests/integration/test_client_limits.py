"""Per-IP rate and in-flight caps, and in-flight caps per key, through a real gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import ExitStack
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

AUTH = {"authorization": f"Bearer {APP_KEY}"}


@pytest.fixture
def start(upstream_url: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    with ExitStack() as stack:

        def start_gateway(**governance: Any) -> str:
            raw = {
                "database": {"url": sqlite_url(tmp_path)},
                "governance": governance,
                "auth": {"keys": [{"name": "app", "key": APP_KEY}]},
                "models": [
                    {
                        "name": "fast",
                        "deployments": [
                            {"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}
                        ],
                    },
                    {
                        "name": "slow",
                        "deployments": [
                            {"provider": "openai", "base_url": f"{upstream_url}/sleep-0.5/v1"}
                        ],
                    },
                ],
            }
            app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
            return stack.enter_context(running(app))

        yield start_gateway


def body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def _together(url: str, n: int, headers: dict[str, str]) -> list[httpx2.Response]:
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=body("slow"), headers=headers)
                for _ in range(n)
            )
        )


def test_per_ip_burst_then_429_even_for_bad_keys(start: Callable[..., str]) -> None:
    url = start(ip_limits={"rps": 0.5, "burst": 3})
    with httpx2.Client(base_url=url) as client:
        codes = [
            client.post("/v1/chat/completions", json=body("fast"), headers=AUTH).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 200]
        # Checked before authentication: a flood of bad keys is limited just the same.
        refused = client.post(
            "/v1/chat/completions", json=body("fast"), headers={"authorization": "Bearer nope"}
        )
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "ip_rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-name"] == "ip_rps"


def test_forwarded_for_is_used_only_when_trusted(start: Callable[..., str]) -> None:
    url = start(ip_limits={"rps": 0.5, "burst": 1, "trust_forwarded_for": True})
    with httpx2.Client(base_url=url) as client:
        for ip in ("10.0.0.1", "10.0.0.2"):
            headers = {**AUTH, "x-forwarded-for": f"203.0.113.9, {ip}"}
            assert client.post(
                "/v1/chat/completions", json=body("fast"), headers=headers
            ).is_success
        again = {**AUTH, "x-forwarded-for": "10.0.0.1"}
        assert (
            client.post("/v1/chat/completions", json=body("fast"), headers=again).status_code == 429
        )


def test_per_ip_in_flight_cap(start: Callable[..., str]) -> None:
    url = start(ip_limits={"max_inflight": 2})
    replies = asyncio.run(_together(url, 4, AUTH))
    codes = sorted(r.status_code for r in replies)
    assert codes == [200, 200, 429, 429]
    refused = next(r for r in replies if r.status_code == 429)
    assert refused.json()["error"]["code"] == "inflight_limit_exceeded"
    # Released when the calls ended.
    assert httpx2.post(url + "/v1/chat/completions", json=body("fast"), headers=AUTH).is_success


def test_a_keys_in_flight_cap(start: Callable[..., str]) -> None:
    url = start()
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    created = httpx2.post(
        url + "/admin/keys",
        json={"name": "one-at-a-time", "limits": {"max_inflight": 1}},
        headers=admin,
    ).json()
    headers = {"authorization": f"Bearer {created['key']}"}
    replies = asyncio.run(_together(url, 3, headers))
    assert sorted(r.status_code for r in replies) == [200, 429, 429]
    refused = next(r for r in replies if r.status_code == 429)
    assert f"key:{created['id']}" in refused.json()["error"]["message"]
    assert httpx2.post(url + "/v1/chat/completions", json=body("fast"), headers=headers).is_success
