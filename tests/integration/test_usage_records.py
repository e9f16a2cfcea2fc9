"""Every call through the gateway yields a usage event, and the usage report adds them up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import Gateway, MasterKey
from tests.conftest import MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.servers import running

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def gateway(upstream_url: str, tmp_path: Path) -> Iterator[tuple[str, Gateway]]:
    raw: dict[str, Any] = {
        "database": {"url": sqlite_url(tmp_path)},
        "governance": {
            "budget_actions": {"alert_at": [0.5], "reroute_at": 0.5, "reroute_to": "own-gpu"}
        },
        "models": [
            {
                "name": "gpt-4o-mini",
                "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
            },
            {
                "name": "own-gpu",
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream_url}/ok/v1", "self_hosted": True}
                ],
            },
            {
                "name": "flaky",
                "routing": {"retry": {"attempts": 2, "backoff_base": 0.01}},
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream_url}/status-503/v1"},
                    {"provider": "openai", "base_url": f"{upstream_url}/ok/v1"},
                ],
            },
            {
                "name": "broken",
                "routing": {"retry": {"attempts": 1}},
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream_url}/status-500/v1"}
                ],
            },
        ],
    }
    app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
    with running(app) as url:
        yield url, app.state.gateway


def _report(url: str, **params: str) -> dict[str, Any]:
    response = httpx2.get(url + "/admin/usage", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def test_ok_refused_failed_and_failed_over_calls_are_all_recorded(
    gateway: tuple[str, Gateway],
) -> None:
    url, _ = gateway
    httpx2.post(url + "/admin/orgs", json={"name": "acme"}, headers=ADMIN)
    created = httpx2.post(
        url + "/admin/keys",
        json={"name": "app", "org": "acme", "limits": {"rpm": 5}},
        headers=ADMIN,
    ).json()
    client = openai.OpenAI(base_url=url + "/v1", api_key=created["key"], max_retries=0)
    answers = [
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=5),
        client.chat.completions.create(model="flaky", messages=HELLO, max_tokens=5),
    ]
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed = [chunk.usage for chunk in stream if chunk.usage is not None]
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="broken", messages=HELLO)
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=5)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    deadline = time.monotonic() + 10  # events are written in batches, every 0.5 s
    while (report := _report(url, org="acme", period="day"))["totals"]["requests"] < 6:
        assert time.monotonic() < deadline, report
        time.sleep(0.1)
    totals = report["totals"]
    assert totals["requests"] == 6
    assert (totals["ok"], totals["failed_over"], totals["failed"], totals["refused"]) == (
        3,
        1,
        1,
        1,
    )
    prompt = sum(a.usage.prompt_tokens for a in answers if a.usage) + streamed[0].prompt_tokens
    assert totals["prompt_tokens"] >= prompt
    by_model = {row["model"]: row for row in report["by_model"]}
    assert by_model["gpt-4o-mini"]["requests"] == 4
    assert by_model["gpt-4o-mini"]["cost_micros"] > 0  # streamed calls are priced too
    assert [row["key_id"] for row in report["by_key"]] == [created["id"]]


def test_past_its_reroute_share_an_org_is_sent_to_the_cheaper_model(
    gateway: tuple[str, Gateway],
) -> None:
    url, gw = gateway
    httpx2.post(
        url + "/admin/orgs",
        json={"name": "thrifty", "limits": {"budget_usd_day": 0.0002}},
        headers=ADMIN,
    )
    key = httpx2.post(
        url + "/admin/keys", json={"name": "t", "org": "thrifty"}, headers=ADMIN
    ).json()["key"]
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    served = []
    for _ in range(4):
        # 200 output tokens reserve $0.000121 of the $0.0002 budget: past half of it.
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=HELLO,
            max_tokens=200,
        )
        served.append(raw.headers.get("x-sluicegate-route"))
    assert served[0] is None
    assert served[1:] == ["budget-reroute:gpt-4o-mini->own-gpu"] * 3
    assert gw.budget_watch.alerts == {("org:thrifty", "budget_usd_day", 0.5): 1}
